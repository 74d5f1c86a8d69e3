package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/roster-dev/roster/bench/internal/report"
)

const (
	nginxReplicas = 3
	reqInterval   = 10 * time.Millisecond
	reqMax        = 2000
	reqMaxTime    = 60 * time.Second
	reqSettle     = 3 * time.Second
)

// staticUpstreams is what a compose user writes by hand (compose renders
// nothing): the service name, which Docker's DNS resolves to every replica
// when nginx loads its configuration.
const staticUpstreams = `# written by bench/composebench for the compose tools (they render nothing):
# the service name resolves to every replica when nginx loads this file.
upstream web {
    server web:8080;
}

server {
    listen 80;

    location / {
        proxy_pass http://web;
        proxy_next_upstream error timeout;
        proxy_connect_timeout 2s;
    }
}
`

// suiteNginx: examples/nginx-upstreams with 3 web replicas behind nginx; a
// steady request loop from the host through nginx while an environment
// change of web is applied; failed requests counted.
func suiteNginx(ctx context.Context, b *bench) (string, error) {
	var md strings.Builder
	md.WriteString("### Requests failed through nginx during a config change of 3 web replicas\n\n")
	if _, err := os.Stat(filepath.Join(b.c.nginxExample, "compose.yaml")); err != nil {
		md.WriteString("Not measured yet: needs examples/nginx-upstreams (" + err.Error() + ").\n")
		return md.String(), nil
	}
	if b.c.nginxImage == "" {
		md.WriteString("Not measured: no nginx image (" + b.c.nginxErr + ").\n")
		return md.String(), nil
	}
	ts, missing := b.tools(toolAgent, toolV1, toolV2)
	type proj struct {
		t             *tool
		project, dir  string
		file          string
		env           []string
		port          int
		failed, total []float64
		wall          []float64
		stale         int // runs still failing at the end of the window
		restarts      int // nginx restarted (untimed) before a run
		fails         failures
	}
	var ps []*proj
	defer func() {
		for _, p := range ps {
			_, _ = b.exec(context.WithoutCancel(ctx), 5*time.Minute, p.dir, p.env, p.t.downArgs(p.project, p.file)...)
			_ = b.removeProject(context.WithoutCancel(ctx), p.project)
		}
	}()
	for _, t := range ts {
		p := &proj{t: t, project: t.project("nginx")}
		var err error
		if p.dir, err = b.projectDir(p.project); err != nil {
			return "", err
		}
		p.file = filepath.Join(p.dir, "compose.yaml")
		if p.port, err = freePort(); err != nil {
			return "", err
		}
		p.env = []string{"WEB_IMAGE=" + b.c.image, "NGINX_IMAGE=" + b.c.nginxImage, "NGINX_PORT=" + strconv.Itoa(p.port)}
		if err := b.nginxFiles(p.dir, t, "0"); err != nil {
			return "", err
		}
		ps = append(ps, p)
		b.logf("nginx: setting up %s on 127.0.0.1:%d", p.project, p.port)
		if _, err := b.exec(ctx, upTimeout(nginxReplicas+1), p.dir, p.env, t.upArgs(p.project, p.file, map[string]int{"web": nginxReplicas})...); err != nil {
			return "", err
		}
		if err := b.waitRunning(ctx, p.project, "web", nginxReplicas, 30*time.Second); err != nil {
			return "", err
		}
		if t.roster() {
			target := filepath.Join(p.dir, "nginx", "conf.d", "upstreams.conf")
			if err := waitFile(ctx, target, func(s string) bool { return strings.Count(s, "server web_") == nginxReplicas }, 30*time.Second); err != nil {
				return "", err
			}
		}
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for r := 0; r <= b.c.runs; r++ { // round 0: unmeasured warm-up
		gen := strconv.Itoa(r + 1)
		for _, p := range rotate(ps, r) {
			url := fmt.Sprintf("http://127.0.0.1:%d/hostname", p.port)
			restarted, err := b.nginxHealthy(ctx, hc, p.project, url)
			if err != nil {
				return "", fmt.Errorf("%s before run %d: %w", p.project, r, err)
			}
			if restarted && r > 0 {
				p.restarts++
			}
			if err := b.nginxFiles(p.dir, p.t, gen); err != nil {
				return "", err
			}
			loop := startRequests(ctx, hc, url)
			if err := sleep(ctx, 500*time.Millisecond); err != nil {
				return "", err
			}
			res, err := b.exec(ctx, upTimeout(nginxReplicas), p.dir, p.env, p.t.upArgs(p.project, p.file, map[string]int{"web": nginxReplicas})...)
			if err == nil {
				_ = sleep(ctx, reqSettle)
			}
			st := loop.stop()
			if err == nil {
				err = b.waitRunning(ctx, p.project, "web", nginxReplicas, 30*time.Second)
			}
			if err == nil {
				err = b.checkEnv(ctx, p.project, "GEN="+gen)
			}
			if r == 0 {
				if err != nil {
					return "", fmt.Errorf("warm-up %s: %w", p.t.Name, err)
				}
				continue
			}
			if err != nil {
				if ctx.Err() != nil {
					return "", ctx.Err()
				}
				p.fails.add(err)
				p.failed, p.total, p.wall = append(p.failed, nan), append(p.total, nan), append(p.wall, nan)
				continue
			}
			p.failed, p.total, p.wall = append(p.failed, float64(st.failed)), append(p.total, float64(st.total)), append(p.wall, secs(res.wall))
			if st.failingAtEnd {
				p.stale++
			}
			b.logf("nginx run %d/%d %-40s %d of %d requests failed (%s); up took %.2f s; still failing at the end: %v",
				r, b.c.runs, p.t.Name, st.failed, st.total, st.kinds(), secs(res.wall), st.failingAtEnd)
		}
	}

	tbl := report.Table{Header: []string{"command", "failed requests per run, median (min–max)", "failed / sent, all runs", "runs where nginx was still failing at the end", "command's wall time (s)"}}
	for _, p := range ps {
		var f, t float64
		for i := range p.failed {
			if p.failed[i] == p.failed[i] { // not NaN
				f, t = f+p.failed[i], t+p.total[i]
			}
		}
		tbl.Add(p.t.Name, report.Summarize(p.failed).Format(report.Int), fmt.Sprintf("%s / %s", report.Int(f), report.Int(t)),
			fmt.Sprintf("%d of %d", p.stale, len(p.failed)), report.Summarize(p.wall).Format(report.Fixed(2)))
	}
	md.WriteString(tbl.String())
	for _, m := range missing {
		fmt.Fprintf(&md, "\n%s.\n", m)
	}
	for _, p := range ps {
		if p.fails.n > 0 {
			fmt.Fprintf(&md, "\nFailed runs of %s (not in the statistics): %s.\n", p.t.Name, p.fails)
		}
		if p.restarts > 0 {
			fmt.Fprintf(&md, "\n%s: before %d of the runs nginx was failing from the previous change and was restarted (not timed) to start from a working state.\n", p.t.Name, p.restarts)
		}
	}
	fmt.Fprintf(&md, `
How it was measured: examples/nginx-upstreams copied per tool, with web at
%d replicas and one environment value GEN added to web (WEB_IMAGE %s,
NGINX_IMAGE %s, each project's nginx published on its own 127.0.0.1
port). roster runs it with the agent (%s), which renders
nginx/conf.d/upstreams.conf from the ready replicas (by hostname, web_1..)
and reloads nginx; the compose tools render nothing, so their
nginx/conf.d/upstreams.conf is the hand-written one a compose user would
have: %s (Docker's DNS resolves the service name to every replica when
nginx loads it). In each run, once 10 consecutive requests succeed, GEN
is changed in the compose file, a loop sends GET /hostname through nginx
from the host (one new connection per request, 2 s timeout, %s between
requests, at most %d requests or %s), and after 0.5 s %s runs; the loop
goes on for %s after the command returns. A request fails on a transport
error, a timeout or a status other than 2xx. "Still failing at the end":
the last 10 requests of the window failed. One unmeasured warm-up round,
then %d rounds in rotating order. Counts are reported, not asserted.

Why the counts differ: the compose tools replace the 3 replicas at once,
so for a moment no replica answers; nginx (its defaults: max_fails 1,
fail_timeout 10s) then marks every server unavailable and answers 502 for
up to 10 s, even once the new replicas run (here they even get the old
addresses back: Docker hands out the lowest free address, so the names
nginx resolved at start-up stay valid). roster replaces one slot at a
time and first takes it out of the rendered upstreams (nginx reloaded),
so nginx never sends a request to a replica being replaced.
`, nginxReplicas, "`"+b.c.image+"`", "`"+b.c.nginxImage+"`", "`roster up -d`", "`upstream web { server web:8080; }`",
		reqInterval, reqMax, reqMaxTime, "`up -d` (compose: `--scale web=3`)", reqSettle, b.c.runs)

	ro := ps[0]
	var sum float64
	n := 0
	for _, f := range ro.failed {
		if f == f {
			sum += f
			n++
		}
	}
	t := report.Target{Name: "zero failed requests through nginx during the rolling change (roster, agent)"}
	if n == 0 {
		t.Value, t.Why = "no successful run", ro.fails.String()
	} else {
		t.Met = sum == 0
		t.Value = fmt.Sprintf("%s failed of %s in %d runs", report.Int(sum), report.Int(sumOf(ro.total)), n)
		if !t.Met {
			t.Why = "see the nginx section"
		}
	}
	if err := report.AppendTarget(b.c.targets, t); err != nil {
		b.logf("targets: %v", err)
	}
	return md.String(), nil
}

func sumOf(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		if x == x {
			s += x
		}
	}
	return s
}

