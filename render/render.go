package render

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"
)

// Runner is what the renderer needs from the engine for exec and signal
// actions (engine.Docker implements it).
type Runner interface {
	// Exec runs cmd in the container and returns its combined output and
	// exit code; err is for failures to run it at all.
	Exec(ctx context.Context, containerID string, cmd []string) (output string, exitCode int, err error)
	// Signal sends signal (e.g. "SIGHUP") to the container's main process.
	Signal(ctx context.Context, containerID, signal string) error
}

// Report is the outcome of one render of every template.
type Report struct {
	Templates []TemplateReport `json:"templates"`
}

// TemplateReport is the outcome of one template in one render.
type TemplateReport struct {
	Name   string `json:"name"`
	Target string `json:"target"`
	// Changed: new bytes were installed. Checked: the check ran (it
	// failed when Err is a *CheckError). Reloaded: the reload ran and
	// succeeded.
	Changed, Checked, Reloaded bool
	// Err is a render, write, check or reload failure; the target then
	// still holds the last good file.
	Err error
}

// MarshalJSON writes Err as a string ("" when nil).
func (t TemplateReport) MarshalJSON() ([]byte, error) {
	e := ""
	if t.Err != nil {
		e = t.Err.Error()
	}
	return json.Marshal(struct {
		Name     string `json:"name"`
		Target   string `json:"target"`
		Changed  bool   `json:"changed"`
		Checked  bool   `json:"checked"`
		Reloaded bool   `json:"reloaded"`
		Error    string `json:"error,omitempty"`
	}{t.Name, t.Target, t.Changed, t.Checked, t.Reloaded, e})
}

// Err joins the templates' errors, each prefixed with the template name.
func (r Report) Err() error {
	var errs []error
	for _, t := range r.Templates {
		if t.Err != nil {
			errs = append(errs, fmt.Errorf("template %s: %w", t.Name, t.Err))
		}
	}
	return errors.Join(errs...)
}

// Changed reports whether any template was written.
func (r Report) Changed() bool {
	for _, t := range r.Templates {
		if t.Changed {
			return true
		}
	}
	return false
}

// exitError is a check or reload that ran and exited non-zero.
type exitError struct{ msg string }

func (e *exitError) Error() string { return e.msg }

// CheckError is a check that failed (the new render was not installed).
type CheckError struct{ Err error }

func (e *CheckError) Error() string { return "check failed: " + e.Err.Error() }
func (e *CheckError) Unwrap() error { return e.Err }

// Renderer renders a project's templates. Its methods are safe for
// concurrent use; renders are serialized.
type Renderer struct {
	templates []Template
	runner    Runner
	log       *slog.Logger

	// seams for tests
	rename  func(oldpath, newpath string) error
	command func(ctx context.Context, dir string, argv []string) (string, int, error)
	// rendered is called by Run after each render
	rendered func(Data, Report)
	// retry delays of Run after a failed render (first, cap)
	retryFirst, retryMax time.Duration

	mu sync.Mutex // serializes renders
	// failed remembers, per template index, bytes whose check rejected
	// them (a non-zero exit): the same bytes are not installed and checked
	// again, so that a steady stream of updates or retries does not flap an
	// invalid file into place. A check that could not run is not a verdict
	// and is tried again.
	failed map[int]failure
	// pending are reloads that failed; they are retried at the next render.
	pending map[string]reload

	lastMu sync.Mutex
	last   Report
}

type failure struct {
	content []byte
	err     error
}

type reload struct {
	action *Action
	dir    string
	idx    []int // templates that asked for it
}

// New returns a renderer of templates. runner may be nil when no template
// uses exec or signal; log may be nil (slog.Default).
func New(templates []Template, runner Runner, log *slog.Logger) *Renderer {
	if log == nil {
		log = slog.Default()
	}
	return &Renderer{
		templates: templates, runner: runner, log: log,
		rename: os.Rename, command: hostCommand,
		failed: map[int]failure{}, pending: map[string]reload{},
		retryFirst: 5 * time.Second, retryMax: 2 * time.Minute,
	}
}

