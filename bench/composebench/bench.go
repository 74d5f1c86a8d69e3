package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	mdns "github.com/miekg/dns"
)

const (
	projectLabel = "com.docker.compose.project"
	serviceLabel = "com.docker.compose.service"
	slotLabel    = "com.docker.compose.container-number"
	benchLabel   = "dev.roster.bench" // objects the bench creates outside projects
	prefix       = "bench-"           // every project and object name
)

type bench struct {
	c      config
	docker *client.Client
}

func newBench(ctx context.Context, c config) (*bench, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := cli.Ping(pctx); err != nil {
		return nil, fmt.Errorf("docker engine: %w", err)
	}
	return &bench{c: c, docker: cli}, nil
}

func (b *bench) close() { b.docker.Close() }

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "composebench: "+format+"\n", args...)
}

// --- tools -----------------------------------------------------------------

// tool is one command under test.
type tool struct {
	Name    string // in the tables
	Short   string // in project names
	bin     string
	compose bool // a docker compose CLI (v1 or v2)
	agent   bool // roster with its agent (`up -d`), else `up -d --no-agent`
}

func (t *tool) roster() bool { return !t.compose }

// project is bench-<suite>-<short>.
func (t *tool) project(suite string) string { return prefix + suite + "-" + t.Short }

// upArgs is the `up -d` of the tool for n replicas of web. Compose v1
// ignores deploy.replicas, so both compose tools get --scale web=N (on
// every up: without it v1 would scale back to 1).
func (t *tool) upArgs(project, file string, scale map[string]int) []string {
	a := []string{t.bin, "-p", project, "-f", file, "up", "-d"}
	switch {
	case t.compose:
		for _, s := range sortedKeys(scale) {
			a = append(a, "--scale", s+"="+strconv.Itoa(scale[s]))
		}
	case !t.agent:
		a = append(a, "--no-agent")
	}
	return a
}

func (t *tool) downArgs(project, file string) []string {
	return []string{t.bin, "-p", project, "-f", file, "down", "-v"}
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

var (
	toolRoster = tool{Name: "roster `up -d --no-agent`", Short: "r"}
	toolAgent  = tool{Name: "roster `up -d` (with the agent)", Short: "ra", agent: true}
	toolV1     = tool{Name: "docker-compose v1 `up -d --scale`", Short: "c1", compose: true}
	toolV2     = tool{Name: "docker compose v2 `up -d --scale`", Short: "c2", compose: true}
)

// tools returns the tools asked for that are available, and a note for
// each missing one.
func (b *bench) tools(want ...tool) (ts []*tool, missing []string) {
	for _, t := range want {
		t := t
		switch t.Short {
		case "c1":
			if b.c.compose1 == "" {
				missing = append(missing, "docker-compose v1: not installed")
				continue
			}
			t.bin = b.c.compose1
		case "c2":
			if b.c.compose2 == "" {
				missing = append(missing, "compose v2: could not be built here because "+b.c.compose2Err)
				continue
			}
			t.bin = b.c.compose2
			if b.c.compose2Version != "" {
				t.Name = "docker compose " + b.c.compose2Version + " `up -d --scale`"
			}
		default:
			t.bin = b.c.roster
		}
		ts = append(ts, &t)
	}
	return ts, missing
}

// rotate returns xs rotated left by i (round i starts with a different
// tool, so slow phases of the machine do not always hit the same one).
func rotate[T any](xs []T, i int) []T {
	if len(xs) == 0 {
		return xs
	}
	i %= len(xs)
	return append(slices.Clone(xs[i:]), xs[:i]...)
}

// --- commands ---------------------------------------------------------------

// cmdResult is a finished command.
type cmdResult struct {
	wall time.Duration
	out  string
}

// exec runs argv in dir with extra environment, at most timeout, and
// returns its wall time (from start to exit). The whole process group is
// killed on timeout or cancellation.
func (b *bench) exec(ctx context.Context, timeout time.Duration, dir string, env []string, argv ...string) (cmdResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	t0 := time.Now()
	err := cmd.Run()
	r := cmdResult{wall: time.Since(t0), out: out.String()}
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("timed out after %s", timeout)
		}
		return r, fmt.Errorf("%s: %v\n%s", strings.Join(short(argv), " "), err, tail(r.out, 15))
	}
	return r, nil
}

