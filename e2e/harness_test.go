// Package e2e runs roster against the real Docker engine. See README.md.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// fixtureImage is the test image every testdata compose file uses.
	fixtureImage = "roster-fixture:e2e"
	// fixtureHashLabel carries the hash of the fixture sources the image
	// was built from; the image is rebuilt only when it differs.
	fixtureHashLabel = "dev.roster.fixture-hash"
	// projectPrefix starts every project name the tests use; leftovers
	// are swept by it.
	projectPrefix = "e2e-"

	labelProject = "com.docker.compose.project"
	labelService = "com.docker.compose.service"
	labelNumber  = "com.docker.compose.container-number"
	labelSlot    = "dev.roster.slot"
	labelRole    = "dev.roster.role"

	// commandTimeout bounds every roster, docker and docker-compose command.
	commandTimeout = 3 * time.Minute
)

// Set by TestMain.
var (
	moduleRoot string
	// rosterBin is the roster binary under test; rosterBuildErr says why
	// there is none (the tests that need it fail with it).
	rosterBin      string
	rosterBuildErr error
	// fixtureBin is the static fixture binary (also baked into fixtureImage);
	// tests with a build section copy it into their build context.
	fixtureBin string
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "e2e: "+format+"\n", args...)
		return 1
	}
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped in -short mode (these tests need a Docker engine)")
		return 0
	}
	if out, err := run(context.Background(), "", nil, "docker", "version", "--format", "{{.Server.APIVersion}}"); err != nil {
		return fail("the Docker engine is not reachable (these tests need a running engine; check DOCKER_HOST and that dockerd runs):\n%s", strings.TrimSpace(out))
	}
	if _, err := exec.LookPath("docker-compose"); err != nil {
		return fail("docker-compose (v1) is not on PATH: %v", err)
	}
	root, err := findModuleRoot()
	if err != nil {
		return fail("%v", err)
	}
	moduleRoot = root

	tmp, err := os.MkdirTemp("", "roster-e2e-")
	if err != nil {
		return fail("%v", err)
	}
	defer os.RemoveAll(tmp)

	// roster itself. A build failure does not stop the harness's own
	// tests; every test that runs roster fails with it.
	rosterBin = filepath.Join(tmp, "roster")
	if out, err := run(context.Background(), moduleRoot, []string{"CGO_ENABLED=0"}, "go", "build", "-o", rosterBin, "./cmd/roster"); err != nil {
		rosterBuildErr = fmt.Errorf("go build ./cmd/roster: %v\n%s", err, out)
		rosterBin = ""
		fmt.Fprintf(os.Stderr, "e2e: WARNING: %v\n", rosterBuildErr)
	}

	if err := buildFixture(filepath.Join(tmp, "fixture")); err != nil {
		return fail("building the fixture image: %v", err)
	}

	buildDebianImages()

	if err := sweep(); err != nil {
		return fail("sweeping leftovers of earlier runs: %v", err)
	}
	code := m.Run()
	if err := sweep(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: sweeping after the run: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// debianImage is the glibc client image: Debian bookworm minbase (getent
// is in libc-bin), with `command: ["sleep", "infinity"]` in compose files.
const debianImage = "roster-debian:bookworm"

// debianImages are built by TestMain from Debian packages with
// scripts/debian-image.sh (tag -> packages), which does nothing when the
// engine already has the tag built from the same package list. A test
// that uses one calls needDebianImage.
var debianImages = map[string][]string{
	debianImage: nil,
	// RabbitMQ 3.10 for the cluster scenario (rabbitmq_test.go).
	rabbitImage: {"rabbitmq-server"},
}

// debianImageErrs says why an image of debianImages could not be built.
var debianImageErrs = map[string]error{}

// buildDebianImages builds debianImages concurrently (the script locks
// per tag). A failure does not stop the run: the tests that need the
// image fail with it.
func buildDebianImages() {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for tag, pkgs := range debianImages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
			defer cancel()
			args := append([]string{filepath.Join(moduleRoot, "scripts", "debian-image.sh"), tag}, pkgs...)
			out, err := exec.CommandContext(ctx, "bash", args...).CombinedOutput()
			fmt.Fprintf(os.Stderr, "%s", out)
			if err != nil {
				mu.Lock()
				debianImageErrs[tag] = fmt.Errorf("scripts/debian-image.sh %s: %v\n%s", strings.Join(args[1:], " "), err, out)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// needDebianImage fails the test when TestMain could not build tag.
func needDebianImage(t testing.TB, tag string) {
	t.Helper()
	if err, ok := debianImageErrs[tag]; ok {
		t.Fatalf("the image %s (built from Debian packages by TestMain) is missing: %v", tag, err)
	}
	if _, ok := debianImages[tag]; !ok {
		t.Fatalf("%s is not in debianImages (harness_test.go)", tag)
	}
}

// findModuleRoot walks up from the working directory (the e2e package
// directory under go test) to the directory holding go.mod.
func findModuleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod in %s or its parents", wd)
		}
	}
}