// Templates returns the renderer's templates.
func (r *Renderer) Templates() []Template { return r.templates }

// Last returns the report of the last render (zero before the first).
func (r *Renderer) Last() Report {
	r.lastMu.Lock()
	defer r.lastMu.Unlock()
	return r.last
}

// execute renders t on data.
func execute(t Template, data Data) ([]byte, error) {
	src, err := os.ReadFile(t.Source)
	if err != nil {
		return nil, fmt.Errorf("read source: %w", err)
	}
	tmpl, err := template.New(filepath.Base(t.Source)).Option("missingkey=error").Funcs(funcs(data)).Parse(string(src))
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, data); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// readTarget returns the target's bytes and whether it exists.
func readTarget(path string) ([]byte, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	return b, err == nil, err
}

// Render renders every template once on data: a template whose output
// differs from its target is checked and installed, then the reloads of
// the changed templates run, once per consumer, after all templates are
// written. The error joins the templates' failures (also in the report).
func (r *Renderer) Render(ctx context.Context, data Data) (Report, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	data = data.Normalize()
	rep := Report{Templates: make([]TemplateReport, len(r.templates))}
	var order []string
	reloads := map[string]*reload{}
	for i, t := range r.templates {
		tr := &rep.Templates[i]
		tr.Name, tr.Target = t.Name, t.Target
		log := r.log.With("template", t.Name, "target", t.Target)
		out, err := execute(t, data)
		if err != nil {
			tr.Err = fmt.Errorf("render: %w", err)
			log.Error("template not rendered; the target keeps its last good content", "err", err)
			continue
		}
		cur, exists, err := readTarget(t.Target)
		if err != nil {
			tr.Err = fmt.Errorf("read target: %w", err)
			log.Error("template target unreadable", "err", err)
			continue
		}
		if exists && bytes.Equal(cur, out) {
			delete(r.failed, i)
			continue
		}
		if f, ok := r.failed[i]; ok && bytes.Equal(f.content, out) {
			tr.Err = f.err // the same rejected bytes: not installed and checked again
			continue
		}
		checked, err := r.install(ctx, t, data, cur, exists, out)
		tr.Checked = checked
		if err != nil {
			tr.Err = err
			var ce *CheckError
			var ee *exitError
			if errors.As(err, &ce) && errors.As(err, &ee) {
				// a verdict on these bytes (not a check that could not run)
				r.failed[i] = failure{out, err}
			}
			log.Error("template not installed; the target keeps its last good content", "err", err)
			continue
		}
		delete(r.failed, i)
		tr.Changed = true
		log.Info("template written", "checked", checked, "bytes", len(out))
		if t.Reload != nil {
			k := actionKey(t.Reload, t.Dir)
			if reloads[k] == nil {
				reloads[k] = &reload{action: t.Reload, dir: t.Dir}
				order = append(order, k)
			}
			reloads[k].idx = append(reloads[k].idx, i)
		}
	}
	// reloads that failed in an earlier render are retried
	for _, k := range slices.Sorted(maps.Keys(r.pending)) {
		if reloads[k] == nil {
			p := r.pending[k]
			reloads[k] = &p
			order = append(order, k)
		}
	}
	for _, k := range order {
		rl := reloads[k]
		ran, err := r.act(ctx, rl.action, rl.dir, data, "")
		if err != nil {
			r.pending[k] = *rl
			r.log.Error("reload failed; the new files stay and the reload is retried", "action", describe(rl.action), "err", err)
		} else {
			delete(r.pending, k)
			r.log.Info("reloaded", "action", describe(rl.action))
		}
		for _, i := range rl.idx {
			if err != nil {
				rep.Templates[i].Err = errors.Join(rep.Templates[i].Err, fmt.Errorf("reload failed: %w", err))
			} else {
				rep.Templates[i].Reloaded = ran
			}
		}
	}
	r.lastMu.Lock()
	r.last = rep
	r.lastMu.Unlock()
	return rep, rep.Err()
}

