package render

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Default debounce and action timeout.
const (
	DefaultWaitMin       = 200 * time.Millisecond
	DefaultWaitMax       = 2 * time.Second
	DefaultActionTimeout = 30 * time.Second
)

// Template is one entry of x-roster.templates.
type Template struct {
	// Name identifies the template in logs and reports: its source as
	// written in the compose file ("source -> target" when two templates
	// share a source).
	Name string
	// Source and Target are absolute paths.
	Source, Target string
	// Dir is the project directory: host commands run there and dry-run
	// diffs name paths relative to it.
	Dir string
	// Mode of the written file (default 0644).
	Mode os.FileMode
	// Check validates a new render before it replaces the last good file;
	// Reload tells the consumer. Either may be nil.
	Check, Reload *Action
	// Wait is the debounce: render after Min of quiet, never later than Max
	// after the first change of a burst.
	Wait Wait
	// InPlace writes the target in place instead of by rename: needed when
	// a container bind-mounts the file itself, since the mount keeps the
	// inode it was given and would never see a renamed-over file. Set by
	// MarkFileMounts; a rename that fails with EBUSY or EXDEV falls back to
	// it anyway.
	InPlace bool
}

// MarkFileMounts sets InPlace on the templates whose target is one of
// bindSources (the absolute host paths of the project's bind mounts), i.e.
// a file some service mounts by itself rather than through its directory.
func MarkFileMounts(ts []Template, bindSources []string) {
	for i := range ts {
		for _, s := range bindSources {
			if filepath.Clean(s) == ts[i].Target {
				ts[i].InPlace = true
			}
		}
	}
}

// Wait is a debounce window.
type Wait struct{ Min, Max time.Duration }

// Action is a check or a reload: exactly one of Command, Exec, Signal.
type Action struct {
	// Command runs on the host (where roster runs), in the project
	// directory.
	Command []string
	// Service names the service whose running containers Exec and Signal
	// act on.
	Service string
	// Exec runs in every running container of Service.
	Exec []string
	// Signal (e.g. "SIGHUP") is sent to every running container of Service.
	Signal string
	// Timeout bounds one run of the action (default 30s).
	Timeout time.Duration
}

// rawTemplate is the YAML/JSON form of one template.
type rawTemplate struct {
	Source string          `json:"source"`
	Target string          `json:"target"`
	Mode   json.RawMessage `json:"mode"`
	Check  json.RawMessage `json:"check"`
	Reload json.RawMessage `json:"reload"`
	Wait   json.RawMessage `json:"wait"`
}

type rawAction struct {
	Command json.RawMessage `json:"command"`
	Service string          `json:"service"`
	Exec    json.RawMessage `json:"exec"`
	Signal  string          `json:"signal"`
	Timeout string          `json:"timeout"`
}

type rawWait struct {
	Min string `json:"min"`
	Max string `json:"max"`
}

// ParseTemplates parses the entries of the top-level x-roster.templates.
// Relative paths are taken from projectDir. Unknown fields are errors;
// every error names the template (index and source) and the field, e.g.
// "x-roster.templates[1] (nginx/up.tmpl): reload: exactly one of command, exec, signal".
func ParseTemplates(raw []json.RawMessage, projectDir string) ([]Template, error) {
	dir, err := filepath.Abs(projectDir)
	if err != nil {
		return nil, err
	}
	var out []Template
	var errs []error
	sources := map[string]int{}
	targets := map[string]int{}
	for i, r := range raw {
		t, err := parseTemplate(r, dir)
		if err != nil {
			label := fmt.Sprintf("x-roster.templates[%d]", i)
			if t.Name != "" {
				label += " (" + t.Name + ")"
			}
			errs = append(errs, fmt.Errorf("%s: %w", label, err))
			continue
		}
		if j, dup := targets[t.Target]; dup {
			errs = append(errs, fmt.Errorf("x-roster.templates[%d] (%s): target: %s is also the target of x-roster.templates[%d]", i, t.Name, t.Target, j))
			continue
		}
		targets[t.Target] = i
		sources[t.Name]++
		out = append(out, t)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for i := range out {
		if sources[out[i].Name] > 1 {
			rel, err := filepath.Rel(dir, out[i].Target)
			if err != nil {
				rel = out[i].Target
			}
			out[i].Name += " -> " + rel
		}
	}
	return out, nil
}

// strict decodes JSON into v rejecting unknown fields.
func strict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return cleanJSONError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data")
	}
	return nil
}

