package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// The issue-5 scenarios: readiness, `up --wait`, depends_on conditions,
// rolling updates (deploy.update_config) and x-roster.restart_unhealthy.
// Each test has one intent and its own testdata/<TestName>/compose.yaml;
// helpers are in rollout_helpers_test.go.
//
// The agent re-reads the compose file whenever it reconciles (an engine
// event or its periodic resync), so after an edit it may start a rollout
// before the test's `roster up` does; `up` then waits for the change lock.
// Both are roster, and the outcome checked is the same.

func TestWaitReturnsOnlyWhenHealthy(t *testing.T) {
	p := newProject(t, "")
	diagnoseOnFailure(t, p)
	start := time.Now()
	p.mustRoster("up", "-d", "--wait", "--wait-timeout", "60s")
	t.Logf("up --wait returned %s after it started (HEALTHY_AFTER=4s)", time.Since(start).Round(time.Millisecond))

	// right after it returned, with no waiting: both ready
	ps := p.ps(t)
	var web []psEntry
	for _, e := range ps {
		if e.Service == "web" {
			web = append(web, e)
		}
	}
	if len(web) != 2 {
		t.Fatalf("roster ps lists %d replicas of web, want 2: %+v", len(web), ps)
	}
	for _, e := range web {
		if !e.Ready || e.Health != "healthy" || e.State != "running" {
			t.Errorf("right after up --wait returned, roster ps shows %s state=%s health=%q ready=%v; want running, healthy, ready", e.Name, e.State, e.Health, e.Ready)
		}
	}
	for _, c := range p.expectSlots(t, "web", 1, 2) {
		if c.Health != "healthy" {
			t.Errorf("right after up --wait returned, docker inspect shows %s health %q, want healthy", c.Name, c.Health)
		}
	}
}

func TestWaitTimesOutNamingUnhealthyReplica(t *testing.T) {
	p := newProject(t, "")
	diagnoseOnFailure(t, p)
	r := p.roster("up", "-d", "--wait", "--wait-timeout", "8s")
	if r.Code != 1 {
		t.Fatalf("up --wait on a replica that never gets healthy: want exit code 1:\n%s", r)
	}
	if !mentions(r.Stderr, p.cname("web", 1)) {
		t.Errorf("stderr does not name the replica that is not ready (%s):\n%s", p.cname("web", 1), r)
	}
	if !strings.Contains(r.Stderr, "last healthcheck") {
		t.Errorf("stderr does not show the last healthcheck output:\n%s", r)
	}
	t.Logf("up --wait reported:\n%s", r.Stderr)
	// --wait only waits: the replica is there, running (not healthy)
	p.expectSlots(t, "web", 1)
}

func TestDependsOnHealthyOrdersStart(t *testing.T) {
	p := newProject(t, "")
	diagnoseOnFailure(t, p)
	if rosterBin == "" {
		t.Fatalf("no roster binary: %v", rosterBuildErr)
	}
	// The engine keeps the last five probes only: collect db's probes
	// while up runs (every 100ms; probes are 1s apart).
	db := p.cname("db", 1)
	probes := map[time.Time]healthEntry{}
	collect := func() {
		r := execute(context.Background(), "", nil, "docker", "inspect", "-f", "{{json .State.Health}}", db)
		var h struct{ Log []healthEntry }
		if r.Err == nil && json.Unmarshal([]byte(strings.TrimSpace(r.Stdout)), &h) == nil {
			for _, e := range h.Log {
				probes[e.Start] = e
			}
		}
	}
	done := make(chan result, 1)
	go func() { done <- p.roster("up", "-d") }()
	var up result
	deadline := time.After(commandTimeout + 10*time.Second)
wait:
	for {
		select {
		case up = <-done:
			break wait
		case <-deadline:
			t.Fatalf("roster up -d did not return")
		case <-time.After(100 * time.Millisecond):
			collect()
		}
	}
	collect()
	if up.Err != nil {
		t.Fatalf("roster failed:\n%s", up)
	}
	p.expectSlots(t, "db", 1)
	web := p.expectSlots(t, "web", 1)[0]

	log := make([]healthEntry, 0, len(probes))
	for _, e := range probes {
		log = append(log, e)
	}
	sort.Slice(log, func(i, j int) bool { return log[i].Start.Before(log[j].Start) })
	first := slices.IndexFunc(log, func(e healthEntry) bool { return e.ExitCode == 0 })
	if first < 0 {
		t.Fatalf("no successful probe of %s seen; probes: %+v", db, log)
	}
	if first == 0 {
		t.Fatalf("the first probe of %s seen already succeeded: its first success may have been missed; probes: %+v", db, log)
	}
	healthy := log[first].End
	t.Logf("%s: %d failed probes, first success ended %s; %s started %s (%s later)",
		db, first, healthy.Format(time.RFC3339Nano), web.Name, web.StartedAt.Format(time.RFC3339Nano), web.StartedAt.Sub(healthy))
	if !web.StartedAt.After(healthy) {
		t.Errorf("%s started at %s, before %s became healthy (its first successful probe ended at %s)",
			web.Name, web.StartedAt.Format(time.RFC3339Nano), db, healthy.Format(time.RFC3339Nano))
	}
}

