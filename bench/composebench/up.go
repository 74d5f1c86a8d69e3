package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"

	"github.com/roster-dev/roster/bench/internal/report"
)

// entry is one row of a wall-time comparison: a tool or a floor.
type entry struct {
	name string
	run  func(ctx context.Context, n int) (time.Duration, error) // timed
	down func(ctx context.Context, n int) error                  // untimed
}

// suiteUp: `up` from nothing for each size, every tool, and the physical
// floor (raw docker run, sequential and 8 in parallel), rounds rotating
// the order; teardown between runs is not timed.
func suiteUp(ctx context.Context, b *bench) (string, error) {
	ts, missing := b.tools(toolRoster, toolAgent, toolV1, toolV2)
	var entries []entry
	for _, t := range ts {
		project := t.project("up")
		dir, err := b.projectDir(project)
		if err != nil {
			return "", err
		}
		file := filepath.Join(dir, "compose.yaml")
		entries = append(entries, entry{
			name: t.Name,
			run: func(ctx context.Context, n int) (time.Duration, error) {
				if err := os.WriteFile(file, []byte(b.webCompose(n, "0", "")), 0o644); err != nil {
					return 0, err
				}
				r, err := b.exec(ctx, upTimeout(n), dir, nil, t.upArgs(project, file, map[string]int{"web": n})...)
				if err != nil {
					return 0, err
				}
				return r.wall, b.waitRunning(ctx, project, "web", n, 10*time.Second)
			},
			down: func(ctx context.Context, n int) error { return b.down(ctx, t, project, dir) },
		})
	}
	floorNet := prefix + "floor-net"
	for _, par := range []int{1, 8} {
		name := "floor: `docker run -d` sequential"
		if par > 1 {
			name = fmt.Sprintf("floor: `docker run -d` with `xargs -P%d`", par)
		}
		entries = append(entries, entry{
			name: name,
			run: func(ctx context.Context, n int) (time.Duration, error) {
				if err := b.floorNetwork(ctx, floorNet); err != nil {
					return 0, err
				}
				run := fmt.Sprintf("docker run -d --network %s --label %s=floor --env GEN=0 --name %sfloor-{} %s >/dev/null", floorNet, benchLabel, prefix, b.c.image)
				script := fmt.Sprintf("set -e; seq 1 %d | xargs -P%d -I{} %s", n, par, run)
				r, err := b.exec(ctx, upTimeout(n), b.c.work, nil, "bash", "-c", script)
				if err != nil {
					return 0, err
				}
				return r.wall, b.floorCheck(ctx, n)
			},
			down: func(ctx context.Context, n int) error { return b.floorDown(ctx) },
		})
	}

	// Unmeasured warm-up: one replica per entry (builds the agent image,
	// loads each binary into the page cache).
	b.logf("up: warm-up")
	for _, e := range entries {
		if _, err := e.run(ctx, 1); err != nil {
			return "", fmt.Errorf("warm-up %s: %w", e.name, err)
		}
		if err := e.down(ctx, 1); err != nil {
			return "", err
		}
	}

	var md strings.Builder
	md.WriteString("### `up` from nothing, with the physical floor\n\n")
	tbl := report.Table{Header: []string{"replicas", "command", "wall time (s), median (min–max)", "roster `--no-agent` / this, pair by pair", "roster with agent / this, pair by pair"}}
	var notes []string
	for _, n := range b.c.upSizes {
		res := map[string][]float64{}
		fails := map[string]*failures{}
		for r := range b.c.runs {
			for _, e := range rotate(entries, r) {
				if fails[e.name] == nil {
					fails[e.name] = &failures{}
				}
				d, err := e.run(ctx, n)
				v := secs(d)
				if err != nil {
					if ctx.Err() != nil {
						return "", ctx.Err()
					}
					b.logf("up %d %s: %v", n, e.name, err)
					fails[e.name].add(err)
					v = nan
				}
				res[e.name] = append(res[e.name], v)
				b.logf("up n=%d run %d/%d %-40s %.2f s", n, r+1, b.c.runs, e.name, v)
				if err := e.down(ctx, n); err != nil {
					return "", err
				}
			}
		}
		ro, ra := res[toolRoster.Name], res[toolAgent.Name]
		for _, e := range entries {
			xs := res[e.name]
			r1, r2 := "—", "—"
			if e.name != toolRoster.Name {
				r1 = report.Summarize(report.Ratios(ro, xs)).Format(report.Fixed(2))
			}
			if e.name != toolAgent.Name {
				r2 = report.Summarize(report.Ratios(ra, xs)).Format(report.Fixed(2))
			}
			tbl.Add(strconv.Itoa(n), e.name, report.Summarize(xs).Format(report.Fixed(2)), r1, r2)
			if f := fails[e.name]; f.n > 0 {
				notes = append(notes, fmt.Sprintf("%d replicas, %s: %s", n, e.name, f))
			}
		}
		for _, t := range ts {
			if t.Short == "c2" {
				b.targetRatio(fmt.Sprintf("`up` from nothing, %d replicas: roster `--no-agent` no slower than compose v2 (ratio <= 1.0)", n), ro, res[t.Name],
					"roster starts containers with 8 engine calls in flight (reconciler Concurrency default 8); compose v2 starts them all at once")
			}
		}
	}
	md.WriteString(tbl.String())
	for _, m := range missing {
		fmt.Fprintf(&md, "\n%s.\n", m)
	}
	if len(notes) > 0 {
		md.WriteString("\nFailed runs (not in the statistics): " + strings.Join(notes, "; ") + ".\n")
	}
	fmt.Fprintf(&md, `
How it was measured: each run starts from nothing (no container, no
network of the project) and times the command until it exits, then checks
that exactly N replicas of web run (slots 1..N); the teardown (%s)
is not timed. The compose file is the same for every tool: one service
web, image %s (the e2e fixture, a static Go HTTP server FROM scratch), one
environment value, deploy.replicas N; the compose tools also get --scale
web=N (v1 ignores deploy.replicas). roster with the agent also starts its
agent container (image built once, in the unmeasured warm-up). The floor
starts N containers of the same image with the docker CLI on a network
created beforehand (not timed): one after the other, and 8 at a time
with xargs -P8. %d runs per size and command, the order of the commands
rotating from round to round; ratios are taken run by run (run i of
roster / run i of the other), > 1 means roster is slower.
`, "`down -v` with the same tool, then removal of anything left", "`"+b.c.image+"`", b.c.runs)
	return md.String(), nil
}