// install writes out to t.Target, checked. It reports whether the check ran.
func (r *Renderer) install(ctx context.Context, t Template, data Data, cur []byte, exists bool, out []byte) (bool, error) {
	if t.Check == nil {
		return false, r.write(t, out)
	}
	if hasSrc(t.Check) {
		// check the staged file, then move it into place
		tmp, err := r.stage(t, out)
		if err != nil {
			return false, err
		}
		defer os.Remove(tmp) // a no-op once renamed
		ran, err := r.act(ctx, t.Check, t.Dir, data, tmp)
		if err != nil {
			return ran, &CheckError{err}
		}
		return ran, r.commit(t, tmp, out)
	}
	// The check reads the installed file (e.g. nginx -t reads the whole
	// configuration): install, check, and put the previous bytes back on
	// failure.
	if err := r.write(t, out); err != nil {
		return false, err
	}
	ran, err := r.act(ctx, t.Check, t.Dir, data, "")
	if err == nil {
		return ran, nil
	}
	var restore error
	if exists {
		restore = r.write(t, cur)
	} else {
		restore = os.Remove(t.Target)
	}
	if restore != nil {
		restore = fmt.Errorf("restoring the last good file: %w", restore)
	}
	return ran, errors.Join(&CheckError{err}, restore)
}

// write installs content atomically: a temporary file in the target's
// directory renamed over the target (in place when that cannot be done).
func (r *Renderer) write(t Template, content []byte) error {
	tmp, err := r.stage(t, content)
	if err != nil {
		return err
	}
	return r.commit(t, tmp, content)
}

// stage writes content to a new hidden temporary file next to the target
// (named .<target>.roster-*.tmp so that globs like conf.d/*.conf skip it),
// with the target's mode and, when it exists, its owner.
func (r *Renderer) stage(t Template, content []byte) (string, error) {
	dir := filepath.Dir(t.Target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("write: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(t.Target)+".roster-*.tmp")
	if err != nil {
		return "", fmt.Errorf("write: %w", err)
	}
	_, err = f.Write(content)
	if err == nil {
		err = f.Chmod(t.Mode)
	}
	if st, serr := os.Stat(t.Target); err == nil && serr == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			_ = f.Chown(int(sys.Uid), int(sys.Gid)) // best effort
		}
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("write: %w", err)
	}
	return f.Name(), nil
}

// commit renames tmp over the target. It writes content into the target in
// place instead (truncate and write: not atomic, but the only way to update
// such a file) when the target is marked InPlace (a container bind-mounts
// the file itself: a rename would leave it on the old inode), or when the
// rename fails because the target is a mount point here (EBUSY) or on
// another file system (EXDEV).
func (r *Renderer) commit(t Template, tmp string, content []byte) error {
	if !t.InPlace {
		err := r.rename(tmp, t.Target)
		if err == nil {
			if d, err := os.Open(filepath.Dir(t.Target)); err == nil {
				d.Sync()
				d.Close()
			}
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) && !errors.Is(err, syscall.EXDEV) {
			os.Remove(tmp)
			return fmt.Errorf("write: %w", err)
		}
		r.log.Debug("rename over the target failed; writing in place", "target", t.Target, "err", err)
	}
	os.Remove(tmp)
	f, err := os.OpenFile(t.Target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, t.Mode)
	if err != nil {
		return fmt.Errorf("write in place: %w", err)
	}
	_, err = f.Write(content)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write in place: %w", err)
	}
	return nil
}

// srcPlaceholders are replaced by the staged file's path in check arguments.
var srcPlaceholders = []string{"{{.src}}", "{{.Src}}"}

func hasSrc(a *Action) bool {
	for _, arg := range append(append([]string{}, a.Command...), a.Exec...) {
		for _, p := range srcPlaceholders {
			if strings.Contains(arg, p) {
				return true
			}
		}
	}
	return false
}

func subst(argv []string, src string) []string {
	if src == "" {
		return argv
	}
	out := make([]string, len(argv))
	for i, a := range argv {
		for _, p := range srcPlaceholders {
			a = strings.ReplaceAll(a, p, src)
		}
		out[i] = a
	}
	return out
}

