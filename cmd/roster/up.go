package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/roster-dev/roster/compose"
	"github.com/roster-dev/roster/engine"
	"github.com/roster-dev/roster/naming"
	"github.com/roster-dev/roster/operator"
	"github.com/roster-dev/roster/reconciler"
)

func goVersion() string { return runtime.Version() }

type upFlags struct {
	detach, dryRun, build, forceRecreate, noRecreate, removeOrphans, noAgent bool
	scale                                                                    []string
	wait                                                                     bool
	waitTimeout                                                              time.Duration
}

func newUpCmd(g *globals) *cobra.Command {
	var f upFlags
	cmd := &cobra.Command{
		Use:   "up [SERVICE...]",
		Short: "Converge the project, then keep reconciling in the foreground (or return with -d)",
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.forceRecreate && f.noRecreate {
				return usagef("--force-recreate and --no-recreate cannot be combined")
			}
			return runUp(cmd.Context(), g, f, args, cmd)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&f.detach, "detach", "d", false, "converge and return")
	fl.BoolVar(&f.dryRun, "dry-run", false, "print the plan, change nothing")
	fl.BoolVar(&f.build, "build", false, "build images before starting containers")
	fl.BoolVar(&f.forceRecreate, "force-recreate", false, "recreate containers even if their config is unchanged")
	fl.BoolVar(&f.noRecreate, "no-recreate", false, "do not recreate containers whose config changed")
	fl.BoolVar(&f.removeOrphans, "remove-orphans", false, "remove containers of services not in the compose file")
	fl.BoolVar(&f.wait, "wait", false, "wait until every replica is ready (running and healthy); exit 1 with a report if not")
	fl.DurationVar(&f.waitTimeout, "wait-timeout", 2*time.Minute, "how long --wait (and each rollout or depends_on wait) waits")
	fl.BoolVar(&f.noAgent, "no-agent", false, "with -d: converge only, start no background agent (no DNS, no self-repair)")
	fl.StringArrayVar(&f.scale, "scale", nil, "SERVICE=N: set (and persist, as `roster scale`) the replicas of a service")
	return cmd
}

func newPlanCmd(g *globals) *cobra.Command {
	var removeOrphans bool
	cmd := &cobra.Command{
		Use:   "plan [SERVICE...]",
		Short: "Print what `roster up` would do, each step with its cause; change nothing",
		RunE: func(cmd *cobra.Command, args []string) error {
			return runUp(cmd.Context(), g, upFlags{dryRun: true, removeOrphans: removeOrphans}, args, cmd)
		},
	}
	cmd.Flags().BoolVar(&removeOrphans, "remove-orphans", false, "plan the removal of orphan containers")
	return cmd
}

// parseScale parses SERVICE=N arguments.
func parseScale(p *compose.Project, args []string) (map[string]int, error) {
	want := map[string]int{}
	for _, a := range args {
		name, num, ok := strings.Cut(a, "=")
		if !ok || name == "" {
			return nil, usagef("invalid scale argument %q: expected SERVICE=REPLICAS, e.g. web=3", a)
		}
		n, err := strconv.Atoi(num)
		if err != nil {
			return nil, usagef("invalid scale argument %q: replicas %q is not a whole number", a, num)
		}
		if n < 0 {
			return nil, usagef("invalid scale argument %q: replicas must not be negative", a)
		}
		if _, ok := p.Service(name); !ok {
			return nil, usagef("invalid scale argument %q: no such service %q (services: %s)", a, name, strings.Join(p.ServiceNames(), ", "))
		}
		want[name] = n
	}
	return want, nil
}

