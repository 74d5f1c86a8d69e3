package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Helpers of the issue-5 scenarios (rollout_test.go): readiness, --wait,
// depends_on and rolling updates.

// envOf is the value of the env var name as the replica's process sees it
// (GET /env?name=), retried for up to 30s until it answers 200.
func (p *project) envOf(t testing.TB, container, name string) string {
	t.Helper()
	return strings.TrimSpace(p.httpGet(t, container, "/env?name="+name))
}

// canonical reports whether c carries the stable name of its slot.
func (p *project) canonical(c ctr) bool { return c.Name == p.cname(c.Service, c.Slot) }

// nonCanonical are the containers of cs whose name is not their slot's
// stable name: old containers kept aside (<id12>_<name>) and start-first
// replacements (<name>-next).
func (p *project) nonCanonical(cs []ctr) []ctr {
	var out []ctr
	for _, c := range cs {
		if !p.canonical(c) {
			out = append(out, c)
		}
	}
	return out
}

// expectOnlySlots fails the test unless service has exactly the given
// slots, each with its stable name and hostname and running, and no other
// container (nothing kept aside, no -next).
func (p *project) expectOnlySlots(t testing.TB, service string, slots ...int) []ctr {
	t.Helper()
	cs := p.serviceContainers(t, service)
	if err := checkSlots(p, service, cs, slots); err != nil {
		t.Fatalf("%v\nall containers of the project:\n%s", err, describe(p.containers(t)))
	}
	return cs
}

// idsByName maps container names to IDs.
func idsByName(cs []ctr) map[string]string {
	m := make(map[string]string, len(cs))
	for _, c := range cs {
		m[c.Name] = c.ID
	}
	return m
}

// healthEntry is one probe of `docker inspect .State.Health.Log`.
type healthEntry struct {
	Start    time.Time
	End      time.Time
	ExitCode int
	Output   string
}

// healthLog returns the probes the engine still keeps for the container
// (the last five).
func healthLog(t testing.TB, container string) []healthEntry {
	t.Helper()
	out := docker(t, "inspect", "-f", "{{json .State.Health}}", container)
	var h struct{ Log []healthEntry }
	if s := strings.TrimSpace(out); s != "" && s != "null" {
		if err := json.Unmarshal([]byte(s), &h); err != nil {
			t.Fatalf("decoding the health of %s: %v\n%s", container, err, out)
		}
	}
	return h.Log
}

// planStep is one line of `roster plan` / `roster up --dry-run`:
// "  12. drain demo-web-1: cause [after 3,4]".
type planStep struct {
	ID     int
	Action string
	Target string
	Line   string
	After  []int
}

var (
	planLine    = regexp.MustCompile(`^\s*(\d+)\. (drain|undrain|wait ready|wait for service|create container|start container|stop container|rename container|remove container|[a-z]+ [a-z]+) (\S+)`)
	planAfterRe = regexp.MustCompile(`\[after ([0-9,]+)( finished)?\]`)
)

// parsePlan parses the numbered step lines of a printed plan, in order.
func parsePlan(out string) []planStep {
	var steps []planStep
	for _, line := range strings.Split(out, "\n") {
		m := planLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		id, _ := strconv.Atoi(m[1])
		s := planStep{ID: id, Action: m[2], Target: strings.TrimSuffix(m[3], ":"), Line: strings.TrimSpace(line)}
		for _, a := range planAfterRe.FindAllStringSubmatch(line, -1) {
			for _, f := range strings.Split(a[1], ",") {
				if n, err := strconv.Atoi(f); err == nil {
					s.After = append(s.After, n)
				}
			}
		}
		steps = append(steps, s)
	}
	return steps
}

// dependsOn reports whether step a comes (transitively) after step b in
// the plan's dependencies.
func dependsOn(steps []planStep, a, b int) bool {
	byID := map[int]planStep{}
	for _, s := range steps {
		byID[s.ID] = s
	}
	seen := map[int]bool{}
	var walk func(int) bool
	walk = func(id int) bool {
		if seen[id] {
			return false
		}
		seen[id] = true
		for _, d := range byID[id].After {
			if d == b || walk(d) {
				return true
			}
		}
		return false
	}
	return walk(a)
}

// loopResult is what a request loop against nginx saw.
type loopResult struct {
	Requests int
	OK       int
	Failures []string       // the first 20 failures, with their time
	Failed   int            // every failure (non-200 or error)
	Hosts    map[string]int // answers by hostname
	Bounded  bool           // stopped by its own bound rather than by stop
	Duration time.Duration
}

