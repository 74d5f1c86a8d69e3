package render

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBurstDue(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	w := Wait{Min: 200 * time.Millisecond, Max: 2 * time.Second}
	for _, tc := range []struct {
		name    string
		updates []int // ms
		due     int
	}{
		{"one update waits min", []int{0}, 200},
		// 50 updates 1ms apart: one render, min after the last
		{"burst of 50", func() []int {
			var u []int
			for i := 0; i < 50; i++ {
				u = append(u, i)
			}
			return u
		}(), 49 + 200},
		// an update every 100ms (never 200ms of quiet): max after the first
		{"continuous stream", func() []int {
			var u []int
			for i := 0; i < 20; i++ {
				u = append(u, 100*i)
			}
			return u
		}(), 2000},
		{"late burst start", []int{500, 600}, 800},
	} {
		var b burst
		for _, u := range tc.updates {
			// the render happens at the first due time not pushed back by
			// a later update: check that no earlier due was passed
			if b.on && !ms(u).Before(b.due(w)) {
				t.Fatalf("%s: due %v passed before the update at %dms", tc.name, b.due(w).Sub(t0), u)
			}
			b.add(ms(u))
		}
		if got := b.due(w); !got.Equal(ms(tc.due)) {
			t.Errorf("%s: due at %v, want %dms", tc.name, got.Sub(t0), tc.due)
		}
	}
	// the wait of a renderer is the largest of its templates'
	r := New([]Template{{Wait: Wait{100 * time.Millisecond, 5 * time.Second}}, {Wait: Wait{time.Second, 2 * time.Second}}}, nil, quiet())
	if w := r.wait(); w != (Wait{time.Second, 5 * time.Second}) {
		t.Errorf("wait %v", w)
	}
}

// runner starts r.Run and collects its renders.
type runner struct {
	mu      sync.Mutex
	renders []Data
	done    chan error
	updates chan Data
	cancel  context.CancelFunc
}