// buildFixture compiles e2e/fixture into dir and builds fixtureImage from
// it, unless the engine already has the image with the same source hash.
func buildFixture(dir string) error {
	src := filepath.Join(moduleRoot, "e2e", "fixture")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fixtureBin = filepath.Join(dir, "fixture")
	env := []string{"CGO_ENABLED=0", "GOOS=linux"}
	if out, err := run(context.Background(), moduleRoot, env, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", fixtureBin, "./e2e/fixture"); err != nil {
		return fmt.Errorf("go build ./e2e/fixture: %v\n%s", err, out)
	}
	df, err := os.ReadFile(filepath.Join(src, "Dockerfile"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), df, 0o644); err != nil {
		return err
	}
	hash, err := fixtureHash(src)
	if err != nil {
		return err
	}
	have, err := run(context.Background(), "", nil, "docker", "image", "inspect", "-f", `{{index .Config.Labels "`+fixtureHashLabel+`"}}`, fixtureImage)
	if err == nil && strings.TrimSpace(have) == hash {
		return nil
	}
	env = []string{"DOCKER_BUILDKIT=0"}
	if out, err := run(context.Background(), "", env, "docker", "build", "-q", "--label", fixtureHashLabel+"="+hash, "-t", fixtureImage, dir); err != nil {
		return fmt.Errorf("docker build: %v\n%s", err, out)
	}
	return nil
}

