package render

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeRunner records exec and signal calls. exec answers from codes by
// the command's first argument (default exit 0).
type fakeRunner struct {
	mu    sync.Mutex
	calls []string
	codes map[string]int
	err   error
	// onExec, when set, runs for every exec (e.g. to read the target).
	onExec func(id string, cmd []string)
}

func (f *fakeRunner) Exec(ctx context.Context, id string, cmd []string) (string, int, error) {
	f.mu.Lock()
	f.calls = append(f.calls, "exec "+id+" "+strings.Join(cmd, " "))
	hook := f.onExec
	code, err := f.codes[cmd[0]], f.err
	f.mu.Unlock()
	if hook != nil {
		hook(id, cmd)
	}
	return fmt.Sprintf("output of %s", cmd[0]), code, err
}

func (f *fakeRunner) Signal(ctx context.Context, id, sig string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "signal "+id+" "+sig)
	return f.err
}

func (f *fakeRunner) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeRunner) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = nil
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// upstreamTmpl lists the ready web replicas.
const upstreamTmpl = `upstream web {
{{- range readyReplicas "web"}}
    server {{.Hostname}}:8080;
{{- end}}
}
`

func webData(n int, readySlots ...int) Data {
	d := Data{Project: "p", Zone: "p.internal."}
	web := Service{Name: "web"}
	for i := n; i >= 1; i-- { // reversed on purpose: the renderer sorts
		r := Replica{Slot: i, Hostname: fmt.Sprintf("web_%d", i), Name: fmt.Sprintf("p-web-%d", i),
			ID: fmt.Sprintf("id-web-%d", i), State: "running", IPs: map[string]string{"p_default": fmt.Sprintf("10.0.0.%d", i+1)}}
		r.Ready = len(readySlots) == 0 || slices.Contains(readySlots, i)
		web.Replicas = append(web.Replicas, r)
	}
	nginx := Service{Name: "nginx", Replicas: []Replica{
		{Slot: 1, Hostname: "nginx_1", Name: "p-nginx-1", ID: "id-nginx-1", State: "running", Ready: true},
		{Slot: 2, Hostname: "nginx_2", Name: "p-nginx-2", ID: "id-nginx-2", State: "exited"},
	}}
	d.Services = []Service{web, nginx}
	return d
}

// setup writes the template sources into a project directory and returns
// templates rendering them to <name>.conf.
func setup(t *testing.T, sources map[string]string) (string, map[string]*Template) {
	t.Helper()
	dir := t.TempDir()
	ts := map[string]*Template{}
	for name, src := range sources {
		p := filepath.Join(dir, name+".tmpl")
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		ts[name] = &Template{Name: name + ".tmpl", Source: p, Target: filepath.Join(dir, "out", name+".conf"), Dir: dir,
			Mode: 0o644, Wait: Wait{DefaultWaitMin, DefaultWaitMax}}
	}
	return dir, ts
}

func list(ts ...*Template) []Template {
	out := make([]Template, len(ts))
	for i, t := range ts {
		out[i] = *t
	}
	return out
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func ino(t *testing.T, path string) (uint64, time.Time) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino, st.ModTime()
}

func noTempFiles(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".roster-") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

func mustRender(t *testing.T, r *Renderer, d Data) Report {
	t.Helper()
	rep, err := r.Render(context.Background(), d)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return rep
}