// startRun starts r.Run. Each after hook runs after every render, in Run's
// goroutine: no render is in progress then, and Run starts no other one
// before the hooks return, so the files are as that render left them
// (between a write and the end of its check, a render has the new bytes
// in place: a test looking at the target at any other time can see them).
func startRun(t *testing.T, r *Renderer, after ...func(Data, Report)) *runner {
	t.Helper()
	rr := &runner{done: make(chan error, 1), updates: make(chan Data)}
	r.rendered = func(d Data, rep Report) {
		for _, fn := range after {
			fn(d, rep)
		}
		rr.mu.Lock()
		rr.renders = append(rr.renders, d)
		rr.mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	rr.cancel = cancel
	go func() { rr.done <- r.Run(ctx, rr.updates) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-rr.done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return rr
}

func (rr *runner) count() int {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return len(rr.renders)
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after %s for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRunBurstRendersOnce(t *testing.T) {
	_, ts := setup(t, map[string]string{"up": upstreamTmpl})
	ts["up"].Wait = Wait{Min: time.Second, Max: 20 * time.Second}
	r := New(list(ts["up"]), nil, quiet())
	rr := startRun(t, r)
	start := time.Now()
	for i := 1; i <= 50; i++ {
		rr.updates <- webData(i%7 + 1)
	}
	sent := time.Since(start)
	waitFor(t, "the render", 20*time.Second, func() bool { return rr.count() > 0 })
	time.Sleep(1500 * time.Millisecond) // more than min: a second render would show
	t.Logf("50 updates sent in %s", sent)
	if n := rr.count(); n != 1 && sent < 500*time.Millisecond {
		t.Errorf("%d renders for one burst of 50 updates, want 1", n)
	}
	if got := read(t, ts["up"].Target); !strings.Contains(got, "web_2:") || strings.Contains(got, "web_3") {
		t.Errorf("the render must use the last update (webData(2)):\n%s", got)
	}
}

func TestRunMaxWaitUnderContinuousStream(t *testing.T) {
	_, ts := setup(t, map[string]string{"up": upstreamTmpl})
	// an update every 20ms never leaves 300ms of quiet: only max renders
	ts["up"].Wait = Wait{Min: 300 * time.Millisecond, Max: 600 * time.Millisecond}
	r := New(list(ts["up"]), nil, quiet())
	rr := startRun(t, r)
	stop := time.Now().Add(3 * time.Second)
	for i := 0; time.Now().Before(stop); i++ {
		rr.updates <- webData(i%5 + 1)
		time.Sleep(20 * time.Millisecond)
	}
	// 3s of stream with max 600ms: about 5 renders; without max, none
	if n := rr.count(); n < 2 {
		t.Errorf("%d renders during a 3s stream with wait.max 600ms", n)
	} else {
		t.Logf("%d renders during a 3s stream", n)
	}
}

func TestRunNothingBeforeFirstData(t *testing.T) {
	_, ts := setup(t, map[string]string{"up": upstreamTmpl})
	ts["up"].Wait = Wait{Min: 10 * time.Millisecond, Max: 20 * time.Millisecond}
	r := New(list(ts["up"]), nil, quiet())
	r.retryFirst = 10 * time.Millisecond
	rr := startRun(t, r)
	time.Sleep(300 * time.Millisecond)
	if rr.count() != 0 {
		t.Errorf("rendered before any data")
	}
	if _, err := os.Stat(ts["up"].Target); err == nil {
		t.Errorf("target written before any data")
	}
}

func TestRunClosedChannelFlushes(t *testing.T) {
	_, ts := setup(t, map[string]string{"up": upstreamTmpl})
	ts["up"].Wait = Wait{Min: time.Minute, Max: time.Hour}
	r := New(list(ts["up"]), nil, quiet())
	rr := startRun(t, r)
	rr.updates <- webData(3)
	close(rr.updates)
	select {
	case err := <-rr.done:
		rr.done <- err // for the cleanup
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its updates were closed")
	}
	if rr.count() != 1 || !strings.Contains(read(t, ts["up"].Target), "web_3") {
		t.Errorf("pending burst not rendered on close: %d renders", rr.count())
	}
}

// outcome is a render seen by an after hook of startRun: its report and
// the target as the render left it.
type outcome struct {
	rep    TemplateReport
	exists bool
	target string
}

// outcomes records the outcome of every render of a one-template renderer.
type outcomes struct {
	mu   sync.Mutex
	list []outcome
}

func (o *outcomes) after(target string) func(Data, Report) {
	return func(_ Data, rep Report) {
		b, err := os.ReadFile(target)
		o.mu.Lock()
		o.list = append(o.list, outcome{rep.Templates[0], err == nil, string(b)})
		o.mu.Unlock()
	}
}

func (o *outcomes) get() []outcome {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.list)
}

// rejected reports whether err is a check that ran and rejected the output
// (a non-zero exit), as opposed to one that could not run.
func rejected(err error) bool {
	var ce *CheckError
	var ee *exitError
	return errors.As(err, &ce) && errors.As(err, &ee)
}

// TestRunRetries looks at the target only from an after hook: with a check
// that reads the installed file, a render has its new bytes in place until
// the check ends, and a test that looks in between sees bytes that were not
// checked (and may then be rejected and removed).
func TestRunRetries(t *testing.T) {
	_, ts := setup(t, map[string]string{"up": upstreamTmpl})
	ts["up"].Wait = Wait{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	ts["up"].Check = &Action{Service: "nginx", Exec: []string{"nginx", "-t"}}
	target := ts["up"].Target
	fr := &fakeRunner{err: errors.New("container is restarting")}
	r := New(list(ts["up"]), fr, quiet())
	r.retryFirst, r.retryMax = 50*time.Millisecond, 100*time.Millisecond
	var o outcomes
	rr := startRun(t, r, o.after(target))
	rr.updates <- webData(2)
	waitFor(t, "the first render", 10*time.Second, func() bool { return len(o.get()) >= 1 })
	first := o.get()[0]
	if first.exists {
		t.Fatal("installed although the check could not run")
	}
	if e := first.rep.Err; first.rep.Changed || !first.rep.Checked || !errors.As(e, new(*CheckError)) || rejected(e) {
		t.Fatalf("first render: %+v, want a check that could not run", first.rep)
	}

	// the check can run later: a retry installs the file with no new update
	fr.mu.Lock()
	fr.err = nil
	fr.mu.Unlock()
	waitFor(t, "the retry", 10*time.Second, func() bool {
		l := o.get()
		return l[len(l)-1].rep.Err == nil
	})
	all := o.get()
	for _, oc := range all[:len(all)-1] { // renders that began before the check could run
		if oc.exists || oc.rep.Changed || rejected(oc.rep.Err) {
			t.Fatalf("a render whose check could not run: %+v, target exists: %v", oc.rep, oc.exists)
		}
	}
	installed := all[len(all)-1]
	if !installed.rep.Changed || !installed.exists || !strings.Contains(installed.target, "web_2:") {
		t.Fatalf("the retry did not install webData(2): %+v\n%s", installed.rep, installed.target)
	}
	// a render that succeeds schedules no retry: nothing renders until
	// the next update
	if err := r.Last().Err(); err != nil {
		t.Errorf("last report: %v", err)
	}

	// an output the check rejects is not installed, nor checked again by
	// the retries
	fr.mu.Lock()
	fr.codes = map[string]int{"nginx": 1}
	fr.calls = nil
	fr.mu.Unlock()
	good := read(t, target)
	if good != installed.target {
		t.Fatalf("the target changed with no render:\n%s", good)
	}
	n := len(o.get())
	rr.updates <- webData(3)
	const retries = 3
	waitFor(t, "the rejected render and its retries", 20*time.Second, func() bool { return len(o.get()) >= n+1+retries })
	after := o.get()[n:]
	if oc := after[0]; !oc.rep.Checked || oc.rep.Changed || !rejected(oc.rep.Err) {
		t.Errorf("the render of webData(3): %+v, want a rejected check", oc.rep)
	}
	for i, oc := range after {
		if !oc.exists || oc.target != good {
			t.Errorf("render %d after the rejection: the last good file was not kept (exists %v):\n%s", i, oc.exists, oc.target)
		}
		if i > 0 && (oc.rep.Checked || oc.rep.Changed || !rejected(oc.rep.Err)) {
			t.Errorf("retry %d of the rejected output: %+v, want the rejection reported, not checked again", i, oc.rep)
		}
	}
	if calls := fr.Calls(); len(calls) != 1 || calls[0] != "exec id-nginx-1 nginx -t" {
		t.Errorf("a rejected output was checked %d times over %d renders: %q", len(calls), len(after), calls)
	}
	if got := read(t, target); got != good {
		t.Errorf("the last good file was replaced:\n%s", got)
	}
}