func runUp(ctx context.Context, g *globals, f upFlags, services []string, cmd *cobra.Command) error {
	p, err := g.load(ctx)
	if err != nil {
		return err
	}
	out, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()
	if len(f.scale) > 0 {
		want, err := parseScale(p, f.scale)
		if err != nil {
			return err
		}
		if !f.dryRun {
			if err := persistScale(p, want); err != nil {
				return err
			}
		}
	}
	if !f.dryRun {
		// An explicit up retries rollouts that failed before.
		if err := clearPaused(p, services); err != nil {
			return err
		}
	}
	d, notes, err := desired(p, services)
	if err != nil {
		return err
	}
	d.WaitTimeout = f.waitTimeout
	if f.dryRun && len(f.scale) > 0 {
		want, _ := parseScale(p, f.scale)
		for k, v := range want {
			d.Replicas[k] = v
		}
	}
	d.RemoveOrphans, d.ForceRecreate, d.NoRecreate, d.Build = f.removeOrphans, f.forceRecreate, f.noRecreate, f.build
	d.StartStopped = true
	eng, err := connect(ctx)
	if err != nil {
		return err
	}
	defer eng.Close()
	log := g.logger(errw)
	r := &reconciler.Reconciler{Engine: eng, Log: log, Prepare: operator.Prepare, OnRolloutFailed: recordPaused(p, log)}
	if f.dryRun {
		plan, err := r.Plan(ctx, d)
		if err != nil {
			return fmt.Errorf("%w\nnothing was changed", err)
		}
		warnAll(errw, notes)
		fmt.Fprint(out, plan.String())
		return nil
	}
	// A foreground loop is an operator: refuse before changing anything
	// if another one (the agent, another `roster up`) acts on the project.
	var releaseOperator func()
	if !f.detach {
		releaseOperator, err = operator.TryLockOperator(p)
		if errors.Is(err, operator.ErrLocked) {
			return fmt.Errorf("another roster operator is running for project %s (the agent %s, or another `roster up`); only one acts at a time\nnothing was changed: use `roster up -d` to apply changes through the agent, or `roster down` first", p.Name, operator.AgentName(p.Name))
		}
		if err != nil {
			return err
		}
		defer releaseOperator()
	}
	if f.detach && !f.noAgent {
		if d.Agent, err = agentFor(ctx, g, eng, p, log); err != nil {
			return err
		}
	}
	warnAll(errw, notes)
	warnAll(errw, p.Warnings)
	renderer, err := operator.LoadTemplates(p, eng, log)
	if err != nil {
		return fmt.Errorf("%w\nnothing was changed", err)
	}
	pub := &operator.Publisher{Engine: eng, Renderer: renderer, Log: log}
	pub.SetProject(p)
	r.Publisher = pub
	prog := newProgress(errw, g.progress)
	r.Progress = prog.event
	unlock, err := operator.LockChanges(ctx, p, errw)
	if err != nil {
		return err
	}
	res, err := r.Once(ctx, d)
	unlock()
	prog.done()
	if res != nil {
		for _, w := range res.Plan.Warnings {
			if !contains(p.Warnings, w) {
				fmt.Fprintln(errw, "warning:", w)
			}
		}
	}
	if err != nil {
		return upError(err)
	}
	if f.wait {
		if err := waitReady(ctx, eng, d, f.waitTimeout, errw); err != nil {
			return err
		}
	}
	if f.detach {
		return nil
	}
	return runOperator(ctx, g, eng, services, f.removeOrphans, f.noRecreate, log, errw)
}

// agentFor returns the agent to plan for `up -d`, or nil when a foreground
// operator already serves the project.
func agentFor(ctx context.Context, g *globals, eng *engine.Docker, p *compose.Project, log *slog.Logger) (*reconciler.AgentSpec, error) {
	o, err := eng.Observe(ctx, p.Name, nil)
	if err != nil {
		return nil, err
	}
	agentRunning := false
	for _, c := range o.Containers {
		if c.Labels[naming.LabelRole] == "agent" && c.Running() {
			agentRunning = true
		}
	}
	if !agentRunning && operator.OperatorRunning(p) {
		log.Info("a foreground `roster up` is the operator of this project; not starting the agent")
		return nil, nil
	}
	image, err := operator.EnsureAgentImage(ctx, eng, p.Name)
	if err != nil {
		return nil, fmt.Errorf("%w\nnothing was changed", err)
	}
	files := p.Files
	return operator.AgentSpec(p, image, operator.AgentArgs{Files: files, EnvFiles: absAll(g.envFiles), Profiles: p.Compose.Profiles}, os.Environ())
}

func absAll(paths []string) []string {
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		if a, err := filepath.Abs(p); err == nil {
			p = a
		}
		out = append(out, p)
	}
	return out
}

