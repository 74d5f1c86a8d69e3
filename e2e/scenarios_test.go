package e2e

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The issue-2 scenarios: stable slots and names on the real engine. Each
// test has one intent and its own testdata/<TestName>/compose.yaml.

// expectSlots checks, without waiting, that the service has exactly the
// given slots, each running under its stable name and hostname, and
// returns them sorted by slot. Use it after a command that converges
// before it returns (up -d, scale).
func (p *project) expectSlots(t testing.TB, service string, slots ...int) []ctr {
	t.Helper()
	cs := p.serviceContainers(t, service)
	if err := checkSlots(p, service, cs, slots); err != nil {
		t.Fatal(err)
	}
	return cs
}

func checkSlots(p *project, service string, cs []ctr, slots []int) error {
	bad := len(cs) != len(slots)
	for i := 0; !bad && i < len(cs); i++ {
		c, n := cs[i], slots[i]
		bad = c.Slot != n || c.Name != p.cname(service, n) || c.Hostname != hostname(service, n) ||
			c.State != "running" || c.Labels[labelNumber] != strconv.Itoa(n)
	}
	if bad {
		var want strings.Builder
		for _, n := range slots {
			fmt.Fprintf(&want, "  %s host=%s slot=%d state=running\n", p.cname(service, n), hostname(service, n), n)
		}
		return fmt.Errorf("containers of %s:\n%swant:\n%s", service, describe(cs), want.String())
	}
	return nil
}

// hostname is the default hostname of slot n: {service}_{n}.
func hostname(service string, n int) string { return fmt.Sprintf("%s_%d", service, n) }

// mentions reports whether s contains word as a whole word.
func mentions(s, word string) bool {
	return regexp.MustCompile(`(^|[^A-Za-z0-9_.-])` + regexp.QuoteMeta(word) + `($|[^A-Za-z0-9_.-])`).MatchString(s)
}

// sameContainers fails the test unless after holds exactly the containers
// of before (same IDs, names, states).
func sameContainers(t testing.TB, before, after []ctr) {
	t.Helper()
	same := len(before) == len(after)
	for i := 0; same && i < len(before); i++ {
		same = before[i].ID == after[i].ID && before[i].Name == after[i].Name && before[i].State == after[i].State
	}
	if !same {
		t.Fatalf("containers changed:\nbefore:\n%safter:\n%s", describe(before), describe(after))
	}
}

func TestScaleUpGivesStableHostnames(t *testing.T) {
	p := newProject(t, "")
	p.mustRoster("up", "-d")
	first := p.expectSlots(t, "web", 1)

	p.mustRoster("scale", "web=3")
	cs := p.expectSlots(t, "web", 1, 2, 3)
	if cs[0].ID != first[0].ID {
		t.Errorf("scale up replaced slot 1 (%.12s -> %.12s)", first[0].ID, cs[0].ID)
	}
	for _, c := range cs {
		if got := strings.TrimSpace(p.httpGet(t, c.Name, "/hostname")); got != hostname("web", c.Slot) {
			t.Errorf("%s: /hostname = %q, want %q", c.Name, got, hostname("web", c.Slot))
		}
	}

	// roster ps tells the same story.
	var ps []psEntry
	for _, e := range p.ps(t) {
		if e.Service == "web" {
			ps = append(ps, e)
		}
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Slot < ps[j].Slot })
	if len(ps) != 3 {
		t.Fatalf("roster ps lists %d web replicas, want 3: %+v", len(ps), ps)
	}
	for i, e := range ps {
		c := cs[i]
		if e.Slot != c.Slot || e.Name != c.Name || e.Hostname != c.Hostname || !strings.HasPrefix(c.ID, e.ID) || e.State != "running" {
			t.Errorf("roster ps entry %+v does not match container %s (id %.12s, host %s, slot %d, running)", e, c.Name, c.ID, c.Hostname, c.Slot)
		}
	}

	// The new count is persisted: a plain up keeps three replicas.
	p.mustRoster("up", "-d")
	sameContainers(t, cs, p.expectSlots(t, "web", 1, 2, 3))
}

func TestRemovedReplicaReturnsInSameSlot(t *testing.T) {
	p := newProject(t, "")
	p.mustRoster("up", "-d")
	before := p.expectSlots(t, "web", 1, 2, 3)

	docker(t, "rm", "-f", p.cname("web", 2))
	p.mustRoster("up", "-d")
	after := p.expectSlots(t, "web", 1, 2, 3)

	if after[1].ID == before[1].ID {
		t.Errorf("%s still has its old ID after docker rm -f", after[1].Name)
	}
	for _, i := range []int{0, 2} {
		if after[i].ID != before[i].ID {
			t.Errorf("%s was replaced (%.12s -> %.12s); only slot 2 was removed", after[i].Name, before[i].ID, after[i].ID)
		}
	}
	if got := strings.TrimSpace(p.httpGet(t, p.cname("web", 2), "/hostname")); got != "web_2" {
		t.Errorf("/hostname of the returned replica = %q, want web_2", got)
	}
}

