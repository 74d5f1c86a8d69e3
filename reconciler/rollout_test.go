package reconciler_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/roster-dev/roster/reconciler"
	"github.com/roster-dev/roster/reconciler/fake"
)

func rolloutYAML(update string) string {
	return `
services:
  web:
    image: fixture:1
    environment: {COLOR: blue}
    deploy:
      replicas: 4
      update_config: ` + update + "\n"
}

// stepIndex returns the position of the first step matching.
func stepIndex(p *reconciler.Plan, a reconciler.Action, target string) int {
	for i, s := range p.Steps {
		if s.Action == a && strings.HasPrefix(s.Target, target) {
			return i
		}
	}
	return -1
}

func TestRolloutPlanBatches(t *testing.T) {
	eng := fake.New("fixture:1")
	converge(t, eng, desired(load(t, rolloutYAML("{parallelism: 2, delay: 1s}")), nil))
	d := desired(load(t, strings.Replace(rolloutYAML("{parallelism: 2, delay: 1s}"), "blue", "green", 1)), nil)
	o, _ := eng.Observe(context.Background(), "demo", []string{"fixture:1"})
	plan, err := reconciler.MakePlan(d, o)
	if err != nil {
		t.Fatal(err)
	}
	byTarget := map[string]reconciler.Step{}
	for _, s := range plan.Steps {
		if s.Action == reconciler.ActDrain || s.Action == reconciler.ActUndrain {
			byTarget[string(s.Action)+" "+s.Target] = s
		}
	}
	d3 := byTarget["drain demo-web-3"]
	if d3.Delay != time.Second || !slices.Contains(d3.After, byTarget["undrain demo-web-1"].ID) || !slices.Contains(d3.After, byTarget["undrain demo-web-2"].ID) {
		t.Fatalf("batch 2 must wait for batch 1 and the delay:\n%s", plan)
	}
	if d2 := byTarget["drain demo-web-2"]; d2.Delay != 0 || slices.Contains(d2.After, byTarget["undrain demo-web-1"].ID) {
		t.Fatalf("slots 1 and 2 are one batch:\n%s", plan)
	}
	// drain before the old container stops, wait ready before undrain
	for _, slot := range []string{"demo-web-1", "demo-web-4"} {
		stop := -1
		for i, s := range plan.Steps {
			if s.Action == reconciler.ActStopContainer && strings.HasSuffix(s.Target, "_"+slot) {
				stop = i
			}
		}
		if !(stepIndex(plan, reconciler.ActDrain, slot) < stop &&
			stepIndex(plan, reconciler.ActWaitReady, slot) < stepIndex(plan, reconciler.ActUndrain, slot)) {
			t.Fatalf("order for %s:\n%s", slot, plan)
		}
	}
	res := converge(t, eng, d)
	if got := eng.Slots(); !slices.Equal(got, []string{"demo-web-1/web_1/running", "demo-web-2/web_2/running", "demo-web-3/web_3/running", "demo-web-4/web_4/running"}) {
		t.Fatalf("slots %v\n%s", got, res.Plan)
	}
	assertConverged(t, eng, d)
}

func TestRolloutStartFirst(t *testing.T) {
	eng := fake.New("fixture:1")
	converge(t, eng, desired(load(t, rolloutYAML("{order: start-first}")), nil))
	d := desired(load(t, strings.Replace(rolloutYAML("{order: start-first}"), "blue", "green", 1)), nil)
	res := converge(t, eng, d)
	// the new container runs before the old one stops
	create := stepIndex(res.Plan, reconciler.ActCreateContainer, "demo-web-1-next")
	stop := stepIndex(res.Plan, reconciler.ActStopContainer, "demo-web-1")
	if create < 0 || stop < 0 || create > stop {
		t.Fatalf("start-first order:\n%s", res.Plan)
	}
	if got := eng.Slots(); !slices.Equal(got, []string{"demo-web-1/web_1/running", "demo-web-2/web_2/running", "demo-web-3/web_3/running", "demo-web-4/web_4/running"}) {
		t.Fatalf("slots %v", got)
	}
	assertConverged(t, eng, d)
}