// fixtureHash hashes the fixture's source files (names and contents) and
// the Go version that compiles them.
func fixtureHash(dir string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00", runtime.Version())
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		return "", err
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(dir, f)
		fmt.Fprintf(h, "%s\x00%d\x00", filepath.ToSlash(rel), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}

// sweep removes every container, network, volume and image left by
// earlier runs: those whose compose project label (images: repository)
// starts with projectPrefix, except the projects of test processes still
// running (see register).
func sweep() error {
	live := liveProjects()
	list := func(args ...string) ([]string, error) {
		out, err := run(context.Background(), "", nil, "docker", args...)
		if err != nil {
			return nil, fmt.Errorf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		var ids []string
		for _, line := range strings.Split(out, "\n") {
			id, project, ok := strings.Cut(strings.TrimSpace(line), " ")
			if ok && strings.HasPrefix(project, projectPrefix) && !live(project) {
				ids = append(ids, id)
			}
		}
		return ids, nil
	}
	var errs []error
	format := `{{.ID}} {{.Label "` + labelProject + `"}}`
	// Agents (background operators) first, so that nothing recreates
	// what is being removed.
	for _, filter := range []string{labelRole + "=agent", labelProject} {
		ids, err := list("ps", "-a", "--filter", "label="+labelProject, "--filter", "label="+filter, "--format", format)
		errs = append(errs, err)
		errs = append(errs, removeContainers(ids))
	}
	ids, err := list("network", "ls", "--filter", "label="+labelProject, "--format", format)
	errs = append(errs, err)
	if len(ids) > 0 {
		out, err := run(context.Background(), "", nil, "docker", append([]string{"network", "rm"}, ids...)...)
		errs = append(errs, annotate(err, out))
	}
	ids, err = list("volume", "ls", "--filter", "label="+labelProject, "--format", `{{.Name}} {{.Label "`+labelProject+`"}}`)
	errs = append(errs, err)
	if len(ids) > 0 {
		out, err := run(context.Background(), "", nil, "docker", append([]string{"volume", "rm", "-f"}, ids...)...)
		errs = append(errs, annotate(err, out))
	}
	// Images built from build sections are named {project}-{service}.
	ids, err = list("images", "--format", "{{.Repository}}:{{.Tag}} {{.Repository}}")
	errs = append(errs, err)
	if len(ids) > 0 {
		out, err := run(context.Background(), "", nil, "docker", append([]string{"rmi", "-f"}, ids...)...)
		errs = append(errs, annotate(err, out))
	}
	return errors.Join(errs...)
}

// anonymousVolume matches the name the engine gives an anonymous volume.
var anonymousVolume = regexp.MustCompile(`^[0-9a-f]{64}$`)

// removeContainers force-removes containers with their anonymous volumes.
// A container that inherited the anonymous volumes of the one it replaced
// mounts them by name, so `docker rm -v` keeps them: those are removed
// explicitly (a volume still in use elsewhere stays).
func removeContainers(ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	ctx := context.Background()
	var vols []string
	out, _ := run(ctx, "", nil, "docker", append([]string{"inspect", "-f", `{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{end}}{{end}}`}, ids...)...)
	for _, v := range strings.Fields(out) {
		if anonymousVolume.MatchString(v) {
			vols = append(vols, v)
		}
	}
	// One at a time: Docker 20.10 can deadlock its network code when
	// several containers leave a network at once (moby/moby#46661), and
	// `docker rm` with several IDs removes them in parallel.
	for _, id := range ids {
		if out, err := run(ctx, "", nil, "docker", "rm", "-f", "-v", id); err != nil {
			return annotate(err, out)
		}
	}
	if len(vols) > 0 {
		run(ctx, "", nil, "docker", append([]string{"volume", "rm"}, vols...)...)
	}
	return nil
}

// registryDir holds one file per project of a running test process,
// named after the project and holding the process's PID, so that the sweep
// of a concurrent `go test` run leaves those projects alone.
var registryDir = filepath.Join(os.TempDir(), "roster-e2e-projects")

// register records that this process owns project name.
func register(name string) {
	if err := os.MkdirAll(registryDir, 0o755); err == nil {
		os.WriteFile(filepath.Join(registryDir, name), []byte(strconv.Itoa(os.Getpid())), 0o644)
	}
}

func unregister(name string) { os.Remove(filepath.Join(registryDir, name)) }

// liveProjects returns a predicate telling whether a project name (or an
// image repository {project}-{service}) belongs to another test process
// that is still running. Registrations of dead processes are dropped.
func liveProjects() func(string) bool {
	var live []string
	entries, _ := os.ReadDir(registryDir)
	for _, e := range entries {
		f := filepath.Join(registryDir, e.Name())
		b, err := os.ReadFile(f)
		pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || perr != nil || pid <= 0 || pid == os.Getpid() {
			os.Remove(f)
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
			live = append(live, e.Name())
		} else {
			os.Remove(f)
		}
	}
	return func(s string) bool {
		for _, p := range live {
			if s == p || strings.HasPrefix(s, p+"-") {
				return true
			}
		}
		return false
	}
}

func annotate(err error, out string) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%v\n%s", err, out)
}

// run runs a command with commandTimeout and returns its combined output.
func run(ctx context.Context, dir string, env []string, name string, args ...string) (string, error) {
	r := execute(ctx, dir, env, name, args...)
	if r.Err != nil {
		return r.Stdout + r.Stderr, r.Err
	}
	return r.Stdout, nil
}

// result is the outcome of one command.
type result struct {
	Cmd    string
	Stdout string
	Stderr string
	// Code is the exit code; -1 when the command did not run or was killed.
	Code int
	// Err is nil exactly when Code is 0.
	Err error
}

func (r result) String() string {
	return fmt.Sprintf("$ %s\nexit code %d (%v)\n--- stdout:\n%s\n--- stderr:\n%s", r.Cmd, r.Code, r.Err, r.Stdout, r.Stderr)
}

// execute runs a command with commandTimeout, env appended to the
// process's environment.
func execute(ctx context.Context, dir string, env []string, name string, args ...string) result {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{Cmd: quoteArgs(append([]string{name}, args...)), Stdout: stdout.String(), Stderr: stderr.String(), Err: err}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		r.Code, r.Err = -1, fmt.Errorf("timed out after %s: %w", commandTimeout, err)
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	default:
		r.Code = -1
	}
	return r
}

