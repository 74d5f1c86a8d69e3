package reconciler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
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

// Execute runs the plan's steps against the engine, at most concurrency at
// a time, each once its After steps have succeeded. It makes no decision:
// a failed step skips the steps that depend on it, independent steps go
// on, and no new step starts once ctx is done. It returns every failure,
// joined. progress is called from several goroutines.
func Execute(ctx context.Context, eng Engine, p *Plan, concurrency int, progress func(StepEvent)) error {
	if concurrency < 1 {
		concurrency = 1
	}
	if progress == nil {
		progress = func(StepEvent) {}
	}
	n := len(p.Steps)
	byID := make(map[int]int, n) // step ID -> index
	for i, s := range p.Steps {
		byID[s.ID] = i
	}
	var (
		mu      sync.Mutex
		cond    = sync.NewCond(&mu)
		state   = make([]int, n) // 0 pending, 1 running, 2 done, 3 failed/skipped
		created = map[int]string{}
		errs    []error
		running int
	)
	ready := func(i int) (ok, blocked bool) {
		for _, a := range p.Steps[i].After {
			j, found := byID[a]
			if !found {
				continue
			}
			switch state[j] {
			case 3:
				return false, true
			case 2:
			default:
				return false, false
			}
		}
		return true, false
	}
	mu.Lock()
	for {
		progressed := false
		pending := 0
		for i := range p.Steps {
			if state[i] != 0 {
				continue
			}
			pending++
			ok, blocked := ready(i)
			if blocked || ctx.Err() != nil {
				state[i] = 3
				progressed = true
				progress(StepEvent{Step: p.Steps[i], State: StepSkipped, Err: ctx.Err()})
				continue
			}
			if !ok || running >= concurrency {
				continue
			}
			state[i] = 1
			running++
			progressed = true
			step := p.Steps[i]
			if step.ContainerID == "" && step.Ref != 0 {
				step.ContainerID = created[step.Ref]
			}
			go func(i int, step Step) {
				progress(StepEvent{Step: step, State: StepRunning})
				id, err := run(ctx, eng, step)
				if err != nil {
					progress(StepEvent{Step: step, State: StepFailed, Err: err})
				} else {
					progress(StepEvent{Step: step, State: StepDone})
				}
				mu.Lock()
				running--
				if err != nil {
					state[i] = 3
					errs = append(errs, err)
				} else {
					state[i] = 2
					if id != "" {
						created[step.ID] = id
					}
				}
				cond.Broadcast()
				mu.Unlock()
			}(i, step)
		}
		if pending == 0 && running == 0 {
			break
		}
		if !progressed {
			cond.Wait()
		}
	}
	mu.Unlock()
	return errors.Join(errs...)
}

// run makes the one engine call of a step.
func run(ctx context.Context, eng Engine, s Step) (string, error) {
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
		err = eng.StopContainer(ctx, s.ContainerID, s.Timeout)
	case ActRenameContainer:
		err = eng.RenameContainer(ctx, s.ContainerID, s.NewName)
	case ActRemoveContainer:
		err = eng.RemoveContainer(ctx, s.ContainerID, s.RemoveVolumes)
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
