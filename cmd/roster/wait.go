package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/roster-dev/roster/engine"
	"github.com/roster-dev/roster/reconciler"
)

// waitReady implements `up --wait`: it returns once every replica of the
// selected services is ready (running and, with a healthcheck, healthy),
// or, for a service others depend on with condition
// service_completed_successfully, has exited 0. On timeout it reports the
// replicas that are not, with their last healthcheck output.
func waitReady(ctx context.Context, eng *engine.Docker, d reconciler.Desired, timeout time.Duration, w io.Writer) error {
	completes := map[string]bool{}
	for _, s := range d.Project.Services {
		for dep, c := range s.Config.DependsOn {
			if c.Condition == "service_completed_successfully" {
				completes[dep] = true
			}
		}
	}
	want := map[string]bool{}
	for _, s := range d.Services {
		want[s] = true
	}
	deadline := time.Now().Add(timeout)
	for {
		o, err := eng.Observe(ctx, d.Project.Name, nil)
		if err != nil {
			return err
		}
		var waiting []reconciler.Container
		count := map[string]int{}
		for _, c := range reconciler.Replicas(d.Project, o) {
			if len(want) > 0 && !want[c.Service] {
				continue
			}
			count[c.Service]++
			ok := reconciler.Ready(c)
			if completes[c.Service] {
				if c.State == "exited" && c.ExitCode != 0 {
					return fmt.Errorf("--wait: %s exited with code %d (services depend on it completing successfully)", c.Name, c.ExitCode)
				}
				ok = c.State == "exited" && c.ExitCode == 0
			}
			if !ok {
				waiting = append(waiting, c)
			}
		}
		missing := missingReplicas(d, count, want)
		if len(waiting) == 0 && len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return notReady(ctx, eng, waiting, missing, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// missingReplicas names services with fewer replicas than desired.
func missingReplicas(d reconciler.Desired, count map[string]int, want map[string]bool) []string {
	var out []string
	for _, s := range d.Project.Services {
		if len(want) > 0 && !want[s.Name] {
			continue
		}
		n := d.Replicas[s.Name]
		if count[s.Name] < n {
			out = append(out, fmt.Sprintf("service %s has %d of %d replicas", s.Name, count[s.Name], n))
		}
	}
	return out
}

func notReady(ctx context.Context, eng *engine.Docker, waiting []reconciler.Container, missing []string, timeout time.Duration) error {
	var lines []string
	for _, c := range waiting {
		line := fmt.Sprintf("  %s (%s, slot %d): %s", c.Name, c.Hostname, c.Slot, c.State)
		if c.Health != "" {
			line += ", " + c.Health
		}
		if log, err := eng.HealthLog(ctx, c.ID); err == nil && log != "" {
			line += "; last healthcheck: " + truncate(log, 300)
		}
		lines = append(lines, line)
	}
	for _, m := range missing {
		lines = append(lines, "  "+m)
	}
	sort.Strings(lines)
	return fmt.Errorf("--wait: not every replica is ready after %s:\n%s", timeout, strings.Join(lines, "\n"))
}

func truncate(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