func TestRolloutFailureActions(t *testing.T) {
	cases := []struct {
		action string
		want   []string // COLOR per slot after the failed rollout
	}{
		{"pause", []string{"green", "failed", "blue", "blue"}},
		{"rollback", []string{"blue", "blue", "blue", "blue"}},
		{"continue", []string{"green", "failed", "green", "green"}},
	}
	for _, tc := range cases {
		t.Run(tc.action, func(t *testing.T) {
			y := rolloutYAML("{failure_action: " + tc.action + "}")
			p1 := load(t, y)
			eng := fake.New("fixture:1")
			converge(t, eng, desired(p1, nil))
			p2 := load(t, strings.Replace(y, "blue", "green", 1))
			web1, _ := p1.Service("web")
			web2, _ := p2.Service("web")
			failed := false
			eng.Crash = func(call string) error {
				if call == "start demo-web-2" && !failed {
					failed = true
					return errors.New("port is already allocated")
				}
				return nil
			}
			var paused []string
			r := &reconciler.Reconciler{Engine: eng, OnRolloutFailed: func(s, h string) { paused = append(paused, s+"@"+h[:8]) }}
			d := desired(p2, nil)
			_, err := r.Once(context.Background(), d)
			if err == nil || !strings.Contains(err.Error(), tc.action) && tc.action != "continue" {
				t.Fatalf("err = %v", err)
			}
			var got []string
			for n := 1; n <= 4; n++ {
				state := "missing"
				for _, c := range eng.Containers {
					if c.Slot != n {
						continue
					}
					switch {
					case c.ConfigHash == web1.Hash && c.State == "running" && c.Name == "demo-web-"+string(rune('0'+n)):
						state = "blue"
					case c.ConfigHash == web2.Hash && c.State == "running":
						state = "green"
					case c.ConfigHash == web2.Hash:
						state = "failed"
					case c.ConfigHash == web1.Hash && state == "missing":
						state = "old"
					}
				}
				got = append(got, state)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("slots = %v, want %v\ncalls %v", got, tc.want, eng.Calls)
			}
			if tc.action == "continue" {
				if len(paused) != 0 {
					t.Fatalf("continue must not pause: %v", paused)
				}
				return
			}
			if len(paused) != 1 {
				t.Fatalf("paused = %v", paused)
			}
			// The loop does not retry a paused config...
			d.Paused = map[string]string{"web": web2.Hash}
			o, _ := eng.Observe(context.Background(), "demo", []string{"fixture:1"})
			plan, _ := reconciler.MakePlan(d, o)
			for _, s := range plan.Steps {
				if s.Rollout {
					t.Fatalf("paused rollout retried:\n%s", plan)
				}
			}
			// ...an explicit up (no pause) does, and converges.
			d.Paused = nil
			converge(t, eng, d)
			assertConverged(t, eng, d)
		})
	}
}

func TestDependsOnConditions(t *testing.T) {
	y := `
services:
  web:
    image: fixture:1
    depends_on:
      db: {condition: service_healthy}
      migrate: {condition: service_completed_successfully}
  db:
    image: fixture:1
  migrate:
    image: fixture:1
`
	p := load(t, y)
	o := &reconciler.Observed{Images: map[string]string{"fixture:1": "sha256:x"}}
	plan, err := reconciler.MakePlan(desired(p, nil), o)
	if err != nil {
		t.Fatal(err)
	}
	var waits []reconciler.Step
	var webCreate reconciler.Step
	for _, s := range plan.Steps {
		if s.Action == reconciler.ActWaitService {
			waits = append(waits, s)
		}
		if s.Action == reconciler.ActCreateContainer && s.Service == "web" {
			webCreate = s
		}
	}
	if len(waits) != 2 {
		t.Fatalf("want a wait per condition:\n%s", plan)
	}
	for _, w := range waits {
		if !slices.Contains(webCreate.After, w.ID) {
			t.Fatalf("web is created before %s:\n%s", w.Line(), plan)
		}
	}
	// db without a healthcheck can never be healthy: a clear error naming both.
	eng := fake.New("fixture:1")
	eng.AfterStart = func(c *reconciler.Container) {
		if c.Service == "migrate" {
			c.State = "exited" // completed successfully, exit code 0
		}
	}
	r := &reconciler.Reconciler{Engine: eng}
	_, err = r.Once(context.Background(), desired(p, nil))
	if err == nil || !strings.Contains(err.Error(), `service "web" depends on "db" being healthy, but demo-db-1 has no healthcheck`) {
		t.Fatalf("err = %v", err)
	}
	for _, c := range eng.Containers {
		if c.Service == "web" {
			t.Fatalf("web was created although db can never be healthy")
		}
	}
	// once db reports healthy, web is created
	for _, c := range eng.Containers {
		if c.Service == "db" {
			c.Health = "healthy"
		}
	}
	converge(t, eng, desired(p, nil))
}

func TestRestartUnhealthyWithBackoff(t *testing.T) {
	p := load(t, `
services:
  web:
    image: fixture:1
    x-roster: {restart_unhealthy: true}
`)
	eng := fake.New("fixture:1")
	converge(t, eng, desired(p, nil))
	var c *reconciler.Container
	for _, x := range eng.Containers {
		c = x
	}
	c.Health = "unhealthy"
	d := desired(p, nil)
	d.Now = c.Created.Add(5 * time.Second) // younger than the first backoff (10s)
	o, _ := eng.Observe(context.Background(), "demo", []string{"fixture:1"})
	plan, _ := reconciler.MakePlan(d, o)
	if !plan.Empty() || !strings.Contains(plan.String(), "restart_unhealthy backoff") {
		t.Fatalf("replaced too early:\n%s", plan)
	}
	d.Now = c.Created.Add(11 * time.Second)
	res := converge(t, eng, d)
	if i := stepIndex(res.Plan, reconciler.ActCreateContainer, "demo-web-1"); i < 0 || res.Plan.Steps[i].Container.Labels["dev.roster.unhealthy-restarts"] != "1" {
		t.Fatalf("no labelled replacement:\n%s", res.Plan)
	}
	if got := eng.Slots(); !slices.Equal(got, []string{"demo-web-1/web_1/running"}) {
		t.Fatalf("slots %v", got)
	}
	if reconciler.UnhealthyBackoff(1) != 20*time.Second || reconciler.UnhealthyBackoff(10) != 5*time.Minute {
		t.Fatal("backoff")
	}
}