func TestDependsOnHealthyWithoutHealthcheckFails(t *testing.T) {
	p := newProject(t, "")
	diagnoseOnFailure(t, p)
	r := p.roster("up", "-d")
	if r.Code != 1 {
		t.Fatalf("web depends on db being healthy, db has no healthcheck: want exit code 1:\n%s", r)
	}
	out := r.Stdout + r.Stderr
	if !strings.Contains(out, `"web"`) || !strings.Contains(out, `"db"`) || !strings.Contains(out, "healthcheck") {
		t.Errorf("the error does not name both services (\"web\", \"db\") and the missing healthcheck:\n%s", r)
	}
	t.Logf("roster reported:\n%s", r.Stderr)
	// web is never created, also not by the agent a little later
	for end := time.Now().Add(3 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		if cs := p.serviceContainers(t, "web"); len(cs) != 0 {
			t.Fatalf("web was created although its dependency can never be healthy:\n%s", describe(cs))
		}
		if time.Now().After(end) {
			break
		}
	}
}

func TestRolloutZeroFailedRequestsThroughNginx(t *testing.T) {
	p, port := nginxProject(t, "")
	// the example's nginx configuration and template
	ex := filepath.Join(moduleRoot, "examples", "nginx-upstreams", "nginx")
	for _, f := range []string{"nginx.conf", "upstreams.conf.tmpl"} {
		copyFile(t, filepath.Join(ex, f), filepath.Join(p.Dir, "nginx", f), 0o644)
	}
	if err := os.MkdirAll(filepath.Join(p.Dir, "nginx", "conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}

	p.mustRoster("up", "-d", "--wait", "--wait-timeout", "90s")
	before := p.expectOnlySlots(t, "web", 1, 2, 3)
	p.expectSlots(t, "nginx", 1)
	p.waitUpstreams(t, 60*time.Second, nginxUpstreamFile, webHosts(1, 2, 3)...)
	seen := waitThroughNginx(t, 30*time.Second, port, webHosts(1, 2, 3)...)
	t.Logf("before the change, answers through nginx: %v", seen)
	for _, c := range before {
		if v := p.envOf(t, c.Name, "VERSION"); v != "one" {
			t.Fatalf("%s has VERSION=%q before the change, want one", c.Name, v)
		}
	}

	// a steady stream of requests: every 10ms, at most 6000 or 90s
	url := fmt.Sprintf("http://127.0.0.1:%d/hostname", port)
	loop := startRequestLoop(url, 10*time.Millisecond, 6000, 90*time.Second)
	t.Cleanup(func() { loop.finish() })
	// and the upstream lists nginx is given, every 20ms (at most 6000 times)
	lists := watchUpstreams(filepath.Join(p.Dir, nginxUpstreamFile), 20*time.Millisecond, 6000)
	t.Cleanup(func() { lists.finish() })
	time.Sleep(time.Second)
	p.editCompose(t, "VERSION: one", "VERSION: two")
	r := p.roster("up", "-d", "--wait", "--wait-timeout", "90s")
	time.Sleep(time.Second)
	res := loop.finish()
	seenLists := lists.finish()
	t.Logf("upstream lists rendered during the rollout, in order: %q", seenLists)
	t.Logf("request loop: %d requests in %s, %d OK, %d failed; answers by host: %v",
		res.Requests, res.Duration.Round(time.Millisecond), res.OK, res.Failed, res.Hosts)
	if r.Err != nil {
		t.Fatalf("roster failed:\n%s", r)
	}
	if res.Failed != 0 {
		t.Errorf("%d of %d requests through nginx failed during the rollout; the first ones:\n  %s",
			res.Failed, res.Requests, strings.Join(res.Failures, "\n  "))
	}
	if res.Bounded {
		t.Errorf("the request loop hit its bound (%d requests, %s) before up returned: it did not cover the whole rollout",
			res.Requests, res.Duration.Round(time.Millisecond))
	}
	if got, want := hostsOf(res.Hosts), webHosts(1, 2, 3); !slices.Equal(got, want) {
		t.Errorf("hosts that answered during the rollout: %v, want %v", got, want)
	}
	// each slot left the upstreams while it was replaced (drained)
	for n := 1; n <= 3; n++ {
		var others []int
		for m := 1; m <= 3; m++ {
			if m != n {
				others = append(others, m)
			}
		}
		if want := strings.Join(webHosts(others...), " "); !slices.Contains(seenLists, want) {
			t.Errorf("%s never listed exactly [%s] during the rollout: web_%d was not drained; lists seen: %q", nginxUpstreamFile, want, n, seenLists)
		}
	}

	after := p.expectOnlySlots(t, "web", 1, 2, 3)
	for i, c := range after {
		if c.ID == before[i].ID {
			t.Errorf("%s was not replaced by the rollout", c.Name)
		}
		if v := p.envOf(t, c.Name, "VERSION"); v != "two" {
			t.Errorf("%s has VERSION=%q after the rollout, want two", c.Name, v)
		}
	}
	p.waitUpstreams(t, 30*time.Second, nginxUpstreamFile, webHosts(1, 2, 3)...)
	seen = waitThroughNginx(t, 30*time.Second, port, webHosts(1, 2, 3)...)
	t.Logf("after the rollout, answers through nginx: %v", seen)
}

// newVersionNeverHealthy is the edit that makes the new version of web
// never healthy (its /healthz answers 503 for an hour).
const (
	oldVersion             = "      VERSION: one\n"
	newVersionNeverHealthy = "      VERSION: two\n      HEALTHY_AFTER: 1h\n"
)

func TestRolloutFailingVersionRollsBack(t *testing.T) {
	p := newProject(t, "")
	diagnoseOnFailure(t, p)
	p.mustRoster("up", "-d", "--wait", "--wait-timeout", "60s")
	before := p.expectOnlySlots(t, "web", 1, 2, 3)

	p.editCompose(t, oldVersion, newVersionNeverHealthy)
	r := p.roster("up", "-d", "--wait-timeout", "60s")
	returned := time.Now()
	if r.Code != 1 {
		t.Fatalf("a new version that never gets healthy: want exit code 1:\n%s", r)
	}
	if out := strings.ToLower(r.Stdout + r.Stderr); !strings.Contains(out, "rollback") && !strings.Contains(out, "rolled back") {
		t.Errorf("the failure does not mention the rollback:\n%s", r)
	}
	t.Logf("roster reported:\n%s", r.Stderr)

	// every slot has its old container back, under its name, running the
	// old config; nothing else is left (no failed replacement, nothing aside)
	after := p.expectOnlySlots(t, "web", 1, 2, 3)
	for i, c := range after {
		if c.ID != before[i].ID {
			t.Errorf("slot %d: %s is %.12s, want its old container %.12s back", c.Slot, c.Name, c.ID, before[i].ID)
		}
		if v, _ := c.env("VERSION"); v != "one" {
			t.Errorf("%s has VERSION=%q in its config after the rollback, want one", c.Name, v)
		}
		if v := p.envOf(t, c.Name, "VERSION"); v != "one" {
			t.Errorf("%s answers VERSION=%q after the rollback, want one", c.Name, v)
		}
	}
	eventually(t, 30*time.Second, func() error {
		for _, e := range p.ps(t) {
			if e.Service == "web" && !e.Ready {
				return fmt.Errorf("%s is not ready after the rollback: state=%s health=%q", e.Name, e.State, e.Health)
			}
		}
		return nil
	})

	// the agent does not retry the failed config on its own
	p.noRetry(t, returned, 5*time.Second)

	// a fixed config, and an explicit up, rolls out
	p.editCompose(t, newVersionNeverHealthy, "      VERSION: three\n")
	p.mustRoster("up", "-d", "--wait", "--wait-timeout", "60s")
	final := p.expectOnlySlots(t, "web", 1, 2, 3)
	for i, c := range final {
		if c.ID == before[i].ID {
			t.Errorf("%s was not replaced by the fixed version", c.Name)
		}
		if v := p.envOf(t, c.Name, "VERSION"); v != "three" {
			t.Errorf("%s answers VERSION=%q after the fixed rollout, want three", c.Name, v)
		}
	}
}

func TestRolloutPauseKeepsRemainingSlots(t *testing.T) {
	p := newProject(t, "")
	diagnoseOnFailure(t, p)
	p.mustRoster("up", "-d", "--wait", "--wait-timeout", "60s")
	before := p.expectOnlySlots(t, "web", 1, 2, 3)

	p.editCompose(t, oldVersion, newVersionNeverHealthy)
	r := p.roster("up", "-d", "--wait-timeout", "60s")
	returned := time.Now()
	if r.Code != 1 {
		t.Fatalf("a new version that never gets healthy: want exit code 1:\n%s", r)
	}
	if !strings.Contains(strings.ToLower(r.Stdout+r.Stderr), "paused") {
		t.Errorf("the failure does not say the rollout is paused:\n%s", r)
	}
	t.Logf("roster reported:\n%s", r.Stderr)

	cs := p.serviceContainers(t, "web")
	canon := map[int]ctr{}
	for _, c := range cs {
		if p.canonical(c) {
			canon[c.Slot] = c
		}
	}
	// slot 1 keeps the failed new container
	if c, ok := canon[1]; !ok || c.ID == before[0].ID || c.Hostname != hostname("web", 1) {
		t.Errorf("slot 1 should keep the failed new container as %s (host web_1); containers:\n%s", p.cname("web", 1), describe(cs))
	} else if v, _ := c.env("VERSION"); v != "two" {
		t.Errorf("%s has VERSION=%q, want the failed new version two", c.Name, v)
	}
	// slots 2 and 3 were not touched: old container, old config, ready
	for _, n := range []int{2, 3} {
		c, ok := canon[n]
		if !ok || c.ID != before[n-1].ID || c.State != "running" || c.Hostname != hostname("web", n) {
			t.Errorf("slot %d should keep its old container %.12s running as %s; containers:\n%s", n, before[n-1].ID, p.cname("web", n), describe(cs))
			continue
		}
		if v := p.envOf(t, c.Name, "VERSION"); v != "one" {
			t.Errorf("%s answers VERSION=%q, want the old version one", c.Name, v)
		}
	}
	// anything else is slot 1's old container kept aside, stopped
	for _, c := range p.nonCanonical(cs) {
		if c.Slot != 1 || c.State == "running" {
			t.Errorf("unexpected container after the paused rollout: %s slot=%d state=%s\ncontainers:\n%s", c.Name, c.Slot, c.State, describe(cs))
		}
	}
	ready := map[string]bool{}
	for _, e := range p.ps(t) {
		ready[e.Name] = e.Ready
	}
	for _, n := range []int{2, 3} {
		if !ready[p.cname("web", n)] {
			t.Errorf("roster ps does not show %s ready after the paused rollout: %v", p.cname("web", n), ready)
		}
	}

	// the agent does not retry the failed config on its own
	p.noRetry(t, returned, 5*time.Second)
}

func TestRolloutOrderShownInDryRun(t *testing.T) {
	p := newProject(t, "")
	// no agent: it would roll the edited file out itself at its next resync
	p.mustRoster("up", "-d", "--no-agent")
	before := p.expectOnlySlots(t, "web", 1, 2, 3)
	p.editCompose(t, "VERSION: one", "VERSION: two")

	// parallelism 1 (default): slot after slot
	r := p.mustRoster("up", "--dry-run")
	t.Logf("plan:\n%s", r.Stdout)
	steps := parsePlan(r.Stdout)
	slotSteps := func(steps []planStep, n int) map[string]planStep {
		name := p.cname("web", n)
		m := map[string]planStep{}
		for i, s := range steps {
			if s.Target == name || strings.HasSuffix(s.Target, "_"+name) {
				if _, dup := m[s.Action]; !dup {
					s.ID = i // line order from here on
					m[s.Action] = s
				}
			}
		}
		return m
	}
	order := []string{"drain", "stop container", "create container", "wait ready", "undrain"}
	checkSlot := func(steps []planStep, n int) map[string]planStep {
		m := slotSteps(steps, n)
		prev := -1
		for _, a := range order {
			s, ok := m[a]
			if !ok {
				t.Errorf("the plan has no %q step for %s:\n%s", a, p.cname("web", n), r.Stdout)
				continue
			}
			if s.ID < prev {
				t.Errorf("for %s, %q is printed before an earlier step of the rollout:\n%s", p.cname("web", n), a, r.Stdout)
			}
			prev = s.ID
		}
		return m
	}
	var slots [4]map[string]planStep
	for n := 1; n <= 3; n++ {
		slots[n] = checkSlot(steps, n)
	}
	if t.Failed() {
		t.FailNow()
	}
	for n := 1; n < 3; n++ {
		if slots[n]["undrain"].ID > slots[n+1]["drain"].ID {
			t.Errorf("web_%d is drained before web_%d is put back (parallelism 1):\n%s", n+1, n, r.Stdout)
		}
		// the dependency behind the order
		if !dependsOn(steps, steps[slots[n+1]["drain"].ID].ID, steps[slots[n]["undrain"].ID].ID) {
			t.Errorf("the drain of web_%d does not wait for the undrain of web_%d:\n%s", n+1, n, r.Stdout)
		}
	}
	if strings.Contains(r.Stdout, "delay") {
		t.Errorf("a delay is shown although update_config sets none:\n%s", r.Stdout)
	}
	sameContainers(t, before, p.replicas(t))

	// parallelism 2, delay 1s: web_1 and web_2 together, then web_3 after the delay
	p.editCompose(t, "      replicas: 3\n", "      replicas: 3\n      update_config:\n        parallelism: 2\n        delay: 1s\n")
	r = p.mustRoster("up", "--dry-run")
	t.Logf("plan with parallelism 2, delay 1s:\n%s", r.Stdout)
	steps = parsePlan(r.Stdout)
	for n := 1; n <= 3; n++ {
		slots[n] = checkSlot(steps, n)
	}
	if t.Failed() {
		t.FailNow()
	}
	id := func(n int, a string) int { return steps[slots[n][a].ID].ID }
	if dependsOn(steps, id(2, "drain"), id(1, "undrain")) || dependsOn(steps, id(1, "drain"), id(2, "undrain")) {
		t.Errorf("web_1 and web_2 should roll out together (parallelism 2):\n%s", r.Stdout)
	}
	for _, n := range []int{1, 2} {
		if !dependsOn(steps, id(3, "drain"), id(n, "undrain")) {
			t.Errorf("the drain of web_3 does not wait for the undrain of web_%d:\n%s", n, r.Stdout)
		}
	}
	delayed := map[int]bool{}
	for n := 1; n <= 3; n++ {
		for _, s := range slotSteps(steps, n) {
			if strings.Contains(s.Line, "delay") && strings.Contains(s.Line, "1s") {
				delayed[n] = true
			}
		}
	}
	if !delayed[3] || delayed[1] || delayed[2] {
		t.Errorf("the delay of 1s should be shown on the second batch (web_3) only; shown for %v:\n%s", delayed, r.Stdout)
	}
	sameContainers(t, before, p.replicas(t))
}

func TestRolloutStartFirst(t *testing.T) {
	p := newProject(t, "")
	diagnoseOnFailure(t, p)
	p.mustRoster("up", "-d", "--wait", "--wait-timeout", "60s")
	before := p.expectOnlySlots(t, "web", 1, 2)

	// watch the running containers while the rollout runs: every 50ms, at
	// most 3000 times
	stop, done := make(chan struct{}), make(chan struct{})
	both := map[int]int{} // slot -> observations with the old and -next running
	polls := 0
	go func() {
		defer close(done)
		for ; polls < 3000; polls++ {
			select {
			case <-stop:
				return
			default:
			}
			r := execute(context.Background(), "", nil, "docker", "ps", "--filter", "label="+labelProject+"="+p.Name, "--format", "{{.Names}}")
			running := map[string]bool{}
			for _, n := range strings.Fields(r.Stdout) {
				running[n] = true
			}
			for n := 1; n <= 2; n++ {
				if running[p.cname("web", n)] && running[p.cname("web", n)+"-next"] {
					both[n]++
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	p.editCompose(t, "VERSION: one", "VERSION: two")
	r := p.roster("up", "-d", "--wait", "--wait-timeout", "60s")
	close(stop)
	<-done
	t.Logf("%d polls; observations with both the old and the -next container running, by slot: %v", polls, both)
	if r.Err != nil {
		t.Fatalf("roster failed:\n%s", r)
	}
	for n := 1; n <= 2; n++ {
		if both[n] == 0 {
			t.Errorf("never saw %s and %s-next running at the same time (order: start-first)", p.cname("web", n), p.cname("web", n))
		}
	}
	after := p.expectOnlySlots(t, "web", 1, 2)
	for i, c := range after {
		if c.ID == before[i].ID {
			t.Errorf("%s was not replaced", c.Name)
		}
		if v := p.envOf(t, c.Name, "VERSION"); v != "two" {
			t.Errorf("%s answers VERSION=%q after the rollout, want two", c.Name, v)
		}
		if h := strings.TrimSpace(p.httpGet(t, c.Name, "/hostname")); h != hostname("web", c.Slot) {
			t.Errorf("%s answers hostname %q, want %s", c.Name, h, hostname("web", c.Slot))
		}
	}
}

func TestRestartUnhealthyReplacesReplica(t *testing.T) {
	p := newProject(t, "")
	diagnoseOnFailure(t, p)
	p.mustRoster("up", "-d", "--wait", "--wait-timeout", "60s")
	before := p.expectOnlySlots(t, "web", 1, 2, 3)

	p.httpGet(t, before[1].Name, "/write?path=/tmp/unhealthy&data=x")
	start := time.Now()
	var now []ctr
	eventually(t, 60*time.Second, func() error {
		now = p.serviceContainers(t, "web")
		if err := checkSlots(p, "web", now, []int{1, 2, 3}); err != nil {
			return err
		}
		if now[1].ID == before[1].ID {
			return fmt.Errorf("%s is still %.12s (health %s)", now[1].Name, now[1].ID, now[1].Health)
		}
		if now[1].Health != "healthy" {
			return fmt.Errorf("the new %s is %s", now[1].Name, now[1].Health)
		}
		return nil
	})
	t.Logf("web_2 replaced by a healthy container %s after it was made unhealthy", time.Since(start).Round(time.Millisecond))
	if h := strings.TrimSpace(p.httpGet(t, now[1].Name, "/hostname")); h != hostname("web", 2) {
		t.Errorf("the new %s answers hostname %q, want web_2", now[1].Name, h)
	}
	for _, i := range []int{0, 2} {
		if now[i].ID != before[i].ID {
			t.Errorf("%s was replaced although it stayed healthy", now[i].Name)
		}
	}
}
