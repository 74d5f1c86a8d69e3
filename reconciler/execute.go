package reconciler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// StepEvent reports progress of one step to the caller (the CLI's progress
// writer, logs).
type StepEvent struct {
	Step  Step
	State StepState
	Err   error
}

// StepState is where a step is.
type StepState int

// Step states.
const (
	StepRunning StepState = iota
	StepDone
	StepFailed
	StepSkipped // a step it depends on failed, or the context ended
)

// Publisher takes a slot out of (and back into) what the project
// publishes: DNS answers for the service and the rendered templates, with
// the consumers reloaded, before Drain returns. The operator implements it.
type Publisher interface {
	Drain(ctx context.Context, service string, slot int) error
	Undrain(ctx context.Context, service string, slot int) error
}

// Executor runs plans. It makes no decision: a failed step skips the steps
// that depend on it (After), steps that only wait for completion
// (AfterDone) go on, independent steps go on, and no new step starts once
// ctx is done.
type Executor struct {
	Engine      Engine
	Publisher   Publisher // optional: drain and undrain are no-ops without it
	Project     string    // for the wait steps' observations
	Concurrency int       // default 8
	Progress    func(StepEvent)
	Poll        time.Duration // wait steps' observation period; default 200ms

	// teardown serializes stops and removals: the engine's network code
	// (libnetwork before Docker 23) can deadlock when several containers
	// leave a network at once (moby/moby#46661), hanging the whole daemon.
	teardown sync.Mutex
}

// Execute runs a plan with an Executor on eng; progress is called from
// several goroutines.
func Execute(ctx context.Context, eng Engine, p *Plan, concurrency int, progress func(StepEvent)) error {
	return (&Executor{Engine: eng, Project: p.Project, Concurrency: concurrency, Progress: progress}).Run(ctx, p)
}

// Run executes the plan's steps, at most Concurrency at a time, each once
// its After steps succeeded and its AfterDone steps finished. It returns
// every failure, joined.
func (x *Executor) Run(ctx context.Context, p *Plan) error {
	concurrency := x.Concurrency
	if concurrency < 1 {
		concurrency = 8
	}
	progress := x.Progress
	if progress == nil {
		progress = func(StepEvent) {}
	}
	const (
		pending = iota
		running
		done
		failed // failed or skipped
	)
	n := len(p.Steps)
	byID := make(map[int]int, n) // step ID -> index
	for i, s := range p.Steps {
		byID[s.ID] = i
	}
	var (
		mu      sync.Mutex
		cond    = sync.NewCond(&mu)
		state   = make([]int, n)
		created = map[int]string{}
		errs    []error
		active  int
	)
	ready := func(i int) (ok, blocked bool) {
		for _, a := range p.Steps[i].After {
			if j, found := byID[a]; found {
				switch state[j] {
				case failed:
					return false, true
				case done:
				default:
					return false, false
				}
			}
		}
		for _, a := range p.Steps[i].AfterDone {
			if j, found := byID[a]; found && (state[j] == pending || state[j] == running) {
				return false, false
			}
		}
		return true, false
	}
	mu.Lock()
	for {
		progressed := false
		left := 0
		for i := range p.Steps {
			if state[i] != pending {
				continue
			}
			left++
			ok, blocked := ready(i)
			if blocked || ctx.Err() != nil {
				state[i] = failed
				progressed = true
				progress(StepEvent{Step: p.Steps[i], State: StepSkipped, Err: ctx.Err()})
				continue
			}
			if !ok || active >= concurrency {
				continue
			}
			state[i] = running
			active++
			progressed = true
			step := p.Steps[i]
			if step.ContainerID == "" && step.Ref != 0 {
				step.ContainerID = created[step.Ref]
			}
			go func(i int, step Step) {
				progress(StepEvent{Step: step, State: StepRunning})
				id, err := x.run(ctx, step)
				if err != nil {
					progress(StepEvent{Step: step, State: StepFailed, Err: err})
				} else {
					progress(StepEvent{Step: step, State: StepDone})
				}
				mu.Lock()
				active--
				if err != nil {
					state[i] = failed
					errs = append(errs, err)
				} else {
					state[i] = done
					if id != "" {
						created[step.ID] = id
					}
				}
				cond.Broadcast()
				mu.Unlock()
			}(i, step)
		}
		if left == 0 && active == 0 {
			break
		}
		if !progressed {
			cond.Wait()
		}
	}
	mu.Unlock()
	return errors.Join(errs...)
}

// run makes the one call of a step: an engine call, a publisher call, or
// for the wait steps repeated observations.
func (x *Executor) run(ctx context.Context, s Step) (string, error) {
	if s.Delay > 0 {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(s.Delay):
		}
	}
	eng := x.Engine
	var err error
	switch s.Action {
	case ActBuildImage:
		err = eng.BuildImage(ctx, *s.Build)
	case ActPullImage:
		if err = eng.PullImage(ctx, s.Image); err != nil {
			err = fmt.Errorf("service %q: image %q is not present in the engine and the service has no build section; pulling it failed: %w", s.Service, s.Image, err)
		}
	case ActCreateNetwork:
		err = eng.CreateNetwork(ctx, *s.Network)
	case ActCreateVolume:
		err = eng.CreateVolume(ctx, *s.Volume)
	case ActRemoveNetwork:
		err = eng.RemoveNetwork(ctx, s.Target)
	case ActRemoveVolume:
		err = eng.RemoveVolume(ctx, s.Target)
	case ActCreateContainer:
		id, err := eng.CreateContainer(ctx, *s.Container)
		if err != nil {
			return "", wrapStep(s, err)
		}
		return id, nil
	case ActStartContainer:
		err = eng.StartContainer(ctx, s.ContainerID)
	case ActStopContainer:
		x.teardown.Lock()
		err = eng.StopContainer(ctx, s.ContainerID, s.Timeout)
		x.teardown.Unlock()
	case ActRenameContainer:
		err = eng.RenameContainer(ctx, s.ContainerID, s.NewName)
	case ActRemoveContainer:
		x.teardown.Lock()
		err = eng.RemoveContainer(ctx, s.ContainerID, s.RemoveVolumes)
		x.teardown.Unlock()
	case ActDrain:
		if x.Publisher != nil {
			err = x.Publisher.Drain(ctx, s.Service, s.Slot)
		}
	case ActUndrain:
		if x.Publisher != nil {
			err = x.Publisher.Undrain(ctx, s.Service, s.Slot)
		}
	case ActWaitReady:
		err = x.waitReady(ctx, s)
	case ActWaitService:
		err = x.waitService(ctx, s)
	default:
		err = fmt.Errorf("unknown action %q", s.Action)
	}
	if err != nil {
		return "", wrapStep(s, err)
	}
	return "", nil
}

// StepError is a failed step.
type StepError struct {
	Step Step
	Err  error
}

func (e *StepError) Error() string {
	msg := e.Err.Error()
	if strings.Contains(msg, e.Step.Target) {
		return msg
	}
	return fmt.Sprintf("%s %s: %s", e.Step.Action, e.Step.Target, msg)
}
func (e *StepError) Unwrap() error { return e.Err }

func wrapStep(s Step, err error) error { return &StepError{Step: s, Err: err} }

// FailedSteps returns the steps an Execute error reports as failed.
func FailedSteps(err error) []Step {
	var out []Step
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if se, ok := err.(*StepError); ok {
			out = append(out, se.Step)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		walk(errors.Unwrap(err))
	}
	walk(err)
	return out
}