func TestForegroundLoopRepairsRemovedReplica(t *testing.T) {
	p := newProject(t, "")
	f := p.startForeground(t, "up")

	var before []ctr
	eventually(t, 2*time.Minute, func() error {
		if f.exited() {
			t.Fatalf("roster up exited before converging (%v):\n%s", f.err, f.output())
		}
		before = p.serviceContainers(t, "web")
		return checkSlots(p, "web", before, []int{1, 2, 3})
	})

	removed := time.Now()
	docker(t, "rm", "-f", p.cname("web", 2))
	var after []ctr
	eventually(t, 30*time.Second, func() error {
		if f.exited() {
			t.Fatalf("roster up exited (%v):\n%s", f.err, f.output())
		}
		after = p.serviceContainers(t, "web")
		if err := checkSlots(p, "web", after, []int{1, 2, 3}); err != nil {
			return err
		}
		if after[1].ID == before[1].ID {
			return fmt.Errorf("%s still has its old ID", after[1].Name)
		}
		return nil
	})
	t.Logf("the foreground loop brought back %s in %s", after[1].Name, time.Since(removed).Round(time.Millisecond))
	for _, i := range []int{0, 2} {
		if after[i].ID != before[i].ID {
			t.Errorf("%s was replaced (%.12s -> %.12s); only slot 2 was removed", after[i].Name, before[i].ID, after[i].ID)
		}
	}

	// Ctrl-C leaves the containers running.
	if err := f.stop(t); err != nil {
		t.Logf("roster up exited after SIGINT with %v", err)
	}
	sameContainers(t, after, p.expectSlots(t, "web", 1, 2, 3))
}

func TestScaleDownKeepsLowestSlots(t *testing.T) {
	p := newProject(t, "")
	p.mustRoster("up", "-d")
	p.mustRoster("scale", "web=5")
	five := p.expectSlots(t, "web", 1, 2, 3, 4, 5)

	p.mustRoster("scale", "web=2")
	two := p.expectSlots(t, "web", 1, 2)
	sameContainers(t, five[:2], two)
	for _, c := range two {
		if got := strings.TrimSpace(p.httpGet(t, c.Name, "/hostname")); got != hostname("web", c.Slot) {
			t.Errorf("%s: /hostname = %q, want %q", c.Name, got, hostname("web", c.Slot))
		}
	}
}

func TestEnvChangeRecreatesInPlaceKeepingVolumes(t *testing.T) {
	p := newProject(t, "")
	p.mustRoster("up", "-d")
	before := p.expectSlots(t, "web", 1, 2)

	w1, w2 := p.cname("web", 1), p.cname("web", 2)
	p.httpGet(t, w1, "/write?path=/data/shared.txt&data=named-volume-data")
	for _, c := range before {
		p.httpGet(t, c.Name, "/write?path=/cache/own.txt&data="+url.QueryEscape("anonymous-of-"+c.Name))
	}
	if got := strings.TrimSpace(p.httpGet(t, w2, "/env?name=GREETING")); got != "hello" {
		t.Fatalf("GREETING before the change = %q, want hello", got)
	}

	p.editCompose(t, "GREETING: hello", "GREETING: bonjour")
	p.mustRoster("up", "-d")
	after := p.expectSlots(t, "web", 1, 2)

	for i, c := range after {
		if c.ID == before[i].ID {
			t.Errorf("%s was not recreated after its environment changed", c.Name)
		}
		if v, _ := c.env("GREETING"); v != "bonjour" {
			t.Errorf("%s: GREETING in the container config = %q, want bonjour", c.Name, v)
		}
		if got := strings.TrimSpace(p.httpGet(t, c.Name, "/env?name=GREETING")); got != "bonjour" {
			t.Errorf("%s: /env?name=GREETING = %q, want bonjour", c.Name, got)
		}
		if got := p.httpGet(t, c.Name, "/read?path=/data/shared.txt"); got != "named-volume-data" {
			t.Errorf("%s: /data/shared.txt = %q, want the data written before the recreate", c.Name, got)
		}
		want := "anonymous-of-" + c.Name
		if got := p.httpGet(t, c.Name, "/read?path=/cache/own.txt"); got != want {
			t.Errorf("%s: /cache/own.txt = %q, want %q (its anonymous volume from before the recreate)", c.Name, got, want)
		}
	}
}

