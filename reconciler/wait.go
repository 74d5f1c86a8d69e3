package reconciler

import (
	"context"
	"fmt"
	"time"
)

func (x *Executor) poll() time.Duration {
	if x.Poll <= 0 {
		return 200 * time.Millisecond
	}
	return x.Poll
}

// waitUntil observes the project every poll until check says done (or
// fails), or the step's timeout passes.
func (x *Executor) waitUntil(ctx context.Context, s Step, check func(*Observed) (done bool, status string, err error)) error {
	timeout := 5 * time.Minute
	if s.Timeout != nil && *s.Timeout > 0 {
		timeout = *s.Timeout
	}
	deadline := time.Now().Add(timeout)
	status := "not observed yet"
	for {
		o, err := x.Engine.Observe(ctx, x.Project, nil)
		if err != nil {
			return err
		}
		done, st, err := check(o)
		if err != nil || done {
			return err
		}
		status = st
		if time.Now().After(deadline) {
			return fmt.Errorf("not done after %s: %s", timeout, status)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(x.poll()):
		}
	}
}

// waitReady waits until the step's container is ready (running and, with
// a healthcheck, healthy) and has stayed ready for s.Monitor. It fails at
// once when the container exits or turns unhealthy.
func (x *Executor) waitReady(ctx context.Context, s Step) error {
	if s.ContainerID == "" {
		return fmt.Errorf("no container to wait for")
	}
	var since time.Time
	return x.waitUntil(ctx, s, func(o *Observed) (bool, string, error) {
		var c *Container
		for i := range o.Containers {
			if o.Containers[i].ID == s.ContainerID {
				c = &o.Containers[i]
			}
		}
		switch {
		case c == nil:
			return false, "", fmt.Errorf("container %s is gone", s.Target)
		case c.State == "exited" || c.State == "dead":
			return false, "", fmt.Errorf("container %s %s with code %d instead of becoming ready", s.Target, c.State, c.ExitCode)
		case c.Health == "unhealthy":
			return false, "", fmt.Errorf("container %s is unhealthy", s.Target)
		case !Ready(*c):
			since = time.Time{}
			return false, fmt.Sprintf("%s is %s%s", s.Target, c.State, healthSuffix(c.Health)), nil
		}
		if since.IsZero() {
			since = time.Now()
		}
		if time.Since(since) < s.Monitor {
			return false, fmt.Sprintf("%s is ready, monitoring for %s", s.Target, s.Monitor), nil
		}
		return true, "", nil
	})
}

func healthSuffix(h string) string {
	if h == "" {
		return ""
	}
	return " (" + h + ")"
}

// waitService waits until every replica of the service s.Target meets the
// depends_on condition of a dependent service (named in s.Service).
func (x *Executor) waitService(ctx context.Context, s Step) error {
	dep, dependent := s.Target, s.Service
	return x.waitUntil(ctx, s, func(o *Observed) (bool, string, error) {
		var cs []Container
		for _, c := range o.Containers {
			if c.Service == dep && !c.OneOff && c.Slot > 0 {
				cs = append(cs, c)
			}
		}
		if len(cs) == 0 {
			return false, fmt.Sprintf("service %s has no container yet", dep), nil
		}
		for _, c := range cs {
			switch s.Condition {
			case "service_healthy":
				switch {
				case c.State == "exited" || c.State == "dead":
					return false, "", fmt.Errorf("service %q depends on %q being healthy, but %s %s with code %d", dependent, dep, c.Name, c.State, c.ExitCode)
				case c.Running() && c.Health == "":
					return false, "", fmt.Errorf("service %q depends on %q being healthy, but %s has no healthcheck", dependent, dep, c.Name)
				case c.Health == "unhealthy":
					return false, "", fmt.Errorf("service %q depends on %q being healthy, but %s is unhealthy", dependent, dep, c.Name)
				case c.Health != "healthy":
					return false, fmt.Sprintf("%s is %s%s", c.Name, c.State, healthSuffix(c.Health)), nil
				}
			case "service_completed_successfully":
				switch {
				case c.State == "exited" && c.ExitCode == 0:
				case c.State == "exited" || c.State == "dead":
					return false, "", fmt.Errorf("service %q depends on %q completing successfully, but %s exited with code %d", dependent, dep, c.Name, c.ExitCode)
				default:
					return false, fmt.Sprintf("%s is %s", c.Name, c.State), nil
				}
			}
		}
		return true, "", nil
	})
}