// runOperator keeps reconciling until ctx ends (Ctrl-C), serving DNS,
// leaving the containers running. Each reconcile re-reads the compose file
// and the `roster scale` state, so `roster scale` and file edits are
// applied; an invalid file is reported and the last good model is kept.
// The caller holds the operator lock.
func runOperator(ctx context.Context, g *globals, eng *engine.Docker, services []string, removeOrphans, noRecreate bool, log *slog.Logger, errw io.Writer) error {
	dnsSrv := &operator.DNS{Log: log}
	dnsSrv.Start(ctx)
	defer dnsSrv.Close()
	first, err := g.load(ctx)
	if err != nil {
		return err
	}
	renderer, err := operator.LoadTemplates(first, eng, log)
	if err != nil {
		return fmt.Errorf("%w\nnothing was changed", err)
	}
	tpl := operator.NewTemplates(first, renderer, log)
	go tpl.Run(ctx)
	pub := &operator.Publisher{Engine: eng, DNS: dnsSrv, Renderer: renderer, Log: log}
	pub.SetProject(first)
	observed := func(o *reconciler.Observed) {
		o = pub.Filter(o)
		dnsSrv.Observed(o)
		tpl.Observed(o)
	}
	r := &reconciler.Reconciler{Engine: eng, Log: log, Prepare: operator.Prepare, Observed: observed, Publisher: pub,
		OnRolloutFailed: recordPaused(first, log)}
	var last reconciler.Desired
	r.Lock = func(ctx context.Context) (func(), error) { return operator.LockChanges(ctx, last.Project, errw) }
	loadDesired := func(ctx context.Context) (reconciler.Desired, error) {
		p, err := g.load(ctx)
		if err == nil {
			var d reconciler.Desired
			d, _, err = desired(p, services)
			if err == nil {
				d.RemoveOrphans, d.NoRecreate = removeOrphans, noRecreate
				last = d
				dnsSrv.SetProject(p)
				tpl.SetProject(p)
				pub.SetProject(p)
				return d, nil
			}
		}
		if last.Project == nil {
			return last, err
		}
		log.Error("compose file invalid; keeping the last good model", "err", err)
		return last, nil
	}
	log.Info("reconciling; Ctrl-C stops roster and leaves the containers running")
	err = r.Run(ctx, loadDesired)
	log.Info("stopped; containers left running")
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// clearPaused forgets failed rollouts of the given services (all when
// none are given).
func clearPaused(p *compose.Project, services []string) error {
	st, err := compose.ReadState(p)
	if err != nil || len(st.Paused) == 0 {
		return err
	}
	return compose.UpdateState(p, func(st *compose.State) {
		if len(services) == 0 {
			st.Paused = nil
			return
		}
		for _, s := range services {
			delete(st.Paused, s)
		}
	})
}

// upError explains a failed convergence.
func upError(err error) error {
	var lines []string
	var se *reconciler.StepError
	if errors.As(err, &se) && !strings.Contains(err.Error(), "nothing else was changed") {
		lines = append(lines, "some steps failed; the others were applied (run `roster ps` to see the state, `roster plan` for what is left)")
	}
	if len(lines) == 0 {
		return err
	}
	return fmt.Errorf("%w\n%s", err, strings.Join(lines, "\n"))
}

func persistScale(p *compose.Project, want map[string]int) error {
	st, err := compose.ReadState(p)
	if err != nil {
		return err
	}
	if err := p.SetScale(&st, want); err != nil {
		return usagef("%v", err)
	}
	return compose.WriteState(p, st)
}

func newScaleCmd(g *globals) *cobra.Command {
	var noConverge bool
	cmd := &cobra.Command{
		Use:   "scale SERVICE=N [SERVICE=N...]",
		Short: "Set and persist desired replicas, then converge",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("scale needs at least one SERVICE=N argument")
			}
			ctx := cmd.Context()
			p, err := g.load(ctx)
			if err != nil {
				return err
			}
			want, err := parseScale(p, args)
			if err != nil {
				return err
			}
			if err := persistScale(p, want); err != nil {
				return err
			}
			if noConverge {
				return nil
			}
			names := make([]string, 0, len(want))
			for k := range want {
				names = append(names, k)
			}
			sort.Strings(names)
			return runUp(ctx, g, upFlags{detach: true}, names, cmd)
		},
	}
	cmd.Flags().BoolVar(&noConverge, "no-converge", false, "only record the replicas; the next up or the running loop converges")
	return cmd
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}
