package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	mdns "github.com/miekg/dns"

	"github.com/roster-dev/roster/bench/internal/report"
)

// suiteDNSStart: a replica is added (`roster scale web=N+1`, agent
// running); from the engine's start event of its container to the first
// answer for its name from roster's DNS (asked from the host) and from
// Docker's embedded DNS (asked from inside a plain container on the same
// network), both polled every 5 ms during the same scale.
func suiteDNSStart(ctx context.Context, b *bench) (string, error) {
	const n = 3
	ts, _ := b.tools(toolAgent)
	ra := ts[0]
	project := ra.project("dns")
	dir, err := b.projectDir(project)
	if err != nil {
		return "", err
	}
	file := filepath.Join(dir, "compose.yaml")
	b.logf("dnsstart: setting up %s with %d replicas and the agent", project, n)
	if _, err := b.upProject(ctx, ra, project, dir, b.webCompose(n, "0", ""), n); err != nil {
		return "", err
	}
	defer b.down(context.WithoutCancel(ctx), ra, project, dir)
	zone, server, err := b.rosterDNS(ctx, project, dir)
	if err != nil {
		return "", err
	}
	// The probe: a plain container (not roster's: Docker's resolv.conf,
	// nameserver 127.0.0.11 only) on the project's network.
	netName, err := b.firstNetwork(ctx, project+"-web-1")
	if err != nil {
		return "", err
	}
	probe := prefix + "dns-probe"
	if _, err := b.exec(ctx, time.Minute, b.c.work, nil, "docker", "run", "-d", "--name", probe, "--network", netName,
		"--label", benchLabel+"=probe", b.c.image); err != nil {
		return "", err
	}
	defer func() {
		_ = b.docker.ContainerRemove(context.WithoutCancel(ctx), probe, container.RemoveOptions{Force: true})
	}()
	_, probeIP, _, err := b.containerIP(ctx, probe)
	if err != nil {
		return "", err
	}
	slot := n + 1
	alias := fmt.Sprintf("web_%d", slot)
	host := alias + "." + zone
	cname := fmt.Sprintf("%s-web-%d", project, slot)
	probeURL := "http://" + probeIP + ":8080/resolve?name=" + url.QueryEscape(alias)
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	defer hc.CloseIdleConnections()
	if err := waitHTTP(ctx, hc, "http://"+probeIP+":8080/healthz", 20*time.Second); err != nil {
		return "", err
	}

	var rosterMs, dockerMs, rosterC, dockerC, createToStart, scaleWall []float64
	var fails failures
	for r := 0; r <= b.c.runs; r++ { // run 0: unmeasured warm-up
		// Both must say "no such name" first.
		if err := waitGone(ctx, hc, server, host, probeURL, 20*time.Second); err != nil {
			return "", err
		}
		ev, err := b.watchEvents(ctx, project)
		if err != nil {
			return "", err
		}
		pctx, stopPolling := context.WithTimeout(ctx, 30*time.Second)
		var wg sync.WaitGroup
		var tRoster, tDocker time.Time
		wg.Add(2)
		go func() {
			defer wg.Done()
			tRoster = pollUntil(pctx, 5*time.Millisecond, func() bool {
				ips, _, err := lookupA(server, host, 200*time.Millisecond)
				return err == nil && len(ips) > 0
			})
		}()
		go func() {
			defer wg.Done()
			tDocker = pollUntil(pctx, 5*time.Millisecond, func() bool { return httpOK(pctx, hc, probeURL) })
		}()
		res, err := b.exec(ctx, 2*time.Minute, dir, nil, b.c.roster, "-p", project, "-f", file, "scale", fmt.Sprintf("web=%d", slot))
		if err == nil {
			wg.Wait()
		}
		stopPolling()
		wg.Wait()
		var tStart, tCreate time.Time
		if err == nil {
			tStart, err = ev.find(ctx, cname, "start", 10*time.Second)
		}
		if err == nil {
			tCreate, err = ev.find(ctx, cname, "create", time.Second)
		}
		ev.stop()
		if err == nil && (tRoster.IsZero() || tDocker.IsZero()) {
			err = fmt.Errorf("%s not answered within 30 s (roster %v, docker %v)", alias, !tRoster.IsZero(), !tDocker.IsZero())
		}
		if _, derr := b.exec(ctx, 2*time.Minute, dir, nil, b.c.roster, "-p", project, "-f", file, "scale", fmt.Sprintf("web=%d", n)); derr != nil {
			return "", derr
		}
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
			rosterMs, dockerMs = append(rosterMs, nan), append(dockerMs, nan)
			rosterC, dockerC = append(rosterC, nan), append(dockerC, nan)
			createToStart, scaleWall = append(createToStart, nan), append(scaleWall, nan)
			continue
		}
		rosterMs = append(rosterMs, ms(tRoster.Sub(tStart)))
		dockerMs = append(dockerMs, ms(tDocker.Sub(tStart)))
		rosterC = append(rosterC, ms(tRoster.Sub(tCreate)))
		dockerC = append(dockerC, ms(tDocker.Sub(tCreate)))
		createToStart = append(createToStart, ms(tStart.Sub(tCreate)))
		scaleWall = append(scaleWall, ms(res.wall))
		b.logf("dnsstart run %d/%d: roster %.1f ms, docker %.1f ms after the start event (create->start %.0f ms)", r, b.c.runs,
			ms(tRoster.Sub(tStart)), ms(tDocker.Sub(tStart)), ms(tStart.Sub(tCreate)))
	}

	var md strings.Builder
	md.WriteString("### DNS: container start -> name answered\n\n")
	tbl := report.Table{Header: []string{"server", "asked from", "ms after the start event, median (min–max)", "ms after the create event", "roster / Docker (after create), pair by pair"}}
	tbl.Add("roster's DNS (agent), `"+host+"`", "the host, "+server, report.Summarize(rosterMs).Format(report.Fixed(1)),
		report.Summarize(rosterC).Format(report.Fixed(1)), ratioOrNote(rosterC, dockerC))
	tbl.Add("Docker's embedded DNS (127.0.0.11), `"+alias+"`", "a container on the same network", report.Summarize(dockerMs).Format(report.Fixed(1)),
		report.Summarize(dockerC).Format(report.Fixed(1)), "—")
	md.WriteString(tbl.String())
	if fails.n > 0 {
		fmt.Fprintf(&md, "\nFailed runs (not in the statistics): %s.\n", fails)
	}
	fmt.Fprintf(&md, `
How it was measured: a project of %d replicas with roster's agent; a
plain container (%s, started with docker run on the project's network %s,
so its resolv.conf is Docker's: nameserver 127.0.0.11 only) serves the
fixture's /resolve?name=X (Go's resolver). In each run, with both
resolvers first answering "no such name" for %s, two pollers start, 5 ms
apart each: a DNS query (UDP) for %s to roster's DNS from the host, and an
HTTP request from the host to the probe's /resolve?name=%s, which asks
Docker's embedded DNS. Then %s runs (%s ms, median). Each poller keeps the
time the first positive answer arrived. References: the engine's start
event of %s (its timestamp, same clock) and its create event (the start
event came %s ms after it, median). Docker answers the alias %s (set by
roster on the container's network endpoint, with web and the container
name) as soon as the endpoint joins the network, early in the start,
before the container's process runs and before the start event: hence
negative values after the start event. roster's DNS publishes a replica
once the engine reports it running: the start event, a 50 ms debounce,
then one observation of the project. The ratio is taken on the
create-event reference, where both are positive. One unmeasured warm-up
run, then %d runs.
`, n, "`"+probe+"`", "`"+netName+"`", "`"+alias+"`", "`"+host+"`", alias,
		fmt.Sprintf("`roster scale web=%d`", slot), report.Summarize(scaleWall).Format(report.Int), "`"+cname+"`",
		report.Summarize(createToStart).Format(report.Int), "`"+alias+"`", b.c.runs)
	return md.String(), nil
}