// cleanJSONError turns `json: unknown field "x"` into `unknown field "x"`.
func cleanJSONError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Errorf("%s: must be %s, not %s", te.Field, kind(te.Type.Kind().String()), te.Value)
		}
		return fmt.Errorf("must be %s, not %s", kind(te.Type.Kind().String()), te.Value)
	}
	return errors.New(strings.TrimPrefix(err.Error(), "json: "))
}

func kind(k string) string {
	switch k {
	case "struct", "map":
		return "a mapping"
	case "slice":
		return "a list"
	}
	return "a " + k
}

func isNull(b json.RawMessage) bool { return len(b) == 0 || string(b) == "null" }

func parseTemplate(b json.RawMessage, dir string) (Template, error) {
	var r rawTemplate
	t := Template{Dir: dir, Mode: 0o644, Wait: Wait{DefaultWaitMin, DefaultWaitMax}}
	// Name the template by its source even when another field is bad.
	var probe struct {
		Source any `json:"source"`
	}
	if json.Unmarshal(b, &probe) == nil {
		if s, ok := probe.Source.(string); ok {
			t.Name = s
		}
	}
	if err := strict(b, &r); err != nil {
		return t, err
	}
	if r.Source == "" {
		return t, errors.New("source: required")
	}
	if r.Target == "" {
		return t, errors.New("target: required")
	}
	t.Source = abs(dir, r.Source)
	t.Target = abs(dir, r.Target)
	if t.Source == t.Target {
		return t, errors.New("target: must differ from source")
	}
	if !isNull(r.Mode) {
		m, err := parseMode(r.Mode)
		if err != nil {
			return t, fmt.Errorf("mode: %w", err)
		}
		t.Mode = m
	}
	var err error
	if t.Check, err = parseAction(r.Check); err != nil {
		return t, fmt.Errorf("check: %w", err)
	}
	if t.Reload, err = parseAction(r.Reload); err != nil {
		return t, fmt.Errorf("reload: %w", err)
	}
	if !isNull(r.Wait) {
		var w rawWait
		if err := strict(r.Wait, &w); err != nil {
			return t, fmt.Errorf("wait: %w", err)
		}
		for _, f := range []struct {
			name string
			s    string
			d    *time.Duration
		}{{"min", w.Min, &t.Wait.Min}, {"max", w.Max, &t.Wait.Max}} {
			if f.s == "" {
				continue
			}
			d, err := time.ParseDuration(f.s)
			if err != nil || d < 0 {
				return t, fmt.Errorf("wait: %s: %q is not a duration such as 200ms or 2s", f.name, f.s)
			}
			*f.d = d
		}
		if w.Max == "" && t.Wait.Max < t.Wait.Min {
			t.Wait.Max = t.Wait.Min
		}
		if t.Wait.Max < t.Wait.Min {
			return t, fmt.Errorf("wait: max (%s) is shorter than min (%s)", t.Wait.Max, t.Wait.Min)
		}
	}
	return t, nil
}

func abs(dir, p string) string {
	if strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			p = filepath.Join(home, p[2:])
		}
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	return filepath.Clean(p)
}

