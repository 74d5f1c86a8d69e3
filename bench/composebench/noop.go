package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/roster-dev/roster/bench/internal/report"
)

// suiteNoop: `up -d` on a converged project of N replicas: wall time
// (direct to the engine) and engine API requests (through bench/sockcount,
// in a separate run so the proxy does not slow the timed one).
func suiteNoop(ctx context.Context, b *bench) (string, error) {
	n := b.c.noopN
	ts, missing := b.tools(toolRoster, toolAgent, toolV1, toolV2)
	type proj struct {
		t             *tool
		project, file string
		dir           string
		wall          []float64
		total, writes []float64
		last          apiCounts
		fails         failures
	}
	var ps []*proj
	for _, t := range ts {
		p := &proj{t: t, project: t.project("noop")}
		var err error
		if p.dir, err = b.projectDir(p.project); err != nil {
			return "", err
		}
		p.file = filepath.Join(p.dir, "compose.yaml")
		b.logf("noop: setting up %s with %d replicas", p.project, n)
		if _, err := b.upProject(ctx, t, p.project, p.dir, b.webCompose(n, "0", ""), n); err != nil {
			return "", err
		}
		ps = append(ps, p)
	}
	defer func() {
		for _, p := range ps {
			_ = b.down(context.WithoutCancel(ctx), p.t, p.project, p.dir)
		}
	}()
	// Unmeasured warm-up no-op per tool.
	for _, p := range ps {
		if _, err := b.exec(ctx, time.Minute, p.dir, nil, p.t.upArgs(p.project, p.file, map[string]int{"web": n})...); err != nil {
			return "", err
		}
	}
	for r := range b.c.runs {
		for _, p := range rotate(ps, r) {
			argv := p.t.upArgs(p.project, p.file, map[string]int{"web": n})
			res, err := b.exec(ctx, time.Minute, p.dir, nil, argv...)
			if err == nil {
				err = b.waitRunning(ctx, p.project, "web", n, 5*time.Second)
			}
			if err != nil {
				if ctx.Err() != nil {
					return "", ctx.Err()
				}
				p.fails.add(err)
				p.wall = append(p.wall, nan)
			} else {
				p.wall = append(p.wall, ms(res.wall))
			}
			// The agent's container mounts the engine socket named by
			// DOCKER_HOST: through the proxy its spec would change and
			// the agent be recreated, so it is not counted.
			if p.t.agent {
				p.total, p.writes = append(p.total, nan), append(p.writes, nan)
				b.logf("noop run %d/%d %-40s %.0f ms", r+1, b.c.runs, p.t.Name, ms(res.wall))
				continue
			}
			c, err := b.counted(ctx, time.Minute, p.dir, argv...)
			if err != nil {
				if ctx.Err() != nil {
					return "", ctx.Err()
				}
				p.fails.add(err)
				p.total, p.writes = append(p.total, nan), append(p.writes, nan)
				continue
			}
			p.last = c
			p.total, p.writes = append(p.total, float64(c.Total)), append(p.writes, float64(c.Writes))
			b.logf("noop run %d/%d %-40s %.0f ms, %d API requests (%d writes)", r+1, b.c.runs, p.t.Name, ms(res.wall), c.Total, c.Writes)
		}
	}

	var md strings.Builder
	fmt.Fprintf(&md, "### No-op `up` on a converged project, %d replicas\n\n", n)
	tbl := report.Table{Header: []string{"command", "wall time (ms), median (min–max)", "roster `--no-agent` / this, pair by pair", "engine API requests (writes)", "roster / this, requests"}}
	ro := ps[0]
	for _, p := range ps {
		rw, rc := "—", "—"
		if p != ro {
			rw = report.Summarize(report.Ratios(ro.wall, p.wall)).Format(report.Fixed(2))
			if !p.t.agent {
				rc = report.Summarize(report.Ratios(ro.total, p.total)).Format(report.Fixed(2))
			}
		}
		calls := "not counted (see below)"
		if !p.t.agent {
			calls = fmt.Sprintf("%s (%s)", count(p.total), count(p.writes))
		}
		tbl.Add(p.t.Name, report.Summarize(p.wall).Format(report.Int), rw, calls, rc)
	}
	md.WriteString(tbl.String())
	for _, m := range missing {
		fmt.Fprintf(&md, "\n%s.\n", m)
	}
	md.WriteString("\nEngine API requests of the last counted run, by method and path (API version dropped, object names as `{id}`):\n\n")
	for _, p := range ps {
		if p.t.agent || p.last.Total == 0 {
			continue
		}
		fmt.Fprintf(&md, "- %s: %s\n", p.t.Name, breakdown(p.last))
	}
	for _, p := range ps {
		if p.fails.n > 0 {
			fmt.Fprintf(&md, "\nFailed runs of %s (not in the statistics): %s.\n", p.t.Name, p.fails)
		}
	}
	fmt.Fprintf(&md, `
How it was measured: each project (same compose file as above, %d
replicas) is brought up once and left converged; then, %d rounds in
rotating order, each command runs its %s once directly against the
engine (timed, wall time until it exits) and once with
DOCKER_HOST=unix://PROXY, bench/sockcount forwarding to
/var/run/docker.sock and counting every HTTP request (not timed). After
each run the project must still have exactly %d running replicas. roster
with the agent is timed only: the agent container mounts the socket named
by DOCKER_HOST, so through the proxy its spec would change and the agent be
recreated (its own background requests are not the command's anyway).
`, n, b.c.runs, "`up -d` (compose: `up -d --scale web=N`)", n)

	s := report.Summarize(ro.wall)
	t := report.Target{Name: fmt.Sprintf("no-op `up` under 100 ms at %d replicas (roster `up -d --no-agent`)", n)}
	if s.N == 0 {
		t.Value, t.Why = "no successful run", ro.fails.String()
	} else {
		t.Met = s.Median < 100
		t.Value = fmt.Sprintf("%s ms (%s–%s), %s engine API requests, %s writes", report.Int(s.Median), report.Int(s.Min), report.Int(s.Max), count(ro.total), count(ro.writes))
		if !t.Met {
			t.Why = "see the no-op section: the wall time is the CLI's start, one observation of the project and the plan"
		}
	}
	if n != 30 {
		t.Name += " (the target is at 30; quick mode uses fewer)"
	}
	if err := report.AppendTarget(b.c.targets, t); err != nil {
		b.logf("targets: %v", err)
	}
	return md.String(), nil
}

// breakdown lists the requests by count, then name.
func breakdown(c apiCounts) string {
	keys := sortedKeys(c.Requests)
	slices.SortStableFunc(keys, func(a, b string) int { return c.Requests[b] - c.Requests[a] })
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("`%s` ×%d", k, c.Requests[k]))
	}
	return strings.Join(parts, ", ")
}

// count formats a count that is usually the same in every run: the value,
// or median (min–max) when the runs differ.
func count(xs []float64) string {
	s := report.Summarize(xs)
	if s.N > 0 && s.Min == s.Max {
		return report.Int(s.Median)
	}
	return s.Format(report.Int)
}
