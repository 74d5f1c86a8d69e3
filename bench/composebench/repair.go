package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/roster-dev/roster/bench/internal/report"
)

// suiteRepair: with roster's agent, `docker rm -f` of one replica, then
// the time until its replacement runs and roster's DNS answers its name
// with the new address. The compose tools have no loop: the same removal
// is checked to stay unrepaired.
func suiteRepair(ctx context.Context, b *bench) (string, error) {
	n := b.c.repairN
	ts, missing := b.tools(toolAgent, toolV1, toolV2)
	ra := ts[0]
	project := ra.project("repair")
	dir, err := b.projectDir(project)
	if err != nil {
		return "", err
	}
	b.logf("repair: setting up %s with %d replicas and the agent", project, n)
	if _, err := b.upProject(ctx, ra, project, dir, b.webCompose(n, "0", ""), n); err != nil {
		return "", err
	}
	defer b.down(context.WithoutCancel(ctx), ra, project, dir)
	zone, server, err := b.rosterDNS(ctx, project, dir)
	if err != nil {
		return "", err
	}
	const slot = 2
	name := fmt.Sprintf("%s-web-%d", project, slot)
	host := fmt.Sprintf("web_%d.%s", slot, zone)
	var running, inDNS, rmCall []float64
	var fails failures
	for r := 0; r <= b.c.runs; r++ { // run 0: unmeasured warm-up
		// Converged: every replica runs and slot 2 is in the DNS.
		if err := b.waitRunning(ctx, project, "web", n, 30*time.Second); err != nil {
			return "", err
		}
		oldID, oldIP, _, err := b.containerIP(ctx, name)
		if err != nil {
			return "", err
		}
		if err := waitDNS(ctx, server, host, oldIP, 10*time.Second); err != nil {
			return "", err
		}
		if err := sleep(ctx, time.Second); err != nil {
			return "", err
		}
		tRun, tDNS, tRm, err := b.repairOnce(ctx, name, oldID, server, host)
		if r == 0 {
			if err != nil {
				return "", fmt.Errorf("warm-up: %w", err)
			}
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			fails.add(err)
			running, inDNS, rmCall = append(running, nan), append(inDNS, nan), append(rmCall, nan)
			continue
		}
		running, inDNS, rmCall = append(running, ms(tRun)), append(inDNS, ms(tDNS)), append(rmCall, ms(tRm))
		b.logf("repair run %d/%d: rm -f took %.0f ms; running after %.0f ms, in DNS after %.0f ms", r, b.c.runs, ms(tRm), ms(tRun), ms(tDNS))
	}

	// compose: the same removal, then nothing happens.
	wait := 5 * time.Second
	if b.c.mode == "quick" {
		wait = 2 * time.Second
	}
	var composeRows [][]string
	for _, t := range ts[1:] {
		p := t.project("repair")
		d, err := b.projectDir(p)
		if err != nil {
			return "", err
		}
		if _, err := b.upProject(ctx, t, p, d, b.webCompose(n, "0", ""), n); err != nil {
			return "", err
		}
		slots, err := b.runningSlots(ctx, p, "web")
		if err != nil {
			return "", err
		}
		victim, ok := slots[slot]
		if !ok {
			return "", fmt.Errorf("%s: no running slot %d", p, slot)
		}
		if err := b.docker.ContainerRemove(ctx, victim.ID, container.RemoveOptions{Force: true}); err != nil {
			return "", err
		}
		if err := sleep(ctx, wait); err != nil {
			return "", err
		}
		after, err := b.runningSlots(ctx, p, "web")
		if err != nil {
			return "", err
		}
		verdict := fmt.Sprintf("no self-repair: %d of %d replicas still running %s after the removal", len(after), n, wait)
		if len(after) == n {
			verdict = fmt.Sprintf("the removed replica was replaced within %s (unexpected)", wait)
		}
		composeRows = append(composeRows, []string{t.Name, verdict})
		_ = b.down(ctx, t, p, d)
	}

	var md strings.Builder
	fmt.Fprintf(&md, "### Repair after `docker rm -f` of one replica\n\n")
	tbl := report.Table{Header: []string{"operator", "replacement running (ms)", "replacement answered by roster's DNS (ms)", "of which `docker rm -f` itself (ms)"}}
	tbl.Add("roster agent (`roster up -d`)", report.Summarize(running).Format(report.Int), report.Summarize(inDNS).Format(report.Int), report.Summarize(rmCall).Format(report.Int))
	for _, row := range composeRows {
		tbl.Add(row[0], row[1], "—", "—")
	}
	md.WriteString(tbl.String())
	for _, m := range missing {
		fmt.Fprintf(&md, "\n%s.\n", m)
	}
	if fails.n > 0 {
		fmt.Fprintf(&md, "\nFailed runs (not in the statistics): %s.\n", fails)
	}
	fmt.Fprintf(&md, `
How it was measured: a project of %d replicas brought up with %s (the
agent serves DNS and repairs); in each run, once every replica runs and
roster's DNS (the first server of %s, %s) answers %s with slot %d's
address, the container %s is removed with the engine API's force remove
(what %s does), timed from just before the call. Then the container of
that name is inspected and %s is asked (UDP, from the host) every 10 ms
until the container runs with a new ID and the DNS answer is its new
address; "answered by roster's DNS" is when both hold. The time of the
remove call itself (the engine kills and removes the container) is part
of it and shown apart. One unmeasured warm-up run, then %d runs, 1 s
apart. Medians (min–max).
`, n, "`roster up -d`", "`roster dns --format json`", "`"+server+"`", "`"+host+"`", slot, "`"+name+"`", "`docker rm -f`", "`"+host+"`", b.c.runs)

	s := report.Summarize(inDNS)
	t := report.Target{Name: "repair under 2 s (replacement running and in roster's DNS, agent)"}
	if s.N == 0 {
		t.Value, t.Why = "no successful run", fails.String()
	} else {
		t.Met = s.Median < 2000
		t.Value = fmt.Sprintf("%s ms (%s–%s)", report.Int(s.Median), report.Int(s.Min), report.Int(s.Max))
		if !t.Met {
			t.Why = "see the repair section"
		}
	}
	if err := report.AppendTarget(b.c.targets, t); err != nil {
		b.logf("targets: %v", err)
	}
	return md.String(), nil
}

// repairOnce removes the container and polls until its replacement runs
// and the DNS answers host with the replacement's address (at most 30 s).
func (b *bench) repairOnce(ctx context.Context, name, oldID, server, host string) (tRun, tDNS, tRm time.Duration, err error) {
	t0 := time.Now()
	if err := b.docker.ContainerRemove(ctx, name, container.RemoveOptions{Force: true}); err != nil {
		return 0, 0, 0, err
	}
	tRm = time.Since(t0)
	deadline := t0.Add(30 * time.Second)
	newIP := ""
	for time.Now().Before(deadline) {
		if tRun == 0 {
			id, ip, run, err := b.containerIP(ctx, name)
			if err == nil && run && id != oldID && ip != "" {
				tRun, newIP = time.Since(t0), ip
			}
		}
		if tRun != 0 {
			ips, _, err := lookupA(server, host, 200*time.Millisecond)
			if err == nil && len(ips) == 1 && ips[0] == newIP {
				return tRun, time.Since(t0), tRm, nil
			}
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return 0, 0, 0, err
		}
	}
	return 0, 0, 0, fmt.Errorf("%s not repaired within 30 s (running after %s, new IP %q)", name, tRun, newIP)
}
