package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Reconciler converges one project: observe, plan, execute.
type Reconciler struct {
	Engine      Engine
	Log         *slog.Logger
	Concurrency int             // parallel engine calls; default 8
	Progress    func(StepEvent) // optional
	// Observed, when set, is called with every complete observation
	// (before planning, and again after a plan ran): the hook for DNS and
	// templates, which must never see a partial view.
	Observed func(*Observed)
	// Resync is the period of the safety-net reconcile in Run; default 10s.
	Resync time.Duration
	// Prepare, when set, adjusts the desired model to an observation
	// before planning (the operator writes resolv.conf files for the
	// networks' gateways there). It may have side effects; MakePlan has none.
	Prepare func(ctx context.Context, d Desired, o *Observed) (Desired, error)
	// Publisher drains slots from DNS and templates during rollouts.
	Publisher Publisher
	// OnRolloutFailed is told the service and config hash of a rollout
	// that failed with failure_action pause or rollback (the CLI persists
	// it as Desired.Paused).
	OnRolloutFailed func(service, hash string)
	// Lock, when set, is held around each reconcile in Run, so that two
	// roster processes never act on a project at the same time.
	Lock func(ctx context.Context) (unlock func(), err error)
}

// Result is what one reconcile did.
type Result struct {
	Plan     *Plan // the executed plan (image steps first, when any)
	Observed *Observed
}

func (r *Reconciler) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}

func (r *Reconciler) concurrency() int {
	if r.Concurrency <= 0 {
		return 8
	}
	return r.Concurrency
}

// images lists the image references the desired services name.
func images(d Desired) []string {
	var out []string
	for _, s := range d.Project.Services {
		out = append(out, imageRef(d, s.Name))
	}
	return out
}

// Observe reads the project from the engine once.
func (r *Reconciler) Observe(ctx context.Context, d Desired) (*Observed, error) {
	o, err := r.Engine.Observe(ctx, d.Project.Name, images(d))
	if err != nil {
		return nil, fmt.Errorf("observe project %s: %w", d.Project.Name, err)
	}
	return o, nil
}

// Plan observes and plans without changing anything.
func (r *Reconciler) Plan(ctx context.Context, d Desired) (*Plan, error) {
	o, err := r.Observe(ctx, d)
	if err != nil {
		return nil, err
	}
	return MakePlan(d, o)
}

// Once converges the project one time, in two phases. First images,
// networks and volumes: if an image cannot be had, nothing else is
// changed. Then the engine is observed again (a new image may mean drift,
// a new network has its gateway), Prepare adjusts the desired model to it,
// and the containers are planned and executed. Every complete observation
// is handed to Observed.
func (r *Reconciler) Once(ctx context.Context, d Desired) (*Result, error) {
	if d.Now.IsZero() {
		d.Now = time.Now()
	}
	o, err := r.observe(ctx, d)
	if err != nil {
		return nil, err
	}
	if d, err = r.prepare(ctx, d, o); err != nil {
		return nil, err
	}
	plan, err := MakePlan(d, o)
	if err != nil {
		return nil, err
	}
	res := &Result{Plan: &Plan{Project: plan.Project, Warnings: plan.Warnings, RequeueAfter: plan.RequeueAfter}}
	if infra := plan.InfraSteps(); !infra.Empty() {
		r.log().Debug("plan", "project", d.Project.Name, "phase", "infrastructure", "text", infra.String())
		if err := Execute(ctx, r.Engine, infra, r.concurrency(), r.Progress); err != nil {
			return res, fmt.Errorf("%w\nnothing else was changed", err)
		}
		res.Plan.Steps = append(res.Plan.Steps, infra.Steps...)
		d.Build = false
		if o, err = r.observe(ctx, d); err != nil {
			return res, err
		}
		if d, err = r.prepare(ctx, d, o); err != nil {
			return res, err
		}
		if plan, err = MakePlan(d, o); err != nil {
			return res, err
		}
	}
	if !plan.Empty() {
		r.log().Debug("plan", "project", d.Project.Name, "steps", len(plan.Steps), "text", plan.String())
		err = r.executor(d).Run(ctx, plan)
		res.Plan.Steps = append(res.Plan.Steps, plan.Steps...)
		if err != nil {
			err = r.rolloutFailed(ctx, d, err, res)
		}
		if o2, oerr := r.observe(ctx, d); oerr == nil {
			o = o2
		}
	}
	res.Observed = o
	return res, err
}

func (r *Reconciler) executor(d Desired) *Executor {
	return &Executor{Engine: r.Engine, Publisher: r.Publisher, Project: d.Project.Name, Concurrency: r.concurrency(), Progress: r.Progress}
}

// rolloutFailed applies the failure_action of every service whose rollout
// failed: rollback restores the previous config in every slot (the old
// containers were kept aside); pause and rollback both record the failed
// config (OnRolloutFailed) so that the loop does not retry it; continue
// did its work in the executor already.
func (r *Reconciler) rolloutFailed(ctx context.Context, d Desired, err error, res *Result) error {
	seen := map[string]bool{}
	for _, s := range FailedSteps(err) {
		if !s.Rollout || seen[s.Service] {
			continue
		}
		seen[s.Service] = true
		svc, ok := d.Project.Service(s.Service)
		if !ok {
			continue
		}
		u := updateConfigOf(svc)
		switch u.failureAction {
		case "continue":
			continue
		case "rollback":
			o, oerr := r.Observe(ctx, d)
			if oerr != nil {
				return errors.Join(err, oerr)
			}
			rb, perr := MakeRollbackPlan(d, o, svc.Name)
			if perr != nil {
				return errors.Join(err, perr)
			}
			r.log().Warn("rollout failed; rolling back", "service", svc.Name, "plan", rb.String())
			res.Plan.Steps = append(res.Plan.Steps, rb.Steps...)
			if rerr := r.executor(d).Run(ctx, rb); rerr != nil {
				err = fmt.Errorf("%w\nrollback of service %s failed too: %w", err, svc.Name, rerr)
			} else {
				err = fmt.Errorf("%w\nrollout of service %s failed (failure_action: rollback): the previous config was restored in every slot", err, svc.Name)
			}
		default:
			err = fmt.Errorf("%w\nrollout of service %s failed and is paused (failure_action: pause): the remaining slots keep the previous config", err, svc.Name)
		}
		if r.OnRolloutFailed != nil {
			r.OnRolloutFailed(svc.Name, svc.Hash)
		}
	}
	return err
}