// targetRatio appends the "no slower than compose v2" target.
func (b *bench) targetRatio(name string, roster, peer []float64, why string) {
	s := report.Summarize(report.Ratios(roster, peer))
	t := report.Target{Name: name}
	if s.N == 0 {
		t.Value, t.Why = "no comparable runs", "every run of one of the tools failed"
	} else {
		t.Met = s.Median <= 1.0
		t.Value = fmt.Sprintf("ratio %.2f (%.2f–%.2f): roster %.2f s, compose v2 %.2f s", s.Median, s.Min, s.Max,
			report.Summarize(roster).Median, report.Summarize(peer).Median)
		if !t.Met {
			t.Why = why
		}
	}
	if err := report.AppendTarget(b.c.targets, t); err != nil {
		b.logf("targets: %v", err)
	}
}

func (b *bench) floorNetwork(ctx context.Context, name string) error {
	nets, err := b.docker.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", name))})
	if err != nil {
		return err
	}
	for _, n := range nets {
		if n.Name == name {
			return nil
		}
	}
	_, err = b.docker.NetworkCreate(ctx, name, network.CreateOptions{Driver: "bridge", Labels: map[string]string{benchLabel: "floor"}})
	return err
}

func (b *bench) floorContainers(ctx context.Context) ([]container.Summary, error) {
	return b.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", benchLabel+"=floor"))})
}

func (b *bench) floorCheck(ctx context.Context, n int) error {
	cs, err := b.floorContainers(ctx)
	if err != nil {
		return err
	}
	running := 0
	for _, c := range cs {
		if c.State == "running" {
			running++
		}
	}
	if running != n || len(cs) != n {
		return fmt.Errorf("floor: want %d running containers, have %d of %d", n, running, len(cs))
	}
	return nil
}

// floorDown removes the floor's containers one at a time (concurrent
// removals on one network are what trips the engine's libnetwork races,
// see bench/README.md), keeping the network.
func (b *bench) floorDown(ctx context.Context) error {
	cs, err := b.floorContainers(ctx)
	if err != nil {
		return err
	}
	for _, c := range cs {
		if err := b.docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !client.IsErrNotFound(err) {
			return err
		}
	}
	return nil
}