// short drops the directories of the binary for messages.
func short(argv []string) []string {
	a := slices.Clone(argv)
	a[0] = filepath.Base(a[0])
	return a
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// --- engine helpers ---------------------------------------------------------

// containers lists the project's containers (all states); service "" for
// every service.
func (b *bench) containers(ctx context.Context, project, service string) ([]container.Summary, error) {
	f := filters.NewArgs(filters.Arg("label", projectLabel+"="+project))
	if service != "" {
		f.Add("label", serviceLabel+"="+service)
	}
	return b.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
}

// slots returns slot -> running container of the service.
func (b *bench) runningSlots(ctx context.Context, project, service string) (map[int]container.Summary, error) {
	cs, err := b.containers(ctx, project, service)
	if err != nil {
		return nil, err
	}
	out := map[int]container.Summary{}
	for _, c := range cs {
		if c.State != "running" {
			continue
		}
		n, _ := strconv.Atoi(c.Labels[slotLabel])
		out[n] = c
	}
	return out, nil
}

// waitRunning waits until exactly n containers of the service run, with
// slots 1..n (at most timeout).
func (b *bench) waitRunning(ctx context.Context, project, service string, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		cs, err := b.containers(ctx, project, service)
		if err != nil {
			return err
		}
		running, slots := 0, map[int]bool{}
		for _, c := range cs {
			if c.State == "running" {
				running++
				s, _ := strconv.Atoi(c.Labels[slotLabel])
				slots[s] = true
			}
		}
		ok := running == n && len(cs) == n
		for i := 1; ok && i <= n; i++ {
			ok = slots[i]
		}
		if ok {
			return nil
		}
		last = fmt.Sprintf("%d containers, %d running", len(cs), running)
		if time.Now().After(deadline) {
			return fmt.Errorf("project %s: want %d running %s containers in slots 1..%d, have %s after %s", project, n, service, n, last, timeout)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// containerIP is the container's address on its first network.
func (b *bench) containerIP(ctx context.Context, name string) (id, ip string, running bool, err error) {
	ci, err := b.docker.ContainerInspect(ctx, name)
	if err != nil {
		return "", "", false, err
	}
	if ci.NetworkSettings != nil {
		for _, nw := range sortedNets(ci.NetworkSettings.Networks) {
			if nw.IPAddress != "" {
				ip = nw.IPAddress
				break
			}
		}
	}
	return ci.ID, ip, ci.State != nil && ci.State.Running, nil
}

func sortedNets(m map[string]*network.EndpointSettings) []*network.EndpointSettings {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]*network.EndpointSettings, 0, len(keys))
	for _, k := range keys {
		out = append(out, m[k])
	}
	return out
}

// sweep removes every container, network and volume of a bench-* project
// or named bench-* or labelled dev.roster.bench (bounded: one pass, each
// call with the context's deadline).
func (b *bench) sweep(ctx context.Context) error {
	ours := func(name string, labels map[string]string) bool {
		_, labelled := labels[benchLabel]
		return labelled || strings.HasPrefix(labels[projectLabel], prefix) || strings.HasPrefix(strings.TrimPrefix(name, "/"), prefix)
	}
	cs, err := b.docker.ContainerList(ctx, container.ListOptions{All: true})
	if err != nil {
		return err
	}
	// One at a time: concurrent removals on one network are what trips
	// the engine's libnetwork races (see bench/README.md).
	var errs []error
	n := 0
	for _, c := range cs {
		name := ""
		if len(c.Names) > 0 {
			name = c.Names[0]
		}
		if !ours(name, c.Labels) {
			continue
		}
		n++
		if err := b.docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !client.IsErrNotFound(err) {
			errs = append(errs, err)
		}
	}
	nets, err := b.docker.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		return err
	}
	for _, nw := range nets {
		if !ours(nw.Name, nw.Labels) {
			continue
		}
		n++
		err := b.docker.NetworkRemove(ctx, nw.ID)
		if err == nil || client.IsErrNotFound(err) {
			continue
		}
		// Endpoints left connected: disconnect them by force and retry.
		if ni, ierr := b.docker.NetworkInspect(ctx, nw.ID, network.InspectOptions{}); ierr == nil {
			for id := range ni.Containers {
				_ = b.docker.NetworkDisconnect(ctx, nw.ID, id, true)
			}
			if err = b.docker.NetworkRemove(ctx, nw.ID); err == nil {
				continue
			}
		}
		// Docker 20.10 sometimes keeps a stale endpoint with no container
		// after concurrent container removals ("has active endpoints");
		// only a daemon restart clears it. It does not stop the next
		// runs (they reuse the network), so it is reported, not fatal.
		if strings.Contains(err.Error(), "active endpoints") {
			b.logf("warning: network %s cannot be removed: %v (a stale endpoint in the engine; it goes away when dockerd restarts)", nw.Name, err)
			continue
		}
		errs = append(errs, err)
	}
	vols, err := b.docker.VolumeList(ctx, volume.ListOptions{})
	if err != nil {
		return err
	}
	for _, v := range vols.Volumes {
		if ours(v.Name, v.Labels) {
			n++
			if err := b.docker.VolumeRemove(ctx, v.Name, true); err != nil && !client.IsErrNotFound(err) {
				errs = append(errs, err)
			}
		}
	}
	if n > 0 {
		b.logf("swept %d bench objects", n)
	}
	return errors.Join(errs...)
}