func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n\"'$`\\{}*") {
			a = strconv.Quote(a)
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// docker runs the docker CLI and returns its stdout; the test fails when it exits non-zero.
func docker(t testing.TB, args ...string) string {
	t.Helper()
	r := execute(context.Background(), "", nil, "docker", args...)
	if r.Err != nil {
		t.Fatalf("docker failed:\n%s", r)
	}
	return r.Stdout
}

// dockerCompose runs `docker-compose -p NAME -f FILE args...` (compose v1)
// in the project directory and returns its result; it does not judge the
// exit code.
func dockerCompose(t testing.TB, p *project, args ...string) result {
	t.Helper()
	full := append([]string{"--ansi", "never", "-p", p.Name, "-f", p.File}, args...)
	r := execute(context.Background(), p.Dir, p.Env, "docker-compose", full...)
	t.Logf("%s -> exit %d", r.Cmd, r.Code)
	return r
}

// mustDockerCompose is dockerCompose failing the test on a non-zero exit.
func mustDockerCompose(t testing.TB, p *project, args ...string) result {
	t.Helper()
	r := dockerCompose(t, p, args...)
	if r.Err != nil {
		t.Fatalf("docker-compose failed:\n%s", r)
	}
	return r
}

// eventually calls fn every 250ms until it returns nil; after timeout the
// test fails with fn's last error.
func eventually(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %s: %v", timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// project is one compose project under test: a copy of a testdata
// directory in a temporary directory, with a unique name.
type project struct {
	t    testing.TB
	Name string // e2e-<test>-<4 hex>
	Dir  string // the copy; cwd of every command
	File string // Dir/compose.yaml
	// Env is appended to the environment of roster and docker-compose
	// (e.g. values the compose file interpolates).
	Env []string
}

// newProject copies testdata/<top-level test name>/ (or dir, when not
// empty) into a temporary directory and names the project uniquely. The
// project's containers, networks, volumes and built images are removed when
// the test ends, whether it passed or not.
func newProject(t *testing.T, dir string) *project {
	t.Helper()
	top, _, _ := strings.Cut(t.Name(), "/")
	if dir == "" {
		dir = filepath.Join("testdata", top)
	}
	tmp := t.TempDir()
	if err := os.CopyFS(tmp, os.DirFS(dir)); err != nil {
		t.Fatalf("copying %s: %v", dir, err)
	}
	p := &project{t: t, Name: projectName(top), Dir: tmp, File: filepath.Join(tmp, "compose.yaml")}
	if _, err := os.Stat(p.File); err != nil {
		t.Fatalf("%s has no compose.yaml: %v", dir, err)
	}
	t.Logf("project %s in %s", p.Name, p.Dir)
	register(p.Name)
	t.Cleanup(func() {
		if err := removeProject(p.Name); err != nil {
			t.Errorf("removing project %s: %v", p.Name, err)
		}
		unregister(p.Name)
	})
	return p
}

// projectName is e2e-<short lowercased test name>-<4 random hex digits>.
func projectName(test string) string {
	short := strings.ToLower(strings.TrimPrefix(test, "Test"))
	short = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, short)
	if len(short) > 24 {
		short = short[:24]
	}
	var b [2]byte
	rand.Read(b[:])
	return projectPrefix + short + "-" + hex.EncodeToString(b[:])
}

// removeProject removes everything labelled with the project (agent first,
// then the other containers with their anonymous volumes, networks,
// volumes) and the images built for it, repeating a few times in case an
// operator was still recreating containers.
func removeProject(name string) error {
	ctx := context.Background()
	label := "label=" + labelProject + "=" + name
	ids := func(args ...string) []string {
		out, _ := run(ctx, "", nil, "docker", args...)
		return strings.Fields(out)
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var errs []error
		for _, extra := range []string{"label=" + labelRole + "=agent", label} {
			errs = append(errs, removeContainers(ids("ps", "-aq", "--filter", label, "--filter", extra)))
		}
		if n := ids("network", "ls", "-q", "--filter", label); len(n) > 0 {
			out, err := run(ctx, "", nil, "docker", append([]string{"network", "rm"}, n...)...)
			errs = append(errs, annotate(err, out))
		}
		if v := ids("volume", "ls", "-q", "--filter", label); len(v) > 0 {
			out, err := run(ctx, "", nil, "docker", append([]string{"volume", "rm", "-f"}, v...)...)
			errs = append(errs, annotate(err, out))
		}
		err = errors.Join(errs...)
		if err == nil && len(ids("ps", "-aq", "--filter", label)) == 0 {
			break
		}
	}
	var imgs []string
	for _, line := range strings.Split(mustRun(ctx, "docker", "images", "--format", "{{.Repository}}:{{.Tag}}"), "\n") {
		if strings.HasPrefix(line, name+"-") {
			imgs = append(imgs, line)
		}
	}
	if len(imgs) > 0 {
		out, e := run(ctx, "", nil, "docker", append([]string{"rmi", "-f"}, imgs...)...)
		err = errors.Join(err, annotate(e, out))
	}
	return err
}

func mustRun(ctx context.Context, name string, args ...string) string {
	out, _ := run(ctx, "", nil, name, args...)
	return out
}

// cname is the container name of slot n of service: {project}-{service}-{n}.
func (p *project) cname(service string, n int) string {
	return fmt.Sprintf("%s-%s-%d", p.Name, service, n)
}

// roster runs `roster -p NAME -f FILE args...` in the project directory.
func (p *project) roster(args ...string) result {
	p.t.Helper()
	if rosterBin == "" {
		p.t.Fatalf("no roster binary: %v", rosterBuildErr)
	}
	full := append([]string{"-p", p.Name, "-f", p.File}, args...)
	start := time.Now()
	r := execute(context.Background(), p.Dir, p.Env, rosterBin, full...)
	r.Cmd = quoteArgs(append([]string{"roster"}, full...))
	p.t.Logf("%s -> exit %d (%s)", r.Cmd, r.Code, time.Since(start).Round(time.Millisecond))
	return r
}

// mustRoster is roster failing the test, with both outputs, on a non-zero exit.
func (p *project) mustRoster(args ...string) result {
	p.t.Helper()
	r := p.roster(args...)
	if r.Err != nil {
		p.t.Fatalf("roster failed:\n%s", r)
	}
	return r
}

// writeCompose replaces the project's compose.yaml.
func (p *project) writeCompose(t testing.TB, content string) {
	t.Helper()
	if err := os.WriteFile(p.File, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// editCompose replaces every occurrence of old (which must occur) by new in compose.yaml.
func (p *project) editCompose(t testing.TB, old, new string) {
	t.Helper()
	b, err := os.ReadFile(p.File)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%s does not contain %q:\n%s", p.File, old, b)
	}
	p.writeCompose(t, strings.ReplaceAll(string(b), old, new))
}

// foreground is a `roster up` running in the foreground.
type foreground struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error // exit status, valid after done

	once sync.Once
}

// startForeground starts `roster -p NAME -f FILE args...` (typically "up")
// as a background process with its output captured, stopped with SIGINT
// (then SIGKILL after 10s) when the test ends. Its output is logged when
// the test fails.
func (p *project) startForeground(t testing.TB, args ...string) *foreground {
	t.Helper()
	if rosterBin == "" {
		t.Fatalf("no roster binary: %v", rosterBuildErr)
	}
	full := append([]string{"-p", p.Name, "-f", p.File}, args...)
	f := &foreground{out: &syncBuffer{}, done: make(chan struct{})}
	f.cmd = exec.Command(rosterBin, full...)
	f.cmd.Dir = p.Dir
	f.cmd.Env = append(os.Environ(), p.Env...)
	f.cmd.Stdout, f.cmd.Stderr = f.out, f.out
	if err := f.cmd.Start(); err != nil {
		t.Fatalf("starting roster %s: %v", strings.Join(full, " "), err)
	}
	t.Logf("started in the foreground (pid %d): roster %s", f.cmd.Process.Pid, quoteArgs(full))
	go func() {
		f.err = f.cmd.Wait()
		close(f.done)
	}()
	t.Cleanup(func() {
		f.stop(t)
		if t.Failed() {
			t.Logf("output of the foreground roster:\n%s", f.out.String())
		}
	})
	return f
}

// stop sends SIGINT and waits for the process to exit, killing it after
// 10s. It returns the exit status (nil for exit code 0) and is idempotent.
func (f *foreground) stop(t testing.TB) error {
	t.Helper()
	f.once.Do(func() {
		select {
		case <-f.done:
			t.Logf("foreground roster had already exited: %v", f.err)
			return
		default:
		}
		f.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-f.done:
			t.Logf("foreground roster exited after SIGINT: %v", f.err)
		case <-time.After(10 * time.Second):
			f.cmd.Process.Kill()
			<-f.done
			t.Errorf("foreground roster did not exit within 10s of SIGINT; killed")
		}
	})
	<-f.done
	return f.err
}

