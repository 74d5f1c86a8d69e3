package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/roster-dev/roster/bench/internal/report"
)

// suiteIdle: roster's agent with N replicas, idle: the roster process's
// resident memory (VmRSS), the agent container's memory as docker stats
// shows it, and its CPU use over fixed windows (cgroup CPU time).
func suiteIdle(ctx context.Context, b *bench) (string, error) {
	n := b.c.idleN
	ts, _ := b.tools(toolAgent)
	ra := ts[0]
	project := ra.project("idle")
	dir, err := b.projectDir(project)
	if err != nil {
		return "", err
	}
	b.logf("idle: bringing up %s with %d replicas and the agent", project, n)
	upWall, err := b.upProject(ctx, ra, project, dir, b.webCompose(n, "0", ""), n)
	if err != nil {
		return "", err
	}
	defer b.down(context.WithoutCancel(ctx), ra, project, dir)
	zone, server, err := b.rosterDNS(ctx, project, dir)
	if err != nil {
		return "", err
	}
	// Converged: the last replica is in the DNS.
	if err := waitDNS(ctx, server, fmt.Sprintf("web_%d.%s", n, zone), "", 30*time.Second); err != nil {
		return "", err
	}
	agent := project + "-roster-agent"
	ci, err := b.docker.ContainerInspect(ctx, agent)
	if err != nil {
		return "", err
	}
	if ci.State == nil || !ci.State.Running || ci.State.Pid == 0 {
		return "", fmt.Errorf("%s is not running", agent)
	}
	pid := ci.State.Pid
	b.logf("idle: converged in %s; agent %s pid %d; idle %s", upWall.Round(time.Millisecond), agent, pid, b.c.idleWait)
	if err := sleep(ctx, b.c.idleWait); err != nil {
		return "", err
	}
	var rss, hwm, anon, cgMem, cpu []float64
	for w := range b.c.windows {
		s0, err := b.stats(ctx, agent)
		if err != nil {
			return "", err
		}
		if err := sleep(ctx, b.c.window); err != nil {
			return "", err
		}
		s1, err := b.stats(ctx, agent)
		if err != nil {
			return "", err
		}
		r, h, a, err := vmRSS(pid)
		if err != nil {
			return "", err
		}
		dt := s1.Read.Sub(s0.Read).Seconds()
		if dt <= 0 {
			dt = b.c.window.Seconds()
		}
		pct := float64(s1.CPUStats.CPUUsage.TotalUsage-s0.CPUStats.CPUUsage.TotalUsage) / 1e9 / dt * 100
		mem := memNoCache(s1.MemoryStats)
		rss, hwm, anon, cgMem, cpu = append(rss, r), append(hwm, h), append(anon, a), append(cgMem, mem), append(cpu, pct)
		b.logf("idle window %d/%d: VmRSS %.1f MiB, container memory %.1f MiB, CPU %.2f %%", w+1, b.c.windows, r, mem, pct)
	}
	// Still converged, nothing restarted.
	if err := b.waitRunning(ctx, project, "web", n, 10*time.Second); err != nil {
		return "", err
	}

	var md strings.Builder
	fmt.Fprintf(&md, "### Agent at idle with %d replicas\n\n", n)
	tbl := report.Table{Header: []string{"figure", fmt.Sprintf("median (min–max) over %d windows of %s", b.c.windows, b.c.window)}}
	tbl.Add("roster process resident memory, VmRSS (MiB)", report.Summarize(rss).Format(report.Fixed(1)))
	tbl.Add("of which anonymous (heap, stacks), RssAnon (MiB)", report.Summarize(anon).Format(report.Fixed(1)))
	tbl.Add("roster process peak resident memory, VmHWM (MiB)", report.Summarize(hwm).Format(report.Fixed(1)))
	tbl.Add("agent container memory as `docker stats` shows it (MiB)", report.Summarize(cgMem).Format(report.Fixed(1)))
	tbl.Add("agent CPU (% of one core; the machine has "+strconv.Itoa(runtime.NumCPU())+")", report.Summarize(cpu).Format(report.Fixed(2)))
	tbl.Add(fmt.Sprintf("for reference: `roster up -d` of the %d replicas from nothing (s, one run)", n), fmt.Sprintf("%.1f", upWall.Seconds()))
	md.WriteString(tbl.String())
	fmt.Fprintf(&md, `
How it was measured: %s with %d fixture replicas and the agent, waited
until every replica runs and roster's DNS answers the last one, then %s
idle. Then %d consecutive windows of %s: CPU is the agent container's
cgroup CPU time (the engine's stats, cpu_stats.cpu_usage.total_usage)
used during the window divided by its length; at the end of each window,
VmRSS and VmHWM of the roster process (/proc/PID/status, PID the
container's main process) and the container's memory as docker stats
computes it (cgroup usage minus inactive file cache). VmRSS also counts
the pages of roster's binary mapped from the image (RssFile), which the
container's cgroup is not necessarily charged for: hence container memory
can be below VmRSS. The agent resyncs every 30 s (one full observation of
the project): a window of 30 s contains about one resync, a shorter one
may contain none. Nothing else happens in the project.
`, "`roster up -d`", n, b.c.idleWait, b.c.windows, b.c.window)
	return md.String(), nil
}

func (b *bench) stats(ctx context.Context, id string) (container.StatsResponse, error) {
	var s container.StatsResponse
	r, err := b.docker.ContainerStatsOneShot(ctx, id)
	if err != nil {
		return s, err
	}
	defer r.Body.Close()
	return s, json.NewDecoder(r.Body).Decode(&s)
}

// memNoCache is docker stats' memory figure, in MiB: usage minus the
// inactive file cache (cgroup v1: total_inactive_file, v2: inactive_file).
func memNoCache(m container.MemoryStats) float64 {
	u := m.Usage
	for _, k := range []string{"total_inactive_file", "inactive_file"} {
		if v, ok := m.Stats[k]; ok && v < u {
			u -= v
			break
		}
	}
	return float64(u) / (1 << 20)
}

// vmRSS returns VmRSS, VmHWM and RssAnon of pid in MiB.
func vmRSS(pid int) (rss, hwm, anon float64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM" && k != "RssAnon") {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) < 1 {
			continue
		}
		kb, _ := strconv.ParseFloat(fs[0], 64)
		switch k {
		case "VmRSS":
			rss = kb / 1024
		case "VmHWM":
			hwm = kb / 1024
		default:
			anon = kb / 1024
		}
	}
	if rss == 0 {
		return 0, 0, 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
	}
	return rss, hwm, anon, sc.Err()
}