// ratioOrNote is the pair-by-pair ratio, or why there is none (ratios of
// values at or below zero mean nothing).
func ratioOrNote(a, b []float64) string {
	for i := range min(len(a), len(b)) {
		if b[i] <= 0 {
			return "— (Docker answered at or before the start event)"
		}
	}
	return report.Summarize(report.Ratios(a, b)).Format(report.Fixed(1))
}

func (b *bench) firstNetwork(ctx context.Context, name string) (string, error) {
	ci, err := b.docker.ContainerInspect(ctx, name)
	if err != nil {
		return "", err
	}
	var names []string
	for k := range ci.NetworkSettings.Networks {
		names = append(names, k)
	}
	slices.Sort(names)
	if len(names) == 0 {
		return "", fmt.Errorf("%s has no network", name)
	}
	return names[0], nil
}

// pollUntil calls f every interval until it is true (returns the time it
// was) or ctx ends (zero time).
func pollUntil(ctx context.Context, interval time.Duration, f func() bool) time.Time {
	for ctx.Err() == nil {
		if f() {
			return time.Now()
		}
		if sleep(ctx, interval) != nil {
			break
		}
	}
	return time.Time{}
}

func httpOK(ctx context.Context, hc *http.Client, u string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func waitHTTP(ctx context.Context, hc *http.Client, u string, timeout time.Duration) error {
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if pollUntil(tctx, 50*time.Millisecond, func() bool { return httpOK(tctx, hc, u) }).IsZero() {
		return fmt.Errorf("%s did not answer 200 within %s", u, timeout)
	}
	return nil
}

// waitGone waits until roster's DNS says NXDOMAIN for host and the probe
// cannot resolve its name.
func waitGone(ctx context.Context, hc *http.Client, server, host, probeURL string, timeout time.Duration) error {
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if pollUntil(tctx, 50*time.Millisecond, func() bool {
		_, rcode, err := lookupA(server, host, 200*time.Millisecond)
		if err != nil || rcode != mdns.RcodeNameError {
			return false
		}
		req, _ := http.NewRequestWithContext(tctx, http.MethodGet, probeURL, nil)
		resp, err := hc.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusNotFound
	}).IsZero() {
		return fmt.Errorf("%s still resolves %s after %s", server, host, timeout)
	}
	return nil
}
