package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/roster-dev/roster/bench/internal/report"
)

var toolRosterAll = tool{Name: "roster `up -d --no-agent`, `update_config: {parallelism: 0}` (all at once)", Short: "rp"}

// suiteRecreate: change an environment value of a converged project of N
// replicas, time the `up -d` that replaces every replica, and observe how
// many slots were without a running container at once.
func suiteRecreate(ctx context.Context, b *bench) (string, error) {
	n := b.c.recreateN
	ts, missing := b.tools(toolRoster, toolRosterAll, toolV1, toolV2)
	type proj struct {
		t             *tool
		project, file string
		dir, extra    string
		wall, down    []float64
		fails         failures
	}
	var ps []*proj
	for _, t := range ts {
		p := &proj{t: t, project: t.project("rc")}
		if t.Short == "rp" {
			p.extra = "      update_config:\n        parallelism: 0\n"
		}
		var err error
		if p.dir, err = b.projectDir(p.project); err != nil {
			return "", err
		}
		p.file = filepath.Join(p.dir, "compose.yaml")
		b.logf("recreate: setting up %s with %d replicas", p.project, n)
		if _, err := b.upProject(ctx, t, p.project, p.dir, b.webCompose(n, "0", p.extra), n); err != nil {
			return "", err
		}
		ps = append(ps, p)
	}
	defer func() {
		for _, p := range ps {
			_ = b.down(context.WithoutCancel(ctx), p.t, p.project, p.dir)
		}
	}()
	// rounds 0 (warm-up, unmeasured) .. runs
	for r := 0; r <= b.c.runs; r++ {
		gen := strconv.Itoa(r + 1)
		for _, p := range rotate(ps, r) {
			if err := os.WriteFile(p.file, []byte(b.webCompose(n, gen, p.extra)), 0o644); err != nil {
				return "", err
			}
			sctx, stopSampling := context.WithCancel(ctx)
			var minUp int
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				minUp = b.sampleServing(sctx, p.project, n)
			}()
			res, err := b.exec(ctx, upTimeout(n)+time.Duration(n)*10*time.Second, p.dir, nil, p.t.upArgs(p.project, p.file, map[string]int{"web": n})...)
			stopSampling()
			wg.Wait()
			if err == nil {
				err = b.waitRunning(ctx, p.project, "web", n, 30*time.Second)
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
				b.logf("recreate %s: %v", p.t.Name, err)
				p.fails.add(err)
				p.wall, p.down = append(p.wall, nan), append(p.down, nan)
				// Back to a converged project for the next round.
				if _, err := b.upProject(ctx, p.t, p.project, p.dir, b.webCompose(n, gen, p.extra), n); err != nil {
					return "", err
				}
				continue
			}
			p.wall = append(p.wall, secs(res.wall))
			p.down = append(p.down, float64(n-minUp))
			b.logf("recreate run %d/%d %-60s %.2f s, at most %d of %d slots without a running replica", r, b.c.runs, p.t.Name, secs(res.wall), n-minUp, n)
		}
	}

	var md strings.Builder
	fmt.Fprintf(&md, "### Config change -> all %d replicas replaced\n\n", n)
	tbl := report.Table{Header: []string{"command", "wall time (s), median (min–max)", "roster (default update_config) / this, pair by pair", "slots without a running replica at once (observed, max)"}}
	ro := ps[0]
	for _, p := range ps {
		ratio := "—"
		if p != ro {
			ratio = report.Summarize(report.Ratios(ro.wall, p.wall)).Format(report.Fixed(2))
		}
		tbl.Add(p.t.Name, report.Summarize(p.wall).Format(report.Fixed(2)), ratio, count(p.down))
	}
	md.WriteString(tbl.String())
	for _, m := range missing {
		fmt.Fprintf(&md, "\n%s.\n", m)
	}
	for _, p := range ps {
		if p.fails.n > 0 {
			fmt.Fprintf(&md, "\nFailed runs of %s (not in the statistics): %s.\n", p.t.Name, p.fails)
		}
	}
	fmt.Fprintf(&md, `
How it was measured: each project is brought up with %d replicas and left
converged; in each round the environment value GEN of web is changed in
its compose file and %s is timed until it exits; then every one of the %d
replicas must run with the new value (slots 1..%d). While the command
runs, the project's containers are listed every 100 ms and the smallest
number of slots with a running replica is kept: "slots without a running
replica at once" is N minus that (sampling can miss a shorter dip). One
unmeasured warm-up round, then %d rounds in rotating order; ratios run by
run, > 1 means roster is slower.

roster's first row uses the default deploy.update_config, which this
roster rolls out slot by slot: parallelism 1, order stop-first (each slot
drained from DNS and templates, stopped, replaced, and back once ready
before the next one). The compose tools replace every replica at once
(they have no rolling update on a single engine). The row with
update_config.parallelism: 0 is the same roster with the whole service in
one batch, which shows how much of the difference is the rollout policy.
`, n, "`up -d` (roster `--no-agent`; compose `--scale web=N`)", n, n, b.c.runs)

	for _, p := range ps {
		if p.t.Short == "c2" {
			why := "roster's default rollout replaces one slot at a time (parallelism 1, stop-first, to keep the others serving), compose replaces all at once"
			all := ps[1]
			if all.t.Short == "rp" {
				s := report.Summarize(report.Ratios(all.wall, p.wall))
				if s.N > 0 {
					why += fmt.Sprintf("; with parallelism 0 roster's ratio is %.2f", s.Median)
				}
			}
			b.targetRatio(fmt.Sprintf("recreate of %d replicas: roster (default update_config) no slower than compose v2 (ratio <= 1.0)", n), ro.wall, p.wall, why)
		}
	}
	return md.String(), nil
}

// sampleServing lists the project's web containers every 100 ms until
// ctx ends and returns the smallest number of slots that had a running
// container (n when nothing was sampled).
func (b *bench) sampleServing(ctx context.Context, project string, n int) int {
	least := n
	for ctx.Err() == nil {
		slots, err := b.runningSlots(ctx, project, "web")
		if err == nil {
			least = min(least, len(slots))
		}
		if sleep(ctx, 100*time.Millisecond) != nil {
			break
		}
	}
	return least
}

// checkEnv checks that every web container of the project has env kv.
func (b *bench) checkEnv(ctx context.Context, project, kv string) error {
	cs, err := b.containers(ctx, project, "web")
	if err != nil {
		return err
	}
	for _, c := range cs {
		ci, err := b.docker.ContainerInspect(ctx, c.ID)
		if err != nil {
			return err
		}
		if ci.Config == nil || !slices.Contains(ci.Config.Env, kv) {
			return fmt.Errorf("%s: %s not set after the change", strings.TrimPrefix(c.Names[0], "/"), kv)
		}
	}
	return nil
}