// nginxFiles copies the example into dir (once) and writes its compose
// file with web at nginxReplicas replicas and GEN=gen; for the compose
// tools also the static upstreams.conf.
func (b *bench) nginxFiles(dir string, t *tool, gen string) error {
	src := b.c.nginxExample
	if _, err := os.Stat(filepath.Join(dir, "nginx")); err != nil {
		if err := copyTree(filepath.Join(src, "nginx"), filepath.Join(dir, "nginx")); err != nil {
			return err
		}
		_ = os.Remove(filepath.Join(dir, "nginx", "conf.d", "upstreams.conf"))
		if t.compose {
			if err := os.WriteFile(filepath.Join(dir, "nginx", "conf.d", "upstreams.conf"), []byte(staticUpstreams), 0o644); err != nil {
				return err
			}
		}
	}
	raw, err := os.ReadFile(filepath.Join(src, "compose.yaml"))
	if err != nil {
		return err
	}
	old := "    deploy:\n      replicas: 2\n"
	s := string(raw)
	if strings.Count(s, old) != 1 {
		return fmt.Errorf("%s/compose.yaml: cannot find web's %q to set the replicas (the example changed?)", src, old)
	}
	s = strings.Replace(s, old, fmt.Sprintf("    environment:\n      GEN: %q\n    deploy:\n      replicas: %d\n", gen, nginxReplicas), 1)
	return os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(s), 0o644)
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(out, data, 0o644)
	})
}