// observe reads the engine and hands the observation on.
func (r *Reconciler) observe(ctx context.Context, d Desired) (*Observed, error) {
	o, err := r.Observe(ctx, d)
	if err == nil && r.Observed != nil {
		if r.log().Enabled(ctx, slog.LevelDebug) {
			states := make([]string, 0, len(o.Containers))
			for _, c := range o.Containers {
				states = append(states, c.Name+"="+c.State+healthSuffix(c.Health))
			}
			r.log().Debug("observed", "containers", states)
		}
		r.Observed(o)
	}
	return o, err
}

func (r *Reconciler) prepare(ctx context.Context, d Desired, o *Observed) (Desired, error) {
	if r.Prepare == nil {
		return d, nil
	}
	return r.Prepare(ctx, d, o)
}

// Run reconciles until ctx ends: once now, then whenever the engine
// reports an event for the project (events only say "look again"; a short
// debounce batches bursts), and every Resync period as a safety net.
// Errors back off exponentially up to a minute; the event stream is
// re-opened when it fails (e.g. the engine restarted).
//
// load is called before every reconcile, so the desired model follows the
// compose file and `roster scale`. The loop never starts stopped
// containers (the engine's restart policy and the user decide) and never
// recreates for a config change (`roster up` rolls those out).
func (r *Reconciler) Run(ctx context.Context, load func(context.Context) (Desired, error)) error {
	resync := r.Resync
	if resync <= 0 {
		resync = 10 * time.Second
	}
	log := r.log()
	kick := make(chan struct{}, 1)
	poke := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	d, err := load(ctx)
	if err != nil {
		return err
	}
	go r.watch(ctx, d.Project.Name, poke)

	backoff := time.Duration(0)
	timer := time.NewTimer(0)
	defer timer.Stop()
	// After an event, look again a few times shortly after: the engine's
	// container list can lag its own events (a "die" arrives while the list
	// still says running, until the network teardown is done).
	followUps := []time.Duration{150 * time.Millisecond, 500 * time.Millisecond, 1500 * time.Millisecond}
	follow := len(followUps)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
			follow = 0
			// Debounce: let a burst of events (a container dying
			// emits kill, die, stop...) settle.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(50 * time.Millisecond):
			}
		case <-timer.C:
		}
		if backoff > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
		}
		requeue, err := r.loopOnce(ctx, load)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			backoff = min(max(2*backoff, 500*time.Millisecond), time.Minute)
			log.Error("reconcile failed; will retry", "project", d.Project.Name, "err", err, "retry_in", backoff)
			poke()
		} else {
			backoff = 0
		}
		next := resync
		if requeue > 0 && requeue < next {
			next = requeue // e.g. a restart_unhealthy backoff ends
		}
		if follow < len(followUps) {
			next = min(next, followUps[follow])
			follow++
		}
		timer.Reset(next)
	}
}

// watch follows the project's engine events and pokes on each one,
// re-opening the stream after a failure.
func (r *Reconciler) watch(ctx context.Context, project string, poke func()) {
	log := r.log()
	wait := time.Second
	for ctx.Err() == nil {
		events, errs := r.Engine.Events(ctx, project)
		opened := time.Now()
	loop:
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-events:
				if !ok {
					break loop
				}
				log.Debug("event", "action", ev.Action, "container", ev.Name)
				poke()
			case err := <-errs:
				if ctx.Err() == nil {
					log.Warn("engine event stream failed; reconnecting", "err", err, "in", wait)
				}
				break loop
			}
		}
		if time.Since(opened) > time.Minute {
			wait = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
		poke() // we may have missed events while disconnected
	}
}

func (r *Reconciler) loopOnce(ctx context.Context, load func(context.Context) (Desired, error)) (time.Duration, error) {
	// Lock first, then read the desired model: a CLI that held the lock
	// may just have changed the state file (a failed rollout recorded, a
	// new scale), and planning from a model read before would undo it.
	if r.Lock != nil {
		unlock, err := r.Lock(ctx)
		if err != nil {
			return 0, err
		}
		defer unlock()
	}
	d, err := load(ctx)
	if err != nil {
		return 0, err
	}
	d.StartStopped = false
	// The loop repairs, scales and follows health; it does not roll out a
	// config change on its own (an edited compose file is applied by
	// `roster up`, which can report, pause or roll back). Otherwise an
	// agent would race the user's `up` over a half-edited file.
	d.NoRecreate, d.ForceRecreate = true, false
	res, err := r.Once(ctx, d)
	var requeue time.Duration
	if res != nil && res.Plan != nil {
		requeue = res.Plan.RequeueAfter
		if !res.Plan.Empty() {
			r.log().Info("reconciled", "project", d.Project.Name, "plan", res.Plan.String())
		}
	}
	return requeue, err
}