// act runs a check or reload. It reports whether anything ran: exec and
// signal with no running container of the service do nothing (the
// consumer reads the file when it starts).
func (r *Renderer) act(ctx context.Context, a *Action, dir string, data Data, src string) (bool, error) {
	timeout := a.Timeout
	if timeout <= 0 {
		timeout = DefaultActionTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if a.Command != nil {
		argv := subst(a.Command, src)
		out, code, err := r.command(ctx, dir, argv)
		if err != nil {
			return true, fmt.Errorf("%s: %w", quote(argv), err)
		}
		if code != 0 {
			return true, &exitError{fmt.Sprintf("%s exited with code %d%s", quote(argv), code, tail(out))}
		}
		return true, nil
	}
	targets := running(data.Service(a.Service).Replicas)
	if len(targets) == 0 {
		r.log.Info("no running container to act on", "service", a.Service, "action", describe(a))
		return false, nil
	}
	if r.runner == nil {
		return false, fmt.Errorf("%s: no engine to reach service %s", describe(a), a.Service)
	}
	var errs []error
	for _, c := range targets {
		if a.Exec != nil {
			argv := subst(a.Exec, src)
			out, code, err := r.runner.Exec(ctx, c.ID, argv)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("%s in %s: %w", quote(argv), c.Name, err))
			case code != 0:
				errs = append(errs, &exitError{fmt.Sprintf("%s in %s exited with code %d%s", quote(argv), c.Name, code, tail(out))})
			}
		} else if err := r.runner.Signal(ctx, c.ID, a.Signal); err != nil {
			errs = append(errs, fmt.Errorf("%s to %s: %w", a.Signal, c.Name, err))
		}
	}
	return true, errors.Join(errs...)
}

// hostCommand runs argv on the host in dir.
func hostCommand(ctx context.Context, dir string, argv []string) (string, int, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ctx.Err() == nil {
		return string(out), ee.ExitCode(), nil
	}
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return string(out), 0, err
}

// tail formats the end of a command's output for an error message.
func tail(out string) string {
	out = strings.TrimSpace(out)
	if out == "" {
		return ""
	}
	if len(out) > 2048 {
		out = "..." + out[len(out)-2048:]
	}
	return ": " + out
}

func quote(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n\"'$`\\*?;&|<>(){}") {
			a = strconv.Quote(a)
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// describe names an action for logs: "signal SIGHUP to nginx", ...
func describe(a *Action) string {
	switch {
	case a.Command != nil:
		return "command " + quote(a.Command)
	case a.Exec != nil:
		return "exec " + quote(a.Exec) + " in " + a.Service
	}
	return "signal " + a.Signal + " to " + a.Service
}

// actionKey identifies a consumer action: templates with the same key are
// reloaded once per batch.
func actionKey(a *Action, dir string) string {
	return fmt.Sprintf("%q|%q|%q|%q|%q", a.Command, a.Service, a.Exec, a.Signal, dir)
}

// DryRun renders every template on data and returns the unified diff of
// each target against its new content (paths relative to the project
// directory); it writes nothing and runs nothing. The error joins the
// templates that could not be rendered.
func (r *Renderer) DryRun(data Data) (string, error) {
	data = data.Normalize()
	var out strings.Builder
	var errs []error
	for _, t := range r.templates {
		b, err := execute(t, data)
		if err != nil {
			errs = append(errs, fmt.Errorf("template %s: render: %w", t.Name, err))
			continue
		}
		cur, exists, err := readTarget(t.Target)
		if err != nil {
			errs = append(errs, fmt.Errorf("template %s: read target: %w", t.Name, err))
			continue
		}
		name := t.Target
		if rel, err := filepath.Rel(t.Dir, t.Target); err == nil && t.Dir != "" && !strings.HasPrefix(rel, "..") {
			name = rel
		}
		from := name
		if !exists {
			from = "/dev/null"
		}
		out.WriteString(unifiedDiff(from, name, string(cur), string(b)))
	}
	return out.String(), errors.Join(errs...)
}