func TestRenderWritesOnlyOnChange(t *testing.T) {
	_, ts := setup(t, map[string]string{"up": upstreamTmpl})
	r := New(list(ts["up"]), nil, quiet())
	target := ts["up"].Target

	rep := mustRender(t, r, webData(2))
	want := "upstream web {\n    server web_1:8080;\n    server web_2:8080;\n}\n"
	if got := read(t, target); got != want {
		t.Fatalf("rendered:\n%s\nwant:\n%s", got, want)
	}
	if !rep.Templates[0].Changed || rep.Templates[0].Reloaded || rep.Templates[0].Checked {
		t.Errorf("first render: %+v", rep.Templates[0])
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(target, old, old); err != nil {
		t.Fatal(err)
	}
	i1, m1 := ino(t, target)

	// identical output (same data, and data that differs only where the
	// template does not look) -> nothing written
	for _, d := range []Data{webData(2), webData(2, 1, 2), func() Data { d := webData(2); d.Services[0].Replicas[0].IP = "10.9.9.9"; return d }()} {
		rep = mustRender(t, r, d)
		if rep.Templates[0].Changed || rep.Changed() {
			t.Errorf("identical output reported changed: %+v", rep.Templates[0])
		}
		if i2, m2 := ino(t, target); i2 != i1 || !m2.Equal(m1) {
			t.Errorf("identical output touched the file: inode %d -> %d, mtime %v -> %v", i1, i2, m1, m2)
		}
	}

	// a change: new inode (rename), content and mode
	rep = mustRender(t, r, webData(3, 1, 3))
	if got := read(t, target); got != "upstream web {\n    server web_1:8080;\n    server web_3:8080;\n}\n" || !rep.Templates[0].Changed {
		t.Errorf("after change: %q %+v", got, rep.Templates[0])
	}
	if i2, _ := ino(t, target); i2 == i1 {
		t.Errorf("a change must replace the file by rename (same inode %d)", i1)
	}
	if st, _ := os.Stat(target); st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", st.Mode())
	}
	noTempFiles(t, filepath.Dir(target))
}

func TestRenderIsAtomic(t *testing.T) {
	_, ts := setup(t, map[string]string{"up": upstreamTmpl})
	ts["up"].Mode = 0o600
	r := New(list(ts["up"]), nil, quiet())
	mustRender(t, r, webData(1))
	target := ts["up"].Target
	before := read(t, target)

	// At the moment of the rename, the target still holds the old bytes
	// and the staged file, in the same directory, holds all the new ones.
	var staged string
	r.rename = func(oldpath, newpath string) error {
		if newpath != target || filepath.Dir(oldpath) != filepath.Dir(target) || !strings.HasPrefix(filepath.Base(oldpath), ".up.conf.roster-") {
			t.Errorf("rename %s -> %s", oldpath, newpath)
		}
		if got := read(t, target); got != before {
			t.Errorf("target changed before the rename: %q", got)
		}
		staged = read(t, oldpath)
		if st, _ := os.Stat(oldpath); st.Mode().Perm() != 0o600 {
			t.Errorf("staged mode %v", st.Mode())
		}
		return os.Rename(oldpath, newpath)
	}
	mustRender(t, r, webData(4))
	if got := read(t, target); got != staged || !strings.Contains(got, "web_4") {
		t.Errorf("installed %q, staged %q", got, staged)
	}

	// a rename failing for another reason: error, old file kept, no temp file
	r.rename = func(string, string) error { return &os.LinkError{Op: "rename", Err: syscall.EACCES} }
	rep, err := r.Render(context.Background(), webData(2))
	if err == nil || rep.Templates[0].Err == nil || rep.Templates[0].Changed {
		t.Errorf("failing rename: %v %+v", err, rep.Templates[0])
	}
	if got := read(t, target); got != staged {
		t.Errorf("target after a failed rename: %q", got)
	}
	noTempFiles(t, filepath.Dir(target))
}

func TestRenderBindMountFallbackWritesInPlace(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EBUSY, syscall.EXDEV} {
		t.Run(errno.Error(), func(t *testing.T) {
			_, ts := setup(t, map[string]string{"up": upstreamTmpl})
			r := New(list(ts["up"]), nil, quiet())
			target := ts["up"].Target
			mustRender(t, r, webData(1))
			i1, _ := ino(t, target)

			// a single-file bind mount: rename over it fails with EBUSY
			renames := 0
			r.rename = func(o, n string) error { renames++; return &os.LinkError{Op: "rename", Old: o, New: n, Err: errno} }
			rep := mustRender(t, r, webData(3))
			if renames != 1 || !rep.Templates[0].Changed {
				t.Errorf("renames %d, report %+v", renames, rep.Templates[0])
			}
			if got := read(t, target); !strings.Contains(got, "web_3") {
				t.Errorf("content %q", got)
			}
			if i2, _ := ino(t, target); i2 != i1 {
				t.Errorf("in-place write must keep the inode (the mount): %d -> %d", i1, i2)
			}
			noTempFiles(t, filepath.Dir(target))
		})
	}
}