// exited reports whether the process has exited.
func (f *foreground) exited() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// output is everything the process printed so far.
func (f *foreground) output() string { return f.out.String() }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// ctr is one container as the engine reports it.
type ctr struct {
	ID         string
	Name       string
	Hostname   string // .Config.Hostname
	Service    string // compose service label
	Slot       int    // dev.roster.slot label, else container-number; 0 when neither
	State      string // created, running, exited, ...
	Health     string // "", starting, healthy, unhealthy
	ExitCode   int
	Env        []string
	Labels     map[string]string
	Image      string // image ID
	Created    time.Time
	StartedAt  time.Time
	FinishedAt time.Time
	IPs        map[string]string // network name -> IPv4
	Mounts     []mount
}

type mount struct {
	Type        string
	Name        string
	Source      string
	Destination string
}

// env returns the value of the container's env var name.
func (c ctr) env(name string) (string, bool) {
	for _, kv := range c.Env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v, true
		}
	}
	return "", false
}

// ip returns the container's IPv4 address on its first network (by name).
func (c ctr) ip() string {
	nets := make([]string, 0, len(c.IPs))
	for n, ip := range c.IPs {
		if ip != "" {
			nets = append(nets, n)
		}
	}
	sort.Strings(nets)
	if len(nets) == 0 {
		return ""
	}
	return c.IPs[nets[0]]
}