// requestLoop GETs url sequentially, pausing every between requests, until
// stop is closed, or maxRequests or maxTime is reached. Each request is a
// new connection (no keep-alive): a steady stream of independent clients,
// so that a graceful nginx reload closing idle connections is not counted.
type requestLoop struct {
	stop chan struct{}
	done chan struct{}
	res  loopResult
	once sync.Once
}

func startRequestLoop(url string, every time.Duration, maxRequests int, maxTime time.Duration) *requestLoop {
	l := &requestLoop{stop: make(chan struct{}), done: make(chan struct{})}
	l.res.Hosts = map[string]int{}
	go func() {
		defer close(l.done)
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		start := time.Now()
		defer func() { l.res.Duration = time.Since(start) }()
		for {
			select {
			case <-l.stop:
				return
			default:
			}
			if l.res.Requests >= maxRequests || time.Since(start) >= maxTime {
				l.res.Bounded = true
				return
			}
			l.res.Requests++
			at := time.Since(start).Round(time.Millisecond)
			resp, err := client.Get(url)
			var failure string
			if err != nil {
				failure = err.Error()
			} else {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failure = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
				} else {
					l.res.OK++
					l.res.Hosts[strings.TrimSpace(string(b))]++
				}
			}
			if failure != "" {
				l.res.Failed++
				if len(l.res.Failures) < 20 {
					l.res.Failures = append(l.res.Failures, fmt.Sprintf("request %d at +%s: %s", l.res.Requests, at, failure))
				}
			}
			time.Sleep(every)
		}
	}()
	return l
}

// finish stops the loop and returns what it saw.
func (l *requestLoop) finish() loopResult {
	l.once.Do(func() { close(l.stop) })
	<-l.done
	return l.res
}

// hostsOf is the sorted keys of a hostname count.
func hostsOf(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for h := range m {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

// createdBetween lists the containers of the project the engine created
// between since and until ("create" events; the agent's own excluded), as
// "name" lines. Unlike a list of the containers at one moment, it also
// sees a container created and removed in between (e.g. a retried rollout
// that was rolled back again).
func (p *project) createdBetween(t testing.TB, since, until time.Time) []string {
	t.Helper()
	ts := func(x time.Time) string { return fmt.Sprintf("%d.%09d", x.Unix(), x.Nanosecond()) }
	out := docker(t, "events", "--since", ts(since), "--until", ts(until),
		"--filter", "type=container", "--filter", "event=create",
		"--filter", "label="+labelProject+"="+p.Name,
		"--format", `{{.Actor.Attributes.name}} {{index .Actor.Attributes "`+labelRole+`"}}`)
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		name, role, _ := strings.Cut(strings.TrimSpace(line), " ")
		if name != "" && role != "agent" {
			names = append(names, name)
		}
	}
	return names
}

// noRetry fails the test if, for window after since, the project's
// containers change (IDs, names, states) or any container is created
// (even one removed again before the check).
func (p *project) noRetry(t testing.TB, since time.Time, window time.Duration) {
	t.Helper()
	p.steady(t, window, p.replicas(t))
	if created := p.createdBetween(t, since, time.Now()); len(created) > 0 {
		t.Errorf("containers were created after the failed rollout returned (the failed config was retried without an explicit roster up): %v\ncontainers now:\n%s",
			created, describe(p.containers(t)))
	}
}

// upstreamWatch records the distinct successive upstream host lists of a
// rendered file (see upstreamHosts), each as the hosts joined by spaces.
type upstreamWatch struct {
	stop, done chan struct{}
	seen       []string
	once       sync.Once
}

// watchUpstreams reads file every `every`, at most max times, until finish.
func watchUpstreams(file string, every time.Duration, max int) *upstreamWatch {
	w := &upstreamWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := 0; i < max; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			if b, err := os.ReadFile(file); err == nil {
				l := strings.Join(upstreamHosts(string(b)), " ")
				if len(w.seen) == 0 || w.seen[len(w.seen)-1] != l {
					w.seen = append(w.seen, l)
				}
			}
			time.Sleep(every)
		}
	}()
	return w
}

// finish stops the watch and returns the lists seen, in order.
func (w *upstreamWatch) finish() []string {
	w.once.Do(func() { close(w.stop) })
	<-w.done
	return w.seen
}
