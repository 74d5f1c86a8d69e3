package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"

	"github.com/roster-dev/roster/reconciler"
	"github.com/roster-dev/roster/render"
)

var _ render.Runner = (*Docker)(nil)

// execProbe is the program of the exec test image: without arguments it
// counts the SIGHUPs it receives in /hups until SIGTERM; "hups" prints the
// count, "say OUT ERR CODE" prints OUT to stdout and ERR to stderr and exits
// with CODE, "big N" prints N bytes, "sleep" sleeps a minute.
const execProbe = `package main

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "hups":
			b, _ := os.ReadFile("/hups")
			fmt.Print(string(b))
		case "say":
			fmt.Fprintln(os.Stdout, os.Args[2])
			fmt.Fprintln(os.Stderr, os.Args[3])
			code, _ := strconv.Atoi(os.Args[4])
			os.Exit(code)
		case "big":
			n, _ := strconv.Atoi(os.Args[2])
			fmt.Print(strings.Repeat("x", n))
		case "sleep":
			time.Sleep(time.Minute)
		}
		return
	}
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGHUP, syscall.SIGTERM)
	n := 0
	for s := range c {
		if s == syscall.SIGTERM {
			return
		}
		n++
		os.WriteFile("/hups", []byte(strconv.Itoa(n)), 0o644)
	}
}
`

// TestExecAndSignal runs against the real engine: exec with output and
// exit codes, signals counted by the container, and the errors.
func TestExecAndSignal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d, err := New(ctx)
	if err != nil {
		t.Fatalf("this test needs a Docker engine: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	cli := d.Client()
	rnd := make([]byte, 4)
	rand.Read(rnd)
	name := "enginetest-exec-" + hex.EncodeToString(rnd)
	imageRef := name + ":test"
	var ids []string
	t.Cleanup(func() {
		ctx := context.Background()
		for _, id := range ids {
			_ = cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
		}
		_, _ = cli.ImageRemove(ctx, imageRef, image.RemoveOptions{Force: true, PruneChildren: true})
	})

	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"src/main.go":   execProbe,
		"src/go.mod":    "module probe\n\ngo 1.21\n",
		"Dockerfile":    "FROM scratch\nCOPY probe /probe\nENTRYPOINT [\"/probe\"]\n",
		".dockerignore": "src\n",
	})
	gb := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, "probe"), ".")
	gb.Dir = filepath.Join(dir, "src")
	gb.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
	if out, err := gb.CombinedOutput(); err != nil {
		t.Fatalf("go build probe: %v\n%s", err, out)
	}
	if err := d.BuildImage(ctx, reconciler.BuildSpec{Service: "probe", Image: imageRef, Dir: dir, Build: types.BuildConfig{Context: "."}}); err != nil {
		t.Fatal(err)
	}
	start := func(n string) string {
		created, err := cli.ContainerCreate(ctx, &container.Config{Image: imageRef}, &container.HostConfig{}, nil, nil, n)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, created.ID)
		if err := cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
			t.Fatal(err)
		}
		return created.ID
	}
	id := start(name)

	// --- exec: output (both streams) and exit codes
	out, code, err := d.Exec(ctx, id, []string{"/probe", "say", "to-stdout", "to-stderr", "0"})
	if err != nil || code != 0 || !strings.Contains(out, "to-stdout\n") || !strings.Contains(out, "to-stderr\n") {
		t.Errorf("exec say: %q %d %v", out, code, err)
	}
	out, code, err = d.Exec(ctx, id, []string{"/probe", "say", "bad config", "emerg", "3"})
	if err != nil || code != 3 || !strings.Contains(out, "bad config") {
		t.Errorf("exec exit 3: %q %d %v", out, code, err)
	}
	out, code, err = d.Exec(ctx, id, []string{"/probe", "big", "100000"})
	if err != nil || code != 0 || len(out) < maxExecOutput || len(out) > maxExecOutput+100 || !strings.HasSuffix(out, "[output truncated]") {
		t.Errorf("exec big: %d bytes, %d %v", len(out), code, err)
	}
	// a missing executable does not run: a non-zero code (126/127) or an error
	if out, code, err := d.Exec(ctx, id, []string{"/no-such-binary"}); err == nil && code == 0 {
		t.Errorf("exec of a missing binary: %q %d", out, code)
	}
	// ctx bounds the exec
	sctx, scancel := context.WithTimeout(ctx, 500*time.Millisecond)
	began := time.Now()
	_, _, err = d.Exec(sctx, id, []string{"/probe", "sleep"})
	scancel()
	if err == nil || !strings.Contains(err.Error(), "deadline") || time.Since(began) > 20*time.Second {
		t.Errorf("exec past its deadline: %v after %s", err, time.Since(began))
	}

	// --- signal: counted by the container
	for i := 0; i < 2; i++ {
		if err := d.Signal(ctx, id, "SIGHUP"); err != nil {
			t.Fatal(err)
		}
		want := string(rune('1' + i))
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, _, err := d.Exec(ctx, id, []string{"/probe", "hups"})
			if err == nil && out == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after %d SIGHUP the container counted %q (%v)", i+1, out, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if err := d.Signal(ctx, id, "SIGNOPE"); err == nil {
		t.Errorf("an unknown signal must fail")
	}

	// --- errors: no such container, stopped container
	if _, _, err := d.Exec(ctx, "no-such-container-"+name, []string{"/probe"}); err == nil || !strings.Contains(err.Error(), "exec in container") {
		t.Errorf("exec in a missing container: %v", err)
	}
	if err := d.Signal(ctx, "no-such-container-"+name, "SIGHUP"); err == nil || !strings.Contains(err.Error(), "signal SIGHUP to container") {
		t.Errorf("signal to a missing container: %v", err)
	}
	if err := d.Signal(ctx, id, "SIGTERM"); err != nil {
		t.Fatal(err)
	}
	wait, errc := cli.ContainerWait(ctx, id, container.WaitConditionNotRunning)
	select {
	case <-wait:
	case err := <-errc:
		t.Fatal(err)
	}
	if _, _, err := d.Exec(ctx, id, []string{"/probe", "hups"}); err == nil {
		t.Errorf("exec in a stopped container must fail")
	}
	if err := d.Signal(ctx, id, "SIGHUP"); err == nil {
		t.Errorf("signal to a stopped container must fail")
	}
}
