package render

import (
	"context"
	"sync"
	"time"
)

// burst tracks one burst of updates for the debounce.
type burst struct {
	first, last time.Time
	on          bool
}

func (b *burst) add(now time.Time) {
	if !b.on {
		b.first, b.on = now, true
	}
	b.last = now
}

// due is when the burst renders: w.Min after its last update, but no later
// than w.Max after its first (consul-template's wait semantics).
func (b *burst) due(w Wait) time.Time {
	d := b.last.Add(w.Min)
	if m := b.first.Add(w.Max); m.Before(d) {
		d = m
	}
	return d
}

// wait is the renderer's debounce: the largest min and the largest max of
// its templates, so that no template renders sooner than it asked (all
// templates render together, which is what makes one reload per consumer
// per batch possible).
func (r *Renderer) wait() Wait {
	if len(r.templates) == 0 {
		return Wait{DefaultWaitMin, DefaultWaitMax}
	}
	var w Wait
	for _, t := range r.templates {
		w.Min = max(w.Min, t.Wait.Min)
		w.Max = max(w.Max, t.Wait.Max)
	}
	return w
}

// Run renders on updates until ctx is done or updates is closed (a pending
// burst is then rendered at once). Each Data must describe a complete
// observation; nothing is rendered before the first one. A burst of
// updates renders once, with the latest Data, after the debounce (see
// wait). Sending never blocks for long: updates are taken as they come and
// only the latest is kept. After a render with failures, Run renders again
// after a delay (5s, doubling up to 2m) even without updates: failed
// reloads, writes and checks that could not run are tried again; an output
// its check rejected is not (it would flap into place), a new output is.
// Results are logged and available from Last. Run returns nil.
func (r *Renderer) Run(ctx context.Context, updates <-chan Data) error {
	w := r.wait()
	var (
		mu     sync.Mutex
		latest Data
		have   bool
		b      burst
		closed bool
	)
	kick := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case d, ok := <-updates:
				mu.Lock()
				if ok {
					latest, have = d, true
					b.add(time.Now())
				} else {
					closed = true
				}
				mu.Unlock()
				select {
				case kick <- struct{}{}:
				default:
				}
				if !ok {
					return
				}
			}
		}
	}()

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var retry <-chan time.Time
	delay := r.retryFirst
	render := func() {
		mu.Lock()
		d, ok := latest, have
		b = burst{}
		mu.Unlock()
		if !ok {
			return
		}
		rep, err := r.Render(ctx, d)
		if r.rendered != nil {
			r.rendered(d, rep)
		}
		if err != nil && ctx.Err() == nil {
			retry = time.After(delay)
			delay = min(2*delay, r.retryMax)
		} else {
			retry, delay = nil, r.retryFirst
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
			mu.Lock()
			on, due, done := b.on, b.due(w), closed
			mu.Unlock()
			if done {
				if on {
					render()
				}
				return nil
			}
			if on {
				timer.Reset(time.Until(due))
			}
		case <-timer.C:
			mu.Lock()
			on, due := b.on, b.due(w)
			mu.Unlock()
			if !on {
				continue
			}
			if wait := time.Until(due); wait > 0 {
				timer.Reset(wait) // the burst went on after the timer was set
				continue
			}
			render()
		case <-retry:
			render()
		}
	}
}