// --- projects ----------------------------------------------------------------

// projectDir creates (or empties) WORK/<project> and returns it.
func (b *bench) projectDir(project string) (string, error) {
	dir := filepath.Join(b.c.work, project)
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	return dir, os.MkdirAll(dir, 0o755)
}

// webCompose is the compose file of the simple suites: n replicas of the
// fixture with one environment value (changed to force a recreate).
func (b *bench) webCompose(n int, gen string, extra string) string {
	return fmt.Sprintf(`# generated by bench/composebench
services:
  web:
    image: %s
    environment:
      GEN: %q
    deploy:
      replicas: %d
%s`, b.c.image, gen, n, extra)
}

// upProject writes the compose file and brings the project up with t
// (untimed setup), checking n running web replicas.
// It returns the wall time of the up command.
func (b *bench) upProject(ctx context.Context, t *tool, project, dir, content string, n int) (time.Duration, error) {
	file := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		return 0, err
	}
	r, err := b.exec(ctx, upTimeout(n), dir, nil, t.upArgs(project, file, map[string]int{"web": n})...)
	if err != nil {
		return 0, err
	}
	return r.wall, b.waitRunning(ctx, project, "web", n, 30*time.Second)
}

// down removes the project with its own tool, then sweeps what is left of
// it (untimed).
func (b *bench) down(ctx context.Context, t *tool, project, dir string) error {
	file := filepath.Join(dir, "compose.yaml")
	_, err := b.exec(ctx, 5*time.Minute, dir, nil, t.downArgs(project, file)...)
	if err != nil {
		b.logf("down %s: %v", project, err)
	}
	return b.removeProject(ctx, project)
}

// removeProject force-removes whatever is left of a project.
func (b *bench) removeProject(ctx context.Context, project string) error {
	cs, err := b.containers(ctx, project, "")
	if err != nil {
		return err
	}
	for _, c := range cs {
		if err := b.docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !client.IsErrNotFound(err) {
			return err
		}
	}
	nets, err := b.docker.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", projectLabel+"="+project))})
	if err != nil {
		return err
	}
	for _, nw := range nets {
		if err := b.docker.NetworkRemove(ctx, nw.ID); err != nil && !client.IsErrNotFound(err) {
			return err
		}
	}
	return nil
}

// upTimeout bounds an up of n containers (0.5 s each here, sequentially,
// plus a margin for a loaded machine).
func upTimeout(n int) time.Duration { return 2*time.Minute + time.Duration(n)*3*time.Second }

// --- roster's DNS -------------------------------------------------------------

// rosterDNS returns the zone and the first server of `roster dns --format json`.
func (b *bench) rosterDNS(ctx context.Context, project, dir string) (zone, server string, err error) {
	file := filepath.Join(dir, "compose.yaml")
	r, err := b.exec(ctx, 30*time.Second, dir, nil, b.c.roster, "-p", project, "-f", file, "dns", "--format", "json")
	if err != nil {
		return "", "", err
	}
	var v struct {
		Zone    string   `json:"zone"`
		Servers []string `json:"servers"`
	}
	// roster may print warnings before the JSON on the same stream.
	js := r.out
	if i := strings.Index(js, "{"); i > 0 {
		js = js[i:]
	}
	if err := json.Unmarshal([]byte(js), &v); err != nil {
		return "", "", fmt.Errorf("roster dns --format json: %v\n%s", err, tail(r.out, 5))
	}
	if len(v.Servers) == 0 {
		return "", "", fmt.Errorf("roster dns --format json: no server (is the agent running?)")
	}
	return v.Zone, v.Servers[0], nil
}

// lookupA asks server for name's A records once (UDP, short timeout).
func lookupA(server, name string, timeout time.Duration) ([]string, int, error) {
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
	c := &mdns.Client{Net: "udp", Timeout: timeout}
	r, _, err := c.Exchange(m, server)
	if err != nil {
		return nil, -1, err
	}
	var ips []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*mdns.A); ok {
			ips = append(ips, a.A.String())
		}
	}
	return ips, r.Rcode, nil
}