// inspectJSON is the part of `docker inspect` ctr needs.
type inspectJSON struct {
	ID      string `json:"Id"`
	Name    string
	Created time.Time
	Image   string
	Config  struct {
		Hostname string
		Env      []string
		Labels   map[string]string
	}
	State struct {
		Status     string
		ExitCode   int
		StartedAt  time.Time
		FinishedAt time.Time
		Health     *struct{ Status string }
	}
	NetworkSettings struct {
		Networks map[string]struct{ IPAddress string }
	}
	Mounts []mount
}

func (j inspectJSON) ctr() ctr {
	c := ctr{
		ID: j.ID, Name: strings.TrimPrefix(j.Name, "/"), Hostname: j.Config.Hostname,
		Service: j.Config.Labels[labelService], State: j.State.Status, ExitCode: j.State.ExitCode,
		Env: j.Config.Env, Labels: j.Config.Labels, Image: j.Image, Created: j.Created,
		StartedAt: j.State.StartedAt, FinishedAt: j.State.FinishedAt,
		IPs: map[string]string{}, Mounts: j.Mounts,
	}
	if j.State.Health != nil {
		c.Health = j.State.Health.Status
	}
	for _, l := range []string{labelSlot, labelNumber} {
		if n, err := strconv.Atoi(j.Config.Labels[l]); err == nil {
			c.Slot = n
			break
		}
	}
	for n, s := range j.NetworkSettings.Networks {
		c.IPs[n] = s.IPAddress
	}
	return c
}