// stepLine matches a plan line that would change something.
var stepLine = regexp.MustCompile(`(?i)^[\s\-*•>+]*(create|recreate|remove|replace|start|stop|scale|build|pull)\b`)

func TestSecondUpChangesNothing(t *testing.T) {
	p := newProject(t, "")
	p.mustRoster("up", "-d")
	before := p.replicas(t)
	if len(p.serviceContainers(t, "web")) != 2 || len(p.serviceContainers(t, "other")) != 1 {
		t.Fatalf("after the first up:\n%s", describe(before))
	}

	for _, args := range [][]string{{"plan"}, {"up", "--dry-run"}} {
		r := p.mustRoster(args...)
		out := r.Stdout + r.Stderr
		if !strings.Contains(out, "nothing to do") {
			t.Errorf("roster %s on a converged project does not say \"nothing to do\":\n%s", strings.Join(args, " "), r)
		}
		for _, line := range strings.Split(r.Stdout, "\n") {
			if stepLine.MatchString(line) {
				t.Errorf("roster %s on a converged project plans a step: %q\n%s", strings.Join(args, " "), line, r)
			}
		}
	}

	p.mustRoster("up", "-d")
	after := p.replicas(t)
	sameContainers(t, before, after)
	for i := range before {
		if !after[i].Created.Equal(before[i].Created) || !after[i].StartedAt.Equal(before[i].StartedAt) {
			t.Errorf("%s: created/started %s/%s, before the second up %s/%s", after[i].Name,
				after[i].Created, after[i].StartedAt, before[i].Created, before[i].StartedAt)
		}
	}
	for _, e := range p.ps(t) {
		if e.Drift {
			t.Errorf("roster ps reports drift for %s right after up", e.Name)
		}
	}
}

func TestComposeToolSeesRosterContainers(t *testing.T) {
	p := newProject(t, "")
	p.mustRoster("up", "-d")
	p.expectSlots(t, "web", 1, 2)

	ps := mustDockerCompose(t, p, "ps")
	for _, n := range []int{1, 2} {
		if !strings.Contains(ps.Stdout, p.cname("web", n)) {
			t.Errorf("docker-compose ps does not list %s:\n%s", p.cname("web", n), ps)
		}
	}
	mustDockerCompose(t, p, "exec", "-T", "web", "/fixture", "health")
	mustDockerCompose(t, p, "exec", "-T", "--index=2", "web", "/fixture", "health")
	mustDockerCompose(t, p, "logs", "web")

	stopped := time.Now()
	mustDockerCompose(t, p, "stop")
	for _, c := range p.serviceContainers(t, "web") {
		switch {
		case c.State == "exited":
		case !c.FinishedAt.IsZero() && c.FinishedAt.After(stopped.Add(-2*time.Second)):
			// Stopped by docker-compose, then started again by roster's
			// background operator.
			t.Logf("%s was stopped at %s and is %s again", c.Name, c.FinishedAt, c.State)
		default:
			t.Errorf("%s was not stopped by docker-compose stop: state %s, finished at %s", c.Name, c.State, c.FinishedAt)
		}
	}
}

