package operator

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/roster-dev/roster/compose"
	"github.com/roster-dev/roster/reconciler"
	"github.com/roster-dev/roster/render"
)

// Publisher drains slots during rollouts (reconciler.Publisher): a drained
// replica counts as not ready, so it leaves the service's DNS answers and
// the templates' ready replicas, and the consumers are reloaded before the
// rollout touches its container. DNS and Renderer may be nil (a CLI without
// an operator has no DNS to drain; the agent's DNS drops the old container
// when it is renamed aside, right after the drain).
type Publisher struct {
	Engine   reconciler.Engine
	DNS      *DNS
	Renderer *render.Renderer
	Log      *slog.Logger

	mu      sync.Mutex
	project *compose.Project
	drained map[string]bool
}

// SetProject sets the model observations are read against.
func (p *Publisher) SetProject(pr *compose.Project) {
	p.mu.Lock()
	p.project = pr
	p.mu.Unlock()
}

func key(service string, slot int) string { return fmt.Sprintf("%s/%d", service, slot) }

// Filter returns o with the drained slots marked not ready (health
// "draining").
func (p *Publisher) Filter(o *reconciler.Observed) *reconciler.Observed {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.drained) == 0 {
		return o
	}
	c := *o
	c.Containers = append([]reconciler.Container(nil), o.Containers...)
	for i, ct := range c.Containers {
		if p.drained[key(ct.Service, ct.Slot)] {
			c.Containers[i].Health = "draining"
		}
	}
	return &c
}

// Drain takes the slot out and publishes at once.
func (p *Publisher) Drain(ctx context.Context, service string, slot int) error {
	p.mu.Lock()
	if p.drained == nil {
		p.drained = map[string]bool{}
	}
	p.drained[key(service, slot)] = true
	p.mu.Unlock()
	return p.publish(ctx)
}

// Undrain puts the slot back and publishes at once.
func (p *Publisher) Undrain(ctx context.Context, service string, slot int) error {
	p.mu.Lock()
	delete(p.drained, key(service, slot))
	p.mu.Unlock()
	return p.publish(ctx)
}

// publish observes the engine and hands the filtered view to DNS and the
// templates, rendering (and reloading consumers) synchronously. A template
// that fails is logged, not fatal: the rollout must not hang on it.
func (p *Publisher) publish(ctx context.Context) error {
	p.mu.Lock()
	pr := p.project
	p.mu.Unlock()
	if pr == nil {
		return nil
	}
	o, err := p.Engine.Observe(ctx, pr.Name, nil)
	if err != nil {
		return err
	}
	o = p.Filter(o)
	if p.DNS != nil {
		p.DNS.Observed(o)
	}
	if p.Renderer != nil {
		rep, err := p.Renderer.Render(ctx, reconciler.TemplateData(pr, o, DesiredReplicas(pr)))
		if err == nil {
			err = rep.Err()
		}
		if err != nil && p.Log != nil {
			p.Log.Warn("templates: render during a rollout failed; the last good files are kept", "err", err)
		}
	}
	return nil
}