// containers lists every container of the project (all states, the agent
// included), sorted by service and slot.
func (p *project) containers(t testing.TB) []ctr {
	t.Helper()
	var last result
	for attempt := 0; attempt < 5; attempt++ {
		ids := strings.Fields(docker(t, "ps", "-aq", "--no-trunc", "--filter", "label="+labelProject+"="+p.Name))
		if len(ids) == 0 {
			return nil
		}
		// A container removed between ps and inspect fails the inspect: list again.
		last = execute(context.Background(), "", nil, "docker", append([]string{"inspect"}, ids...)...)
		if last.Err != nil {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		var js []inspectJSON
		if err := json.Unmarshal([]byte(last.Stdout), &js); err != nil {
			t.Fatalf("decoding docker inspect: %v", err)
		}
		out := make([]ctr, len(js))
		for i, j := range js {
			out[i] = j.ctr()
		}
		sort.Slice(out, func(i, j int) bool {
			if out[i].Service != out[j].Service {
				return out[i].Service < out[j].Service
			}
			if out[i].Slot != out[j].Slot {
				return out[i].Slot < out[j].Slot
			}
			return out[i].Name < out[j].Name
		})
		return out
	}
	t.Fatalf("listing the containers of %s:\n%s", p.Name, last)
	return nil
}

// replicas lists the project's containers without the background
// operator (agent), sorted by service and slot.
func (p *project) replicas(t testing.TB) []ctr {
	t.Helper()
	var out []ctr
	for _, c := range p.containers(t) {
		if c.Labels[labelRole] != "agent" {
			out = append(out, c)
		}
	}
	return out
}

// serviceContainers are the containers of one service, sorted by slot.
func (p *project) serviceContainers(t testing.TB, service string) []ctr {
	t.Helper()
	var out []ctr
	for _, c := range p.replicas(t) {
		if c.Service == service {
			out = append(out, c)
		}
	}
	return out
}

// container returns the container named name (or with that ID), and
// whether it exists.
func (p *project) container(t testing.TB, name string) (ctr, bool) {
	t.Helper()
	for _, c := range p.containers(t) {
		if c.Name == name || c.ID == name {
			return c, true
		}
	}
	return ctr{}, false
}

// byName indexes containers by name.
func byName(cs []ctr) map[string]ctr {
	m := make(map[string]ctr, len(cs))
	for _, c := range cs {
		m[c.Name] = c
	}
	return m
}

// describe prints containers one per line, for failure messages.
func describe(cs []ctr) string {
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "  %s id=%.12s host=%s service=%s slot=%d state=%s health=%s\n", c.Name, c.ID, c.Hostname, c.Service, c.Slot, c.State, c.Health)
	}
	if b.Len() == 0 {
		return "  (no containers)\n"
	}
	return b.String()
}

// waitRunning waits until the service has exactly the given slots, all running.
func (p *project) waitRunning(t testing.TB, timeout time.Duration, service string, slots ...int) []ctr {
	t.Helper()
	var cs []ctr
	eventually(t, timeout, func() error {
		cs = p.serviceContainers(t, service)
		if len(cs) != len(slots) {
			return fmt.Errorf("want %d containers of %s, have:\n%s", len(slots), service, describe(cs))
		}
		for i, c := range cs {
			if c.Slot != slots[i] || c.Name != p.cname(service, slots[i]) || c.State != "running" {
				return fmt.Errorf("want slots %v of %s running, have:\n%s", slots, service, describe(cs))
			}
		}
		return nil
	})
	return cs
}

// httpGet GETs http://<container IP>:8080<path> from the host (bridge IPs
// are reachable from the host on Linux), retrying for up to 30s until the
// answer is 200, and returns the body.
func (p *project) httpGet(t testing.TB, container, path string) string {
	t.Helper()
	var body string
	eventually(t, 30*time.Second, func() error {
		code, b, err := p.tryHTTPGet(t, container, path)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("GET %s on %s: %d %s", path, container, code, strings.TrimSpace(b))
		}
		body = b
		return nil
	})
	return body
}

// tryHTTPGet is one GET of path on the container's fixture server.
func (p *project) tryHTTPGet(t testing.TB, container, path string) (int, string, error) {
	t.Helper()
	c, ok := p.container(t, container)
	if !ok {
		return 0, "", fmt.Errorf("no container %s", container)
	}
	ip := c.ip()
	if ip == "" {
		return 0, "", fmt.Errorf("container %s (%s) has no IP address", container, c.State)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + net.JoinHostPort(ip, "8080") + path)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s on %s: %w", path, container, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// psEntry is one element of `roster ps --format json`.
type psEntry struct {
	Service  string            `json:"service"`
	Slot     int               `json:"slot"`
	Name     string            `json:"name"`
	ID       string            `json:"id"`
	Hostname string            `json:"hostname"`
	State    string            `json:"state"`
	Health   string            `json:"health"`
	Ready    bool              `json:"ready"`
	Drift    bool              `json:"drift"`
	IPs      map[string]string `json:"ips"`
}

// ps runs `roster ps --format json` and decodes it.
func (p *project) ps(t testing.TB) []psEntry {
	t.Helper()
	r := p.mustRoster("ps", "--format", "json")
	var out []psEntry
	if err := json.Unmarshal([]byte(r.Stdout), &out); err != nil {
		t.Fatalf("roster ps --format json is not a JSON array of replicas: %v\n%s", err, r)
	}
	return out
}

// freePort returns a TCP port that is free on 127.0.0.1 right now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// copyFile copies src to dst with mode.
func copyFile(t testing.TB, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}