func TestInvalidComposeFileChangesNothing(t *testing.T) {
	p := newProject(t, "")
	p.mustRoster("up", "-d")
	before := p.expectSlots(t, "web", 1, 2)

	invalid, err := os.ReadFile(filepath.Join(p.Dir, "invalid.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p.writeCompose(t, string(invalid))
	r := p.roster("up", "-d")
	if r.Code != 1 {
		t.Errorf("roster up -d with an invalid compose file: want exit code 1\n%s", r)
	}
	if !strings.Contains(r.Stderr, "compose.yaml") || !strings.Contains(r.Stderr, "ports") {
		t.Errorf("the error does not name the file (compose.yaml) and the field (ports):\n%s", r)
	}
	sameContainers(t, before, p.serviceContainers(t, "web"))
}

func TestBadScaleArgumentIsUsageError(t *testing.T) {
	p := newProject(t, "")
	p.mustRoster("up", "-d")
	before := p.expectSlots(t, "web", 1, 2)

	for _, tc := range []struct {
		arg      string
		usage    bool   // exit code 2 required; else any failure
		mentions string // the error names it
	}{
		{"web=abc", true, "abc"},
		{"web", true, "web"},
		{"web=-1", false, "-1"},
		{"nosuch=2", false, "nosuch"},
	} {
		r := p.roster("scale", tc.arg)
		switch {
		case tc.usage && r.Code != 2:
			t.Errorf("roster scale %s: want exit code 2 (usage error)\n%s", tc.arg, r)
		case r.Code == 0 || r.Code == -1:
			t.Errorf("roster scale %s: want a failure exit code\n%s", tc.arg, r)
		case !strings.Contains(r.Stderr, tc.mentions):
			t.Errorf("roster scale %s: the error does not name %q\n%s", tc.arg, tc.mentions, r)
		default:
			t.Logf("roster scale %s: exit %d: %s", tc.arg, r.Code, strings.TrimSpace(r.Stderr))
		}
		sameContainers(t, before, p.serviceContainers(t, "web"))
	}

	// Nothing was persisted: up keeps the two replicas.
	p.mustRoster("up", "-d")
	sameContainers(t, before, p.expectSlots(t, "web", 1, 2))
}

func TestMissingImageWithoutBuildIsClearError(t *testing.T) {
	p := newProject(t, "")
	r := p.roster("up", "-d")
	if r.Code != 1 {
		t.Errorf("roster up -d with an image that cannot be pulled: want exit code 1\n%s", r)
	}
	if !mentions(r.Stderr, "web") || !strings.Contains(r.Stderr, "roster-does-not-exist:1") ||
		!strings.Contains(strings.ToLower(r.Stderr), "pull") {
		t.Errorf("the error does not name the service (web), the image (roster-does-not-exist:1) and say it could not be pulled:\n%s", r)
	}
	if cs := p.serviceContainers(t, "web"); len(cs) != 0 {
		t.Errorf("containers were created:\n%s", describe(cs))
	}
}

func TestContainerNameWithReplicasIsError(t *testing.T) {
	p := newProject(t, "")
	r := p.roster("up", "-d")
	if r.Code != 1 {
		t.Errorf("roster up -d with container_name and 2 replicas: want exit code 1\n%s", r)
	}
	if !mentions(r.Stderr, "web") || !strings.Contains(r.Stderr, "container_name") {
		t.Errorf("the error does not name the service (web) and container_name:\n%s", r)
	}
	if cs := p.replicas(t); len(cs) != 0 {
		t.Errorf("containers were created:\n%s", describe(cs))
	}
	if _, ok := p.container(t, "e2e-fixed-name"); ok {
		t.Errorf("container e2e-fixed-name was created")
	}
}

func TestPortInUseReportsContainerAndContinues(t *testing.T) {
	p := newProject(t, "")
	p.editCompose(t, "18080", strconv.Itoa(freePort(t)))
	r := p.roster("up", "-d")
	if r.Code != 1 {
		t.Errorf("roster up -d with two services on one host port: want exit code 1\n%s", r)
	}

	cs := byName(p.replicas(t))
	if c := cs[p.cname("c", 1)]; c.State != "running" {
		t.Errorf("%s (no ports) is %q, want running: one failing container must not stop the others\n%s", p.cname("c", 1), c.State, describe(p.containers(t)))
	}
	var running, failed []string
	for _, s := range []string{"a", "b"} {
		if name := p.cname(s, 1); cs[name].State == "running" {
			running = append(running, name)
		} else {
			failed = append(failed, name)
		}
	}
	if len(running) != 1 || len(failed) != 1 {
		t.Fatalf("want exactly one of a, b running (they share a host port); running %v, not running %v\n%s", running, failed, describe(p.containers(t)))
	}
	if !strings.Contains(r.Stderr, failed[0]) {
		t.Errorf("the error does not name the failing container %s:\n%s", failed[0], r)
	}
}

func TestBuildSectionBuildsImage(t *testing.T) {
	p := newProject(t, "")
	copyFile(t, fixtureBin, filepath.Join(p.Dir, "app", "fixture"), 0o755)

	p.mustRoster("up", "-d")
	cs := p.expectSlots(t, "web", 1)
	if got := strings.TrimSpace(p.httpGet(t, cs[0].Name, "/hostname")); got != "web_1" {
		t.Errorf("/hostname = %q, want web_1", got)
	}

	// The image is the one built from ./app with the build arg, tagged
	// {project}-{service} as compose v2 names it.
	image := p.Name + "-web"
	id := strings.TrimSpace(docker(t, "image", "inspect", "-f", "{{.Id}}", image))
	if id != cs[0].Image {
		t.Errorf("%s runs image %s, want %s (%s)", cs[0].Name, cs[0].Image, image, id)
	}
	flavour := strings.TrimSpace(docker(t, "image", "inspect", "-f", `{{index .Config.Labels "dev.roster.e2e.flavour"}}`, cs[0].Image))
	if flavour != "vanilla" {
		t.Errorf("image label dev.roster.e2e.flavour = %q, want vanilla (the build arg FLAVOUR)", flavour)
	}
}