// waitDNS waits until server answers name with want (any address when
// want is ""), at most timeout.
func waitDNS(ctx context.Context, server, name, want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		ips, rcode, err := lookupA(server, name, 200*time.Millisecond)
		if err == nil && len(ips) > 0 && (want == "" || slices.Contains(ips, want)) {
			return nil
		}
		last = fmt.Sprintf("%v rcode %d err %v", ips, rcode, err)
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("DNS %s: %s not answered with %q within %s (last: %s)", server, name, want, timeout, last)
}

// --- engine events -------------------------------------------------------------

// eventLog records the container events of a project with the engine's
// timestamps, from the moment it is started.
type eventLog struct {
	mu     sync.Mutex
	events []events.Message
	cancel context.CancelFunc
	errc   chan error
}

func (b *bench) watchEvents(ctx context.Context, project string) (*eventLog, error) {
	ctx, cancel := context.WithCancel(ctx)
	l := &eventLog{cancel: cancel, errc: make(chan error, 1)}
	msgs, errs := b.docker.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", "container"), filters.Arg("label", projectLabel+"="+project))})
	ready := make(chan struct{})
	go func() {
		close(ready)
		for {
			select {
			case m := <-msgs:
				l.mu.Lock()
				l.events = append(l.events, m)
				l.mu.Unlock()
			case err := <-errs:
				if ctx.Err() == nil {
					l.errc <- err
				}
				return
			}
		}
	}()
	<-ready
	// The engine registers the subscription when it answers; a short
	// pause makes sure it is in place before the caller acts.
	if err := sleep(ctx, 50*time.Millisecond); err != nil {
		cancel()
		return nil, err
	}
	return l, nil
}

func (l *eventLog) stop() { l.cancel() }

// find waits (at most timeout) for an event of the named container with
// the action and returns its engine time.
func (l *eventLog) find(ctx context.Context, name, action string, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		l.mu.Lock()
		for _, m := range l.events {
			if string(m.Action) == action && m.Actor.Attributes["name"] == name {
				l.mu.Unlock()
				return time.Unix(0, m.TimeNano), nil
			}
		}
		l.mu.Unlock()
		select {
		case err := <-l.errc:
			return time.Time{}, fmt.Errorf("engine events: %w", err)
		default:
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("no %s event for %s within %s", action, name, timeout)
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return time.Time{}, err
		}
	}
}

// --- sockcount ------------------------------------------------------------------

// apiCounts is bench/sockcount's JSON.
type apiCounts struct {
	Total    int            `json:"total"`
	Writes   int            `json:"writes"`
	Requests map[string]int `json:"requests"`
}

// counted runs argv with DOCKER_HOST pointing at a fresh bench/sockcount
// proxy and returns the engine API requests it made.
func (b *bench) counted(ctx context.Context, timeout time.Duration, dir string, argv ...string) (apiCounts, error) {
	sockDir, err := os.MkdirTemp(b.c.work, "sock-")
	if err != nil {
		return apiCounts{}, err
	}
	defer os.RemoveAll(sockDir)
	sock, out := filepath.Join(sockDir, "docker.sock"), filepath.Join(sockDir, "counts.json")
	pctx, cancel := context.WithTimeout(ctx, timeout+30*time.Second)
	defer cancel()
	proxy := exec.CommandContext(pctx, b.c.sockcount, "-listen", sock, "-out", out)
	stdout, err := proxy.StdoutPipe()
	if err != nil {
		return apiCounts{}, err
	}
	proxy.Stderr = os.Stderr
	if err := proxy.Start(); err != nil {
		return apiCounts{}, err
	}
	exited := make(chan error, 1)
	go func() { exited <- proxy.Wait() }()
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		_ = proxy.Process.Kill()
		<-exited
		return apiCounts{}, fmt.Errorf("sockcount did not start (%q)", line)
	}
	_, runErr := b.exec(ctx, timeout, dir, []string{"DOCKER_HOST=unix://" + sock}, argv...)
	_ = proxy.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = proxy.Process.Kill()
		<-exited
	}
	if runErr != nil {
		return apiCounts{}, runErr
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		return apiCounts{}, fmt.Errorf("sockcount wrote no counts: %w", err)
	}
	var c apiCounts
	return c, json.Unmarshal(raw, &c)
}

// --- numbers ----------------------------------------------------------------------

var nan = math.NaN()

func secs(d time.Duration) float64 { return d.Seconds() }
func ms(d time.Duration) float64   { return float64(d) / float64(time.Millisecond) }

// failures describes the failed runs of a figure (empty when none).
type failures struct {
	n     int
	first string
}

func (f *failures) add(err error) {
	if f.n == 0 {
		f.first = strings.SplitN(err.Error(), "\n", 2)[0]
	}
	f.n++
}

func (f failures) String() string {
	if f.n == 0 {
		return ""
	}
	return fmt.Sprintf("%d failed (first: %s)", f.n, f.first)
}
