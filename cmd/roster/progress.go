package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/roster-dev/roster/reconciler"
)

// progress prints per-object progress like docker compose: one line per
// container, network, volume or image. In tty mode the block of lines is
// redrawn in place; in plain mode every change is a new line.
type progress struct {
	mu      sync.Mutex
	w       io.Writer
	mode    string // tty, plain, quiet
	order   []string
	lines   map[string]*progLine
	drawn   int
	started time.Time
}

type progLine struct {
	kind, name, status string
	start, end         time.Time
	failed, finished   bool
}

func newProgress(w io.Writer, mode string) *progress {
	if mode == "auto" || mode == "" {
		mode = "plain"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			mode = "tty"
		}
	}
	return &progress{w: w, mode: mode, lines: map[string]*progLine{}, started: time.Now()}
}

// verbs maps an action to its object kind and its -ing / done words.
var verbs = map[reconciler.Action][3]string{
	reconciler.ActBuildImage:      {"Image", "Building", "Built"},
	reconciler.ActPullImage:       {"Image", "Pulling", "Pulled"},
	reconciler.ActCreateNetwork:   {"Network", "Creating", "Created"},
	reconciler.ActCreateVolume:    {"Volume", "Creating", "Created"},
	reconciler.ActRemoveNetwork:   {"Network", "Removing", "Removed"},
	reconciler.ActRemoveVolume:    {"Volume", "Removing", "Removed"},
	reconciler.ActCreateContainer: {"Container", "Creating", "Created"},
	reconciler.ActStartContainer:  {"Container", "Starting", "Started"},
	reconciler.ActStopContainer:   {"Container", "Stopping", "Stopped"},
	reconciler.ActRenameContainer: {"Container", "Recreate", "Renamed"},
	reconciler.ActRemoveContainer: {"Container", "Removing", "Removed"},
}

func (p *progress) event(ev reconciler.StepEvent) {
	if p == nil || p.mode == "quiet" {
		return
	}
	v := verbs[ev.Step.Action]
	name := ev.Step.Target
	if ev.Step.Action == reconciler.ActRenameContainer {
		name = ev.Step.Target
	}
	key := v[0] + " " + name
	p.mu.Lock()
	defer p.mu.Unlock()
	l, ok := p.lines[key]
	if !ok {
		l = &progLine{kind: v[0], name: name}
		p.lines[key] = l
		p.order = append(p.order, key)
	}
	switch ev.State {
	case reconciler.StepRunning:
		l.status, l.start, l.finished, l.failed = v[1], time.Now(), false, false
	case reconciler.StepDone:
		l.status, l.end, l.finished = v[2], time.Now(), true
	case reconciler.StepFailed:
		l.status, l.end, l.finished, l.failed = "Error", time.Now(), true, true
	case reconciler.StepSkipped:
		l.status, l.finished = "Skipped", true
	}
	if p.mode == "plain" {
		msg := fmt.Sprintf(" %s %s  %s", l.kind, l.name, l.status)
		if ev.Err != nil && ev.State == reconciler.StepFailed {
			msg += ": " + ev.Err.Error()
		}
		fmt.Fprintln(p.w, msg)
		return
	}
	p.redraw()
}

// redraw rewrites the block of lines in place (tty mode).
func (p *progress) redraw() {
	var b strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.drawn)
	}
	width := 0
	for _, k := range p.order {
		width = max(width, len(k))
	}
	for _, k := range p.order {
		l := p.lines[k]
		mark := "\x1b[34m⠿\x1b[0m"
		if l.finished {
			mark = "\x1b[32m✔\x1b[0m"
		}
		if l.failed {
			mark = "\x1b[31m✘\x1b[0m"
		}
		el := time.Since(l.start)
		if l.finished && !l.end.IsZero() {
			el = l.end.Sub(l.start)
		}
		fmt.Fprintf(&b, "\x1b[2K %s %-*s  %-10s %5.1fs\n", mark, width, k, l.status, el.Seconds())
	}
	p.drawn = len(p.order)
	io.WriteString(p.w, b.String())
}

// done finishes the output.
func (p *progress) done() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode == "tty" && len(p.order) > 0 {
		p.redraw()
	}
}