// nginxHealthy waits for 10 consecutive successful requests (5 s); if
// nginx keeps failing (stale addresses after a compose recreate), it
// restarts the nginx container once and waits again.
func (b *bench) nginxHealthy(ctx context.Context, hc *http.Client, project, url string) (restarted bool, err error) {
	ok := func(timeout time.Duration) bool {
		tctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		streak := 0
		return !pollUntil(tctx, 20*time.Millisecond, func() bool {
			if httpOK(tctx, hc, url) {
				streak++
			} else {
				streak = 0
			}
			return streak >= 10
		}).IsZero()
	}
	if ok(5 * time.Second) {
		return false, nil
	}
	cs, err := b.containers(ctx, project, "nginx")
	if err != nil || len(cs) == 0 {
		return false, fmt.Errorf("no nginx container (%v)", err)
	}
	b.logf("nginx %s: failing before the run; restarting it", project)
	if _, err := b.exec(ctx, time.Minute, b.c.work, nil, "docker", "restart", cs[0].ID); err != nil {
		return false, err
	}
	if ok(30 * time.Second) {
		return true, nil
	}
	return true, fmt.Errorf("nginx at %s does not answer 200 even after a restart", url)
}

// requests is a running request loop.
type requests struct {
	cancel context.CancelFunc
	done   chan struct{}
	stats  reqStats
}

type reqStats struct {
	total, failed int
	byKind        map[string]int
	lastOK        []bool
	failingAtEnd  bool
}

func (s reqStats) kinds() string {
	if len(s.byKind) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range sortedKeys(s.byKind) {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, s.byKind[k]))
	}
	return strings.Join(parts, ", ")
}

// startRequests sends GET url one after the other, reqInterval apart,
// until stopped, reqMax requests or reqMaxTime.
func startRequests(ctx context.Context, hc *http.Client, url string) *requests {
	ctx, cancel := context.WithTimeout(ctx, reqMaxTime)
	l := &requests{cancel: cancel, done: make(chan struct{}), stats: reqStats{byKind: map[string]int{}}}
	go func() {
		defer close(l.done)
		for i := 0; i < reqMax && ctx.Err() == nil; i++ {
			kind := ""
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := hc.Do(req)
			switch {
			case err != nil && ctx.Err() != nil:
				return // stopped: not a failure of the server
			case err != nil:
				kind = "error"
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					kind = "timeout"
				}
			default:
				_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
				resp.Body.Close()
				if resp.StatusCode < 200 || resp.StatusCode > 299 {
					kind = strconv.Itoa(resp.StatusCode)
				}
			}
			l.stats.total++
			if kind != "" {
				l.stats.failed++
				l.stats.byKind[kind]++
			}
			l.stats.lastOK = append(l.stats.lastOK, kind == "")
			if len(l.stats.lastOK) > 10 {
				l.stats.lastOK = l.stats.lastOK[1:]
			}
			if sleep(ctx, reqInterval) != nil {
				return
			}
		}
	}()
	return l
}

func (l *requests) stop() reqStats {
	l.cancel()
	<-l.done
	s := l.stats
	s.failingAtEnd = len(s.lastOK) == 10
	for _, ok := range s.lastOK {
		if ok {
			s.failingAtEnd = false
		}
	}
	return s
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