func TestRenderInPlaceForFileMountedTargets(t *testing.T) {
	dir, ts := setup(t, map[string]string{"up": upstreamTmpl, "other": "x"})
	all := list(ts["up"], ts["other"])
	MarkFileMounts(all, []string{filepath.Join(dir, "out/./up.conf"), dir})
	if !all[0].InPlace || all[1].InPlace {
		t.Fatalf("marked: %v %v", all[0].InPlace, all[1].InPlace)
	}
	r := New(all, nil, quiet())
	r.rename = func(o, n string) error {
		if n == ts["up"].Target {
			t.Errorf("rename over a file-mounted target")
		}
		return os.Rename(o, n)
	}
	mustRender(t, r, webData(1))
	i1, _ := ino(t, ts["up"].Target)
	rep := mustRender(t, r, webData(2))
	if i2, _ := ino(t, ts["up"].Target); i2 != i1 || !rep.Templates[0].Changed || !strings.Contains(read(t, ts["up"].Target), "web_2") {
		t.Errorf("in-place write: inode %d -> %d, %+v", i1, i2, rep.Templates[0])
	}
	noTempFiles(t, filepath.Dir(ts["up"].Target))
}

func TestRenderFailedCheckKeepsLastGood(t *testing.T) {
	for _, tc := range []struct {
		name  string
		check *Action
	}{
		// exec without a placeholder: install, check, restore
		{"installed then restored", &Action{Service: "nginx", Exec: []string{"nginx", "-t"}}},
		// a host command on the staged file
		{"staged", &Action{Command: []string{"grep", "-q", "web_1", "{{.src}}"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ts := setup(t, map[string]string{"up": upstreamTmpl})
			ts["up"].Check = tc.check
			ts["up"].Reload = &Action{Service: "nginx", Signal: "SIGHUP"}
			fr := &fakeRunner{codes: map[string]int{}}
			r := New(list(ts["up"]), fr, quiet())
			target := ts["up"].Target
			var seen []string // what the check saw in the target
			fr.onExec = func(string, []string) { seen = append(seen, read(t, target)) }

			rep := mustRender(t, r, webData(2))
			good := read(t, target)
			if !rep.Templates[0].Checked || !rep.Templates[0].Reloaded {
				t.Errorf("first render: %+v", rep.Templates[0])
			}
			i1, m1 := ino(t, target)

			// the next output fails its check: web_1 is not ready
			fr.reset()
			fr.codes["nginx"] = 1
			seen = nil
			rep, err := r.Render(context.Background(), webData(3, 2, 3))
			var ce *CheckError
			if err == nil || !errors.As(rep.Templates[0].Err, &ce) || rep.Templates[0].Changed || rep.Templates[0].Reloaded {
				t.Fatalf("failing check: %v %+v", err, rep.Templates[0])
			}
			if got := read(t, target); got != good {
				t.Errorf("the last good file was not kept:\n%s", got)
			}
			if tc.check.Exec == nil {
				if i2, m2 := ino(t, target); i2 != i1 || !m2.Equal(m1) {
					t.Errorf("a failing check on the staged file must not touch the target")
				}
			} else if len(seen) != 1 || !strings.Contains(seen[0], "web_3") {
				t.Errorf("the exec check must see the new file installed: %q", seen)
			}
			for _, c := range fr.Calls() {
				if strings.HasPrefix(c, "signal") {
					t.Errorf("reloaded after a failed check: %v", fr.Calls())
				}
			}
			if !strings.Contains(r.Last().Err().Error(), "check failed") {
				t.Errorf("last report: %v", r.Last().Err())
			}
			noTempFiles(t, filepath.Dir(target))

			// the same invalid output again is not re-installed (no flapping)
			fr.reset()
			if _, err := r.Render(context.Background(), webData(3, 2, 3)); err == nil || len(fr.Calls()) != 0 {
				t.Errorf("same invalid output: %v, calls %v", err, fr.Calls())
			}
			// another output is checked again
			if _, err := r.Render(context.Background(), webData(4, 2, 3, 4)); err == nil || read(t, target) != good {
				t.Errorf("another invalid output: %v", err)
			}
			// a valid output installs and reloads
			fr.codes["nginx"] = 0
			fr.reset()
			rep = mustRender(t, r, webData(3))
			if !rep.Templates[0].Changed || !rep.Templates[0].Reloaded || !strings.Contains(read(t, target), "web_3") {
				t.Errorf("after fixing: %+v", rep.Templates[0])
			}
		})
	}
}

func TestRenderCheckThatCouldNotRunIsTriedAgain(t *testing.T) {
	_, ts := setup(t, map[string]string{"up": upstreamTmpl})
	ts["up"].Check = &Action{Service: "nginx", Exec: []string{"nginx", "-t"}}
	fr := &fakeRunner{err: errors.New("container is restarting")}
	r := New(list(ts["up"]), fr, quiet())
	for i := 0; i < 2; i++ {
		if _, err := r.Render(context.Background(), webData(2)); err == nil || !strings.Contains(err.Error(), "container is restarting") {
			t.Fatalf("render %d: %v", i, err)
		}
	}
	if n := len(fr.Calls()); n != 2 {
		t.Errorf("the check ran %d times, want 2 (no verdict: try again)", n)
	}
	fr.mu.Lock()
	fr.err = nil
	fr.mu.Unlock()
	if rep := mustRender(t, r, webData(2)); !rep.Templates[0].Changed {
		t.Errorf("%+v", rep.Templates[0])
	}
}

func TestRenderCheckOnStagedFileSeesItsPath(t *testing.T) {
	_, ts := setup(t, map[string]string{"up": upstreamTmpl})
	ts["up"].Check = &Action{Command: []string{"check", "--file={{.src}}"}}
	r := New(list(ts["up"]), nil, quiet())
	var args []string
	r.command = func(ctx context.Context, dir string, argv []string) (string, int, error) {
		args = argv
		b, err := os.ReadFile(strings.TrimPrefix(argv[1], "--file="))
		if err != nil || !strings.Contains(string(b), "web_2") {
			t.Errorf("staged file: %q %v", b, err)
		}
		if _, err := os.Stat(ts["up"].Target); err == nil {
			t.Errorf("the target exists before its check passed")
		}
		return "", 0, nil
	}
	rep := mustRender(t, r, webData(2))
	if !rep.Templates[0].Checked || len(args) != 2 || !strings.HasPrefix(args[1], "--file="+filepath.Dir(ts["up"].Target)+"/.up.conf.roster-") {
		t.Errorf("check args %q, report %+v", args, rep.Templates[0])
	}
}

func TestRenderFailedCheckOfNewFileRemovesIt(t *testing.T) {
	_, ts := setup(t, map[string]string{"up": upstreamTmpl})
	ts["up"].Check = &Action{Service: "nginx", Exec: []string{"nginx", "-t"}}
	fr := &fakeRunner{codes: map[string]int{"nginx": 1}}
	r := New(list(ts["up"]), fr, quiet())
	if _, err := r.Render(context.Background(), webData(1)); err == nil {
		t.Fatal("want a check error")
	}
	if _, err := os.Stat(ts["up"].Target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a new file that fails its check must not stay: %v", err)
	}
}

func TestRenderReloadsEachConsumerOncePerBatch(t *testing.T) {
	_, ts := setup(t, map[string]string{
		"a": upstreamTmpl,
		"b": `{{range replicas "web"}}{{.Name}} {{.IP}}{{"\n"}}{{end}}`,
		"c": `{{len (replicas "web")}}`,
		"d": `static`,
	})
	sighup := &Action{Service: "nginx", Signal: "SIGHUP"}
	ts["a"].Reload = sighup
	ts["b"].Reload = &Action{Service: "nginx", Signal: "SIGHUP"} // same consumer, another pointer
	ts["c"].Reload = &Action{Service: "nginx", Exec: []string{"reload"}}
	ts["d"].Reload = &Action{Service: "nginx", Signal: "SIGHUP"}
	var order []string
	fr := &fakeRunner{}
	r := New(list(ts["a"], ts["b"], ts["c"], ts["d"]), fr, quiet())
	r.command = nil
	fr.onExec = func(string, []string) {
		// every template of the batch is written before any reload
		for _, n := range []string{"a", "b", "c", "d"} {
			if _, err := os.Stat(ts[n].Target); err != nil {
				order = append(order, n+" missing at reload")
			}
		}
	}
	rep := mustRender(t, r, webData(2))
	want := []string{"signal id-nginx-1 SIGHUP", "exec id-nginx-1 reload"} // nginx_2 is not running
	if got := fr.Calls(); !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
	if len(order) != 0 {
		t.Errorf("%v", order)
	}
	for _, tr := range rep.Templates {
		if !tr.Changed || !tr.Reloaded {
			t.Errorf("%+v", tr)
		}
	}

	// nothing changed -> no reload
	fr.reset()
	mustRender(t, r, webData(2))
	if got := fr.Calls(); len(got) != 0 {
		t.Errorf("reload without change: %q", got)
	}
	// only b changes (an IP moved): one SIGHUP
	d := webData(2)
	d.Services[0].Replicas[0].IPs["p_default"] = "10.0.0.99"
	rep = mustRender(t, r, d)
	if got := fr.Calls(); !slices.Equal(got, want[:1]) {
		t.Errorf("calls %q, want %q", got, want[:1])
	}
	if rep.Templates[0].Changed || !rep.Templates[1].Changed || !rep.Templates[1].Reloaded || rep.Templates[0].Reloaded {
		t.Errorf("report %+v", rep.Templates)
	}
}

func TestRenderFailedReloadIsReportedAndRetried(t *testing.T) {
	_, ts := setup(t, map[string]string{"up": upstreamTmpl})
	ts["up"].Reload = &Action{Service: "nginx", Signal: "SIGHUP"}
	fr := &fakeRunner{err: errors.New("no such container")}
	r := New(list(ts["up"]), fr, quiet())
	rep, err := r.Render(context.Background(), webData(2))
	if err == nil || !strings.Contains(err.Error(), "reload failed: SIGHUP to p-nginx-1: no such container") || !rep.Templates[0].Changed || rep.Templates[0].Reloaded {
		t.Fatalf("%v %+v", err, rep.Templates[0])
	}
	if !strings.Contains(read(t, ts["up"].Target), "web_2") {
		t.Errorf("the checked file stays after a failed reload")
	}
	// the next render retries the reload although nothing changed
	fr.mu.Lock()
	fr.err = nil
	fr.mu.Unlock()
	fr.reset()
	rep = mustRender(t, r, webData(2))
	if got := fr.Calls(); !slices.Equal(got, []string{"signal id-nginx-1 SIGHUP"}) || !rep.Templates[0].Reloaded {
		t.Errorf("retry: %q %+v", got, rep.Templates[0])
	}
	fr.reset()
	mustRender(t, r, webData(2))
	if got := fr.Calls(); len(got) != 0 {
		t.Errorf("reloaded again: %q", got)
	}
}

func TestRenderHostCommand(t *testing.T) {
	dir, ts := setup(t, map[string]string{"up": upstreamTmpl})
	ts["up"].Check = &Action{Command: []string{"/bin/sh", "-c", `grep -q web_1 "$0" || { echo "no web_1 in $0"; exit 3; }`, "{{.src}}"}}
	ts["up"].Reload = &Action{Command: []string{"/bin/sh", "-c", "pwd > reloaded"}}
	r := New(list(ts["up"]), nil, quiet())
	rep := mustRender(t, r, webData(2))
	if !rep.Templates[0].Checked || !rep.Templates[0].Reloaded || strings.TrimSpace(read(t, filepath.Join(dir, "reloaded"))) != dir {
		t.Errorf("%+v", rep.Templates[0])
	}
	_, err := r.Render(context.Background(), webData(2, 2))
	if err == nil || !strings.Contains(err.Error(), "exited with code 3: no web_1 in "+filepath.Dir(ts["up"].Target)) {
		t.Errorf("failing host check: %v", err)
	}
}

func TestRenderErrorsKeepTarget(t *testing.T) {
	_, ts := setup(t, map[string]string{"up": upstreamTmpl, "bad": `{{.Nope}}`, "parse": `{{range}}`})
	r := New(list(ts["up"], ts["bad"], ts["parse"]), nil, quiet())
	rep, err := r.Render(context.Background(), webData(1))
	if err == nil || rep.Templates[0].Err != nil || rep.Templates[1].Err == nil || rep.Templates[2].Err == nil {
		t.Fatalf("%v %+v", err, rep)
	}
	if !strings.Contains(err.Error(), "template bad.tmpl: render: ") || !strings.Contains(err.Error(), "template parse.tmpl: render: ") {
		t.Errorf("error: %v", err)
	}
	if _, err := os.Stat(ts["bad"].Target); err == nil {
		t.Errorf("a failed render wrote its target")
	}
}

func TestDryRun(t *testing.T) {
	dir, ts := setup(t, map[string]string{"up": upstreamTmpl})
	r := New(list(ts["up"]), nil, quiet())
	diff, err := r.DryRun(webData(2))
	if err != nil {
		t.Fatal(err)
	}
	want := `--- /dev/null
+++ out/up.conf
@@ -0,0 +1,4 @@
+upstream web {
+    server web_1:8080;
+    server web_2:8080;
+}
`
	if diff != want {
		t.Errorf("diff of a new file:\n%s\nwant:\n%s", diff, want)
	}
	if _, err := os.Stat(ts["up"].Target); err == nil {
		t.Fatal("dry run wrote the target")
	}
	mustRender(t, r, webData(2))
	i1, m1 := ino(t, ts["up"].Target)
	diff, err = r.DryRun(webData(4, 1, 3, 4))
	want = `--- out/up.conf
+++ out/up.conf
@@ -1,4 +1,5 @@
 upstream web {
     server web_1:8080;
-    server web_2:8080;
+    server web_3:8080;
+    server web_4:8080;
 }
`
	if err != nil || diff != want {
		t.Errorf("diff:\n%s\nwant:\n%s (%v)", diff, want, err)
	}
	if i2, m2 := ino(t, ts["up"].Target); i2 != i1 || !m2.Equal(m1) {
		t.Errorf("dry run touched the target")
	}
	if diff, err := r.DryRun(webData(2)); diff != "" || err != nil {
		t.Errorf("no change: %q %v", diff, err)
	}
	_ = dir
}

func TestRenderNoRunningConsumer(t *testing.T) {
	_, ts := setup(t, map[string]string{"up": upstreamTmpl})
	ts["up"].Check = &Action{Service: "nginx", Exec: []string{"nginx", "-t"}}
	ts["up"].Reload = &Action{Service: "nginx", Signal: "SIGHUP"}
	fr := &fakeRunner{}
	r := New(list(ts["up"]), fr, quiet())
	d := webData(2)
	d.Services[1].Replicas = nil // nginx scaled to 0: it reads the file when it starts
	rep := mustRender(t, r, d)
	if tr := rep.Templates[0]; !tr.Changed || tr.Checked || tr.Reloaded || len(fr.Calls()) != 0 {
		t.Errorf("%+v, calls %q", tr, fr.Calls())
	}
}