// parseMode accepts a string of octal digits ("0644", "644", "0o644") or a
// number. A YAML loader may hand 0644 over as 420 (octal read) or as 644
// (decimal read): a number above 0777 made only of octal digits is read as
// octal.
func parseMode(b json.RawMessage) (os.FileMode, error) {
	var s string
	if json.Unmarshal(b, &s) == nil {
		v, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimPrefix(s, "0o"), "0"), 8, 32)
		if s == "0" || s == "0o0" {
			v, err = 0, nil
		}
		if err != nil || v > 0o777 {
			return 0, fmt.Errorf("%q is not an octal file mode such as \"0644\"", s)
		}
		return os.FileMode(v), nil
	}
	var n uint64
	if err := json.Unmarshal(b, &n); err != nil {
		return 0, fmt.Errorf("%s is not a file mode such as \"0644\"", b)
	}
	if n > 0o777 {
		v, err := strconv.ParseUint(strconv.FormatUint(n, 10), 8, 32)
		if err != nil || v > 0o777 {
			return 0, fmt.Errorf("%d is not a file mode such as \"0644\"", n)
		}
		n = v
	}
	return os.FileMode(n), nil
}

// parseAction parses a check or reload; nil when absent.
func parseAction(b json.RawMessage) (*Action, error) {
	if isNull(b) {
		return nil, nil
	}
	var r rawAction
	if err := strict(b, &r); err != nil {
		return nil, err
	}
	a := &Action{Service: r.Service, Signal: r.Signal, Timeout: DefaultActionTimeout}
	var err error
	if a.Command, err = argv(r.Command); err != nil {
		return nil, fmt.Errorf("command: %w", err)
	}
	if a.Exec, err = argv(r.Exec); err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	n := 0
	for _, set := range []bool{!isNull(r.Command), !isNull(r.Exec), r.Signal != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, errors.New("exactly one of command, exec, signal")
	}
	switch {
	case a.Command != nil && a.Service != "":
		return nil, errors.New("service: only with exec or signal (command runs on the host)")
	case a.Command == nil && a.Service == "":
		kind := "exec"
		if a.Signal != "" {
			kind = "signal"
		}
		return nil, fmt.Errorf("service: required with %s", kind)
	}
	if a.Signal != "" {
		s, err := normalizeSignal(a.Signal)
		if err != nil {
			return nil, fmt.Errorf("signal: %w", err)
		}
		a.Signal = s
	}
	if r.Timeout != "" {
		d, err := time.ParseDuration(r.Timeout)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("timeout: %q is not a positive duration such as 10s", r.Timeout)
		}
		a.Timeout = d
	}
	return a, nil
}

// argv accepts a list of strings, or one string run by /bin/sh -c.
func argv(b json.RawMessage) ([]string, error) {
	if isNull(b) {
		return nil, nil
	}
	var s string
	if json.Unmarshal(b, &s) == nil {
		if strings.TrimSpace(s) == "" {
			return nil, errors.New("empty command")
		}
		return []string{"/bin/sh", "-c", s}, nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, errors.New("must be a list of strings or a string")
	}
	if len(list) == 0 || list[0] == "" {
		return nil, errors.New("empty command")
	}
	return list, nil
}

var signals = map[string]int{
	"HUP": 1, "INT": 2, "QUIT": 3, "KILL": 9, "USR1": 10, "USR2": 12, "TERM": 15,
	"CONT": 18, "STOP": 19, "WINCH": 28, "IO": 29, "PWR": 30,
}

// normalizeSignal accepts "SIGHUP", "HUP", "hup" or a number 1-64 and
// returns the name the engine accepts ("SIGHUP", or the number).
func normalizeSignal(s string) (string, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > 64 {
			return "", fmt.Errorf("%d is not a signal number (1-64)", n)
		}
		return s, nil
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if _, ok := signals[name]; !ok {
		return "", fmt.Errorf("unknown signal %q (e.g. SIGHUP, SIGUSR1, SIGTERM)", s)
	}
	return "SIG" + name, nil
}
