package reconciler_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/roster-dev/roster/compose"
	"github.com/roster-dev/roster/reconciler"
	"github.com/roster-dev/roster/reconciler/fake"
)

func load(t testing.TB, yaml string) *compose.Project {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := compose.Load(context.Background(), compose.Options{Files: []string{filepath.Join(dir, "compose.yaml")}, ProjectName: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const webYAML = `
services:
  web:
    image: fixture:1
    environment: {COLOR: blue}
    deploy: {replicas: 3}
`

func desired(p *compose.Project, replicas map[string]int) reconciler.Desired {
	r, _ := p.Replicas(compose.State{})
	for k, v := range replicas {
		r[k] = v
	}
	return reconciler.Desired{Project: p, Replicas: r, StartStopped: true}
}

// converge runs one reconcile on the fake engine and fails on error.
func converge(t *testing.T, eng *fake.Engine, d reconciler.Desired) *reconciler.Result {
	t.Helper()
	r := &reconciler.Reconciler{Engine: eng, Concurrency: 4}
	res, err := r.Once(context.Background(), d)
	if err != nil {
		t.Fatalf("reconcile: %v\nplan:\n%s", err, res.Plan)
	}
	return res
}

// assertConverged checks that a fresh plan is empty.
func assertConverged(t *testing.T, eng *fake.Engine, d reconciler.Desired) {
	t.Helper()
	o, _ := eng.Observe(context.Background(), d.Project.Name, []string{"fixture:1"})
	plan, err := reconciler.MakePlan(d, o)
	if err != nil {
		t.Fatal(err)
	}
	if !plan.Empty() {
		t.Fatalf("not converged, plan:\n%s", plan)
	}
}

func TestFreshUpCreatesSlotsInOrder(t *testing.T) {
	p := load(t, webYAML)
	eng := fake.New("fixture:1")
	d := desired(p, nil)
	converge(t, eng, d)
	want := []string{"demo-web-1/web_1/running", "demo-web-2/web_2/running", "demo-web-3/web_3/running"}
	if got := eng.Slots(); !slices.Equal(got, want) {
		t.Fatalf("slots = %v, want %v", got, want)
	}
	if _, ok := eng.Networks["demo_default"]; !ok {
		t.Fatalf("default network not created: %v", eng.Calls)
	}
	assertConverged(t, eng, d)
}

func TestSecondUpMakesNoEngineWrite(t *testing.T) {
	p := load(t, webYAML)
	eng := fake.New("fixture:1")
	d := desired(p, nil)
	converge(t, eng, d)
	before := len(eng.Writes())
	res := converge(t, eng, d)
	if !res.Plan.Empty() || len(eng.Writes()) != before {
		t.Fatalf("second up wrote: plan %s, writes %v", res.Plan, eng.Writes()[before:])
	}
}

func TestScale(t *testing.T) {
	cases := []struct {
		name    string
		start   int
		remove  []string // containers removed by hand before scaling
		scaleTo int
		want    []string
		creates []string
	}{
		{"up fills gaps lowest first", 3, []string{"demo-web-2"}, 4,
			[]string{"demo-web-1/web_1/running", "demo-web-2/web_2/running", "demo-web-3/web_3/running", "demo-web-4/web_4/running"},
			[]string{"create demo-web-2", "create demo-web-4"}},
		{"down removes highest", 5, nil, 2,
			[]string{"demo-web-1/web_1/running", "demo-web-2/web_2/running"}, nil},
		{"down with a gap", 5, []string{"demo-web-2"}, 3,
			[]string{"demo-web-1/web_1/running", "demo-web-2/web_2/running", "demo-web-3/web_3/running"},
			[]string{"create demo-web-2"}},
		{"to zero", 2, nil, 0, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := load(t, webYAML)
			eng := fake.New("fixture:1")
			converge(t, eng, desired(p, map[string]int{"web": tc.start}))
			for _, name := range tc.remove {
				for id, c := range eng.Containers {
					if c.Name == name {
						delete(eng.Containers, id)
					}
				}
			}
			eng.Calls = nil
			d := desired(p, map[string]int{"web": tc.scaleTo})
			converge(t, eng, d)
			if got := eng.Slots(); !slices.Equal(got, tc.want) {
				t.Fatalf("slots = %v, want %v", got, tc.want)
			}
			var creates []string
			for _, c := range eng.Calls {
				if strings.HasPrefix(c, "create ") {
					creates = append(creates, c)
				}
			}
			slices.Sort(creates)
			if !slices.Equal(creates, tc.creates) {
				t.Fatalf("creates = %v, want %v", creates, tc.creates)
			}
			assertConverged(t, eng, d)
		})
	}
}

func TestDriftRecreatesInPlace(t *testing.T) {
	eng := fake.New("fixture:1")
	converge(t, eng, desired(load(t, webYAML), nil))
	oldIDs := map[string]string{}
	for id, c := range eng.Containers {
		oldIDs[c.Name] = id
	}
	p2 := load(t, strings.Replace(webYAML, "blue", "green", 1))
	d := desired(p2, nil)
	res := converge(t, eng, d)
	if got := eng.Slots(); !slices.Equal(got, []string{"demo-web-1/web_1/running", "demo-web-2/web_2/running", "demo-web-3/web_3/running"}) {
		t.Fatalf("slots = %v", got)
	}
	for id, c := range eng.Containers {
		if oldIDs[c.Name] == id {
			t.Fatalf("%s was not recreated", c.Name)
		}
	}
	// every create inherits the old container (anonymous volumes)
	for _, s := range res.Plan.Steps {
		if s.Action == reconciler.ActCreateContainer && s.Container.Inherit != oldIDs[s.Target] {
			t.Fatalf("create %s inherits %q, want %q", s.Target, s.Container.Inherit, oldIDs[s.Target])
		}
	}
	assertConverged(t, eng, d)
}

func TestInterruptedRecreateIsRepaired(t *testing.T) {
	for _, crashAt := range []string{"create demo-web-1", "start demo-web-1", "remove 00000000000"} {
		t.Run(crashAt, func(t *testing.T) {
			eng := fake.New("fixture:1")
			converge(t, eng, desired(load(t, webYAML), map[string]int{"web": 1}))
			d := desired(load(t, strings.Replace(webYAML, "blue", "green", 1)), map[string]int{"web": 1})
			crashed := false
			eng.Crash = func(call string) error {
				if !crashed && strings.HasPrefix(call, crashAt) {
					crashed = true
					return errors.New("operator killed")
				}
				return nil
			}
			r := &reconciler.Reconciler{Engine: eng}
			if _, err := r.Once(context.Background(), d); err == nil || !crashed {
				t.Fatalf("expected the crash at %q, err=%v calls=%v", crashAt, err, eng.Calls)
			}
			converge(t, eng, d)
			if got := eng.Slots(); !slices.Equal(got, []string{"demo-web-1/web_1/running"}) {
				t.Fatalf("after repair slots = %v (want exactly one web_1)", got)
			}
			assertConverged(t, eng, d)
		})
	}
}

func TestOrphans(t *testing.T) {
	eng := fake.New("fixture:1")
	two := webYAML + `
  old:
    image: fixture:1
`
	converge(t, eng, desired(load(t, two), nil))
	p := load(t, webYAML)
	d := desired(p, nil)
	o, _ := eng.Observe(context.Background(), "demo", []string{"fixture:1"})
	plan, err := reconciler.MakePlan(d, o)
	if err != nil {
		t.Fatal(err)
	}
	if !plan.Empty() || !strings.Contains(plan.String(), "orphan containers [demo-old-1]") {
		t.Fatalf("want a warning and no step, got:\n%s", plan)
	}
	d.RemoveOrphans = true
	converge(t, eng, d)
	for _, c := range eng.Containers {
		if c.Service == "old" {
			t.Fatalf("orphan %s not removed", c.Name)
		}
	}
}

func TestMissingImageChangesNothing(t *testing.T) {
	p := load(t, webYAML+`
  db:
    image: nowhere:1
`)
	eng := fake.New("fixture:1")
	r := &reconciler.Reconciler{Engine: eng}
	_, err := r.Once(context.Background(), desired(p, nil))
	if err == nil || !strings.Contains(err.Error(), "nowhere:1") {
		t.Fatalf("err = %v", err)
	}
	if w := eng.Writes(); !slices.Equal(w, []string{"pull nowhere:1"}) {
		t.Fatalf("writes = %v, want only the pull", w)
	}
}

func TestBuildSectionBuildsFirst(t *testing.T) {
	p := load(t, `
services:
  app:
    build: {context: .}
`)
	eng := fake.New()
	converge(t, eng, desired(p, nil))
	if eng.Calls[1] != "build demo-app" {
		t.Fatalf("calls = %v", eng.Calls)
	}
	if got := eng.Slots(); !slices.Equal(got, []string{"demo-app-1/app_1/running"}) {
		t.Fatalf("slots = %v", got)
	}
}

func TestDependsOnOrdersStarts(t *testing.T) {
	p := load(t, `
services:
  web:
    image: fixture:1
    depends_on: [db]
  db:
    image: fixture:1
`)
	o := &reconciler.Observed{Images: map[string]string{"fixture:1": "sha256:x"}}
	plan, err := reconciler.MakePlan(desired(p, nil), o)
	if err != nil {
		t.Fatal(err)
	}
	var dbStart, webCreate reconciler.Step
	for _, s := range plan.Steps {
		if s.Action == reconciler.ActStartContainer && s.Service == "db" {
			dbStart = s
		}
		if s.Action == reconciler.ActCreateContainer && s.Service == "web" {
			webCreate = s
		}
	}
	if !slices.Contains(webCreate.After, dbStart.ID) {
		t.Fatalf("web create does not wait for db start:\n%s", plan)
	}
}

func TestDependencyCycleIsError(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(`
services:
  a: {image: fixture:1, depends_on: [b]}
  b: {image: fixture:1, depends_on: [a]}
`), 0o644)
	p, err := compose.Load(context.Background(), compose.Options{Files: []string{filepath.Join(dir, "compose.yaml")}})
	if err == nil {
		// compose-go accepted it: the planner must refuse it.
		_, err = reconciler.MakePlan(desired(p, nil), &reconciler.Observed{})
	}
	if err == nil {
		t.Fatal("a dependency cycle was accepted")
	}
	if !strings.Contains(err.Error(), "a") || !strings.Contains(err.Error(), "b") {
		t.Fatalf("cycle error should name both services: %v", err)
	}
}

func TestStoppedContainers(t *testing.T) {
	p := load(t, webYAML)
	eng := fake.New("fixture:1")
	converge(t, eng, desired(p, map[string]int{"web": 2}))
	for _, c := range eng.Containers {
		if c.Name == "demo-web-1" {
			c.State = "exited"
		}
		if c.Name == "demo-web-2" {
			c.State = "created"
		}
	}
	d := desired(p, map[string]int{"web": 2})
	d.StartStopped = false
	o, _ := eng.Observe(context.Background(), "demo", []string{"fixture:1"})
	plan, _ := reconciler.MakePlan(d, o)
	if len(plan.Steps) != 1 || plan.Steps[0].Target != "demo-web-2" {
		t.Fatalf("the loop must start only the created container:\n%s", plan)
	}
	d.StartStopped = true
	plan, _ = reconciler.MakePlan(d, o)
	if len(plan.Steps) != 2 {
		t.Fatalf("up must start both:\n%s", plan)
	}
}

func TestPlanText(t *testing.T) {
	p := load(t, webYAML)
	o := &reconciler.Observed{Images: map[string]string{"fixture:1": "sha256:x"}}
	plan, err := reconciler.MakePlan(desired(p, map[string]int{"web": 1}), o)
	if err != nil {
		t.Fatal(err)
	}
	want := `project demo: 3 steps
  1. create network demo_default: network missing
  2. create container demo-web-1 (hostname web_1): slot 1 missing [after 1]
  3. start container demo-web-1: slot 1 created [after 2]
`
	if got := plan.String(); got != want {
		t.Fatalf("plan text:\n%s\nwant:\n%s", got, want)
	}
}

func TestFailedStepSkipsDependentsOnly(t *testing.T) {
	p := load(t, `
services:
  a: {image: fixture:1}
  b: {image: fixture:1}
`)
	eng := fake.New("fixture:1")
	eng.Fail["start demo-a-1"] = errors.New("port is already allocated")
	r := &reconciler.Reconciler{Engine: eng}
	_, err := r.Once(context.Background(), desired(p, nil))
	if err == nil || !strings.Contains(err.Error(), "demo-a-1") {
		t.Fatalf("err = %v", err)
	}
	if got := eng.Slots(); !slices.Equal(got, []string{"demo-a-1/a_1/created", "demo-b-1/b_1/running"}) {
		t.Fatalf("slots = %v", got)
	}
}

func agentSpec(hash string) *reconciler.AgentSpec {
	a := &reconciler.AgentSpec{Name: "demo-roster-agent", Image: "fixture:1"}
	a.Service.Name = "roster-agent"
	a.Service.Hash = hash
	a.Service.Config.Name = "roster-agent"
	a.Service.Config.NetworkMode = "host"
	return a
}

func TestAgentPlanned(t *testing.T) {
	p := load(t, webYAML)
	eng := fake.New("fixture:1")
	d := desired(p, nil)
	d.Agent = agentSpec("h1")
	converge(t, eng, d)
	if got := eng.Slots(); !slices.Contains(got, "demo-roster-agent//running") {
		t.Fatalf("agent not created: %v", got)
	}
	assertConverged(t, eng, d)
	ids := map[string]string{}
	for id, c := range eng.Containers {
		ids[c.Name] = id
	}
	// A new agent config recreates the agent and nothing else.
	d.Agent = agentSpec("h2")
	res := converge(t, eng, d)
	for _, s := range res.Plan.Steps {
		if s.Target != "demo-roster-agent" {
			t.Fatalf("agent change touched %s:\n%s", s.Target, res.Plan)
		}
	}
	for id, c := range eng.Containers {
		if c.Service == "web" && ids[c.Name] != id {
			t.Fatalf("%s changed", c.Name)
		}
	}
	// The agent is never an orphan, and a plan without Agent leaves it.
	d.Agent = nil
	d.RemoveOrphans = true
	assertConverged(t, eng, d)
}

func TestDownRemovesAgentFirst(t *testing.T) {
	p := load(t, webYAML)
	eng := fake.New("fixture:1")
	d := desired(p, nil)
	d.Agent = agentSpec("h1")
	converge(t, eng, d)
	o, _ := eng.Observe(context.Background(), "demo", nil)
	plan := reconciler.MakeDownPlan(p, o, reconciler.DownOptions{})
	var agentRemove int
	for _, s := range plan.Steps {
		if s.Target == "demo-roster-agent" && s.Action == reconciler.ActRemoveContainer {
			agentRemove = s.ID
		}
	}
	for _, s := range plan.Steps {
		if s.Service == "web" && (s.Action == reconciler.ActStopContainer || s.Action == reconciler.ActRemoveContainer) && len(s.After) == 0 {
			t.Fatalf("%s %s does not wait for the agent's removal (%d):\n%s", s.Action, s.Target, agentRemove, plan)
		}
	}
	if err := reconciler.Execute(context.Background(), eng, plan, 4, nil); err != nil {
		t.Fatal(err)
	}
	if len(eng.Containers) != 0 || len(eng.Networks) != 0 {
		t.Fatalf("left: %v %v", eng.Slots(), eng.Networks)
	}
}

func TestResolvConfMountedOnPrimaryNetwork(t *testing.T) {
	p := load(t, webYAML+`
  own:
    image: fixture:1
    dns: [1.1.1.1]
  host:
    image: fixture:1
    network_mode: host
`)
	d := desired(p, nil)
	d.ResolvConf = map[string]string{"demo_default": "/x/resolv.demo_default.conf"}
	o := &reconciler.Observed{Images: map[string]string{"fixture:1": "sha256:x"}}
	plan, err := reconciler.MakePlan(d, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range plan.Steps {
		if s.Action != reconciler.ActCreateContainer {
			continue
		}
		want := ""
		if s.Service == "web" {
			want = "/x/resolv.demo_default.conf"
		}
		if s.Container.ResolvConf != want {
			t.Errorf("%s: resolv.conf %q, want %q", s.Target, s.Container.ResolvConf, want)
		}
	}
}

func TestSlotVolumes(t *testing.T) {
	p := load(t, `
services:
  mq:
    image: fixture:1
    deploy: {replicas: 2}
    volumes: [data:/var/lib/mq]
    x-roster: {slot_volumes: [data]}
volumes:
  data: {}
`)
	eng := fake.New("fixture:1")
	d := desired(p, nil)
	res := converge(t, eng, d)
	for _, v := range []string{"demo_data-1", "demo_data-2"} {
		if _, ok := eng.Volumes[v]; !ok {
			t.Fatalf("volume %s not created: %v", v, eng.Calls)
		}
	}
	for _, s := range res.Plan.Steps {
		if s.Action == reconciler.ActCreateContainer && s.Container.SlotVolumes["data"] != fmt.Sprintf("demo_data-%d", s.Slot) {
			t.Fatalf("%s mounts %v", s.Target, s.Container.SlotVolumes)
		}
	}
	// scale down keeps slot 2's volume for when the slot comes back
	converge(t, eng, desired(p, map[string]int{"mq": 1}))
	if _, ok := eng.Volumes["demo_data-2"]; !ok {
		t.Fatal("scale down removed a slot volume")
	}
	assertConverged(t, eng, desired(p, map[string]int{"mq": 1}))
}
