package engine

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"github.com/roster-dev/roster/naming"
	"github.com/roster-dev/roster/reconciler"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func tarNames(t *testing.T, r io.ReadCloser) map[string]string {
	t.Helper()
	defer r.Close()
	out := map[string]string{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out[strings.TrimSuffix(h.Name, "/")] = string(b)
	}
}

func TestBuildContextDockerignore(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"Dockerfile":      "FROM scratch\n",
		".dockerignore":   "*.log\nsecret/\nDockerfile\n.dockerignore\n",
		"app.txt":         "app",
		"debug.log":       "noise",
		"secret/key":      "k",
		"sub/keep.txt":    "keep",
		"docker/Alt.file": "FROM scratch\n",
	})
	r, df, err := buildContext(dir, "", "")
	if err != nil {
		t.Fatal(err)
	}
	names := tarNames(t, r)
	eq(t, "dockerfile", df, "Dockerfile")
	for _, want := range []string{"Dockerfile", ".dockerignore", "app.txt", "sub/keep.txt"} {
		if _, ok := names[want]; !ok {
			t.Errorf("%s missing from the context (have %v)", want, keys(names))
		}
	}
	for _, gone := range []string{"debug.log", "secret/key", "secret"} {
		if _, ok := names[gone]; ok {
			t.Errorf("%s must be excluded by .dockerignore", gone)
		}
	}

	// a Dockerfile in a subdirectory, given absolute
	r, df, err = buildContext(dir, filepath.Join(dir, "docker/Alt.file"), "")
	if err != nil {
		t.Fatal(err)
	}
	tarNames(t, r)
	eq(t, "relative dockerfile", df, "docker/Alt.file")

	// an inline Dockerfile is added to the context
	r, df, err = buildContext(dir, "", "FROM scratch\nLABEL x=y\n")
	if err != nil {
		t.Fatal(err)
	}
	names = tarNames(t, r)
	if names[df] != "FROM scratch\nLABEL x=y\n" || names["app.txt"] != "app" {
		t.Errorf("inline Dockerfile %q: got %q, context %v", df, names[df], keys(names))
	}

	if _, _, err := buildContext(dir, "Nope", ""); err == nil || !strings.Contains(err.Error(), "Nope") {
		t.Errorf("missing Dockerfile: %v", err)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestReadStream(t *testing.T) {
	tail, err := readStream(strings.NewReader(`{"stream":"Step 1/2 : FROM scratch\n"}
{"stream":"Step 2/2 : COPY x /x\n"}
{"errorDetail":{"message":"COPY failed: file not found"},"error":"COPY failed: file not found"}
`))
	if err == nil || err.Error() != "COPY failed: file not found" {
		t.Errorf("error: %v", err)
	}
	eq(t, "tail", tail, []string{"Step 1/2 : FROM scratch", "Step 2/2 : COPY x /x"})
	if _, err := readStream(strings.NewReader(`{"status":"ok"}`)); err != nil {
		t.Errorf("clean stream: %v", err)
	}
}

// probe is the program of the test image: it waits for SIGTERM; "check"
// is its healthcheck.
const probe = `package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "check" {
		return
	}
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, os.Interrupt)
	<-c
}
`

// TestDockerEngine runs against the real engine: build a FROM scratch
// image, create networks, a volume and containers, observe them, recreate
// one keeping its anonymous volumes, and clean everything up.
func TestDockerEngine(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d, err := New(ctx)
	if err != nil {
		t.Fatalf("this test needs a Docker engine: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	if v, err := d.ServerVersion(ctx); err != nil || v == "" || d.APIVersion() == "" {
		t.Fatalf("version: %q %q %v", v, d.APIVersion(), err)
	}
	rnd := make([]byte, 4)
	rand.Read(rnd)
	project := "enginetest-" + hex.EncodeToString(rnd)
	imageRef := project + "-probe:test"
	cli := d.Client()
	var anon map[string]string // destination -> anonymous volume
	t.Cleanup(func() {
		ctx := context.Background()
		f := projectFilter(project)
		cs, _ := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
		for _, c := range cs {
			_ = cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		}
		ns, _ := cli.NetworkList(ctx, network.ListOptions{Filters: f})
		for _, n := range ns {
			_ = cli.NetworkRemove(ctx, n.ID)
		}
		vs, _ := cli.VolumeList(ctx, volume.ListOptions{Filters: f})
		for _, v := range vs.Volumes {
			_ = cli.VolumeRemove(ctx, v.Name, true)
		}
		// anonymous volumes carry no project label: remove the test's own
		for _, v := range anon {
			_ = cli.VolumeRemove(ctx, v, true)
		}
		_, _ = cli.ImageRemove(ctx, imageRef, image.RemoveOptions{Force: true, PruneChildren: true})
	})

	// --- build
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"src/main.go":   probe,
		"src/go.mod":    "module probe\n\ngo 1.21\n",
		"Dockerfile":    "FROM scratch\nARG GREETING\nLABEL greeting=$GREETING\nCOPY probe /probe\nVOLUME /image-vol\nENTRYPOINT [\"/probe\"]\n",
		".dockerignore": "src\n",
	})
	gb := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, "probe"), ".")
	gb.Dir = filepath.Join(dir, "src")
	gb.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
	if out, err := gb.CombinedOutput(); err != nil {
		t.Fatalf("go build probe: %v\n%s", err, out)
	}
	hello := "hello"
	err = d.BuildImage(ctx, reconciler.BuildSpec{Service: "probe", Image: imageRef, Dir: dir,
		Build: types.BuildConfig{Context: ".", Args: types.MappingWithEquals{"GREETING": &hello, "UNSET": nil}}})
	if err != nil {
		t.Fatal(err)
	}
	img, err := cli.ImageInspect(ctx, imageRef)
	if err != nil || img.Config.Labels["greeting"] != "hello" {
		t.Fatalf("built image: labels %v, %v", img.Config, err)
	}
	writeFiles(t, dir, map[string]string{"Bad.dockerfile": "FROM scratch\nCOPY nothing-here /x\n"})
	err = d.BuildImage(ctx, reconciler.BuildSpec{Service: "web", Image: project + "-bad:test", Dir: dir, Build: types.BuildConfig{Context: dir, Dockerfile: "Bad.dockerfile"}})
	var be *BuildError
	if !errors.As(err, &be) || !strings.HasPrefix(err.Error(), "build image "+project+"-bad:test for service web: ") || !strings.Contains(err.Error(), "nothing-here") {
		t.Errorf("failing build: %v", err)
	}

	// --- pull with no registry
	pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
	err = d.PullImage(pctx, "127.0.0.1:1/none:1")
	pcancel()
	if err == nil || !strings.Contains(err.Error(), `pull image "127.0.0.1:1/none:1"`) || !strings.Contains(err.Error(), "docker load") {
		t.Errorf("pull: %v", err)
	}

	// --- networks and volume
	for _, key := range []string{"default", "back"} {
		spec := reconciler.NetworkSpec{Name: project + "_" + key, Key: key, Labels: naming.NetworkLabels(project, key),
			Config: types.NetworkConfig{Labels: types.Labels{"mine": "yes"}}}
		if key == "back" {
			spec.Config.Ipam.Config = []*types.IPAMPool{{Subnet: "10.231.0.0/24", Gateway: "10.231.0.1"}}
			spec.Config.Internal = true
		}
		if err := d.CreateNetwork(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.CreateVolume(ctx, reconciler.VolumeSpec{Name: project + "_data", Key: "data", Labels: naming.VolumeLabels(project, "data")}); err != nil {
		t.Fatal(err)
	}

	// --- events
	ectx, ecancel := context.WithCancel(ctx)
	evs, errc := d.Events(ectx, project)

	// --- container on two networks
	p := load(t, `
name: x
services:
  probe:
    image: x
    healthcheck:
      test: ["CMD", "/probe", "check"]
      interval: 1s
    volumes:
      - data:/data
      - /anon
    networks:
      default: {}
      back:
        ipv4_address: 10.231.0.50
        aliases: [prober]
    stop_grace_period: 3s
networks:
  back: {}
volumes:
  data: {}
`)
	p.Name = project
	for k, n := range p.Networks {
		n.Name = project + "_" + k
		p.Networks[k] = n
	}
	for k, v := range p.Volumes {
		v.Name = project + "_" + k
		p.Volumes[k] = v
	}
	spec := reconciler.ContainerSpec{Project: p, Service: p.Services["probe"], Name: naming.ContainerName(project, "probe", 1),
		Hostname: "probe_1", Slot: 1, Image: imageRef,
		Labels: naming.ContainerLabels(project, "probe", 1, "probe_1", "h1", dir, nil)}
	id, err := d.CreateContainer(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	ins, err := cli.ContainerInspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "hostname", ins.Config.Hostname, "probe_1")
	eq(t, "stop timeout", *ins.Config.StopTimeout, 3)
	if ep := ins.NetworkSettings.Networks[project+"_back"]; ep == nil || ep.IPAddress != "10.231.0.50" || !contains(ep.Aliases, "prober") || !contains(ep.Aliases, "probe_1") {
		t.Errorf("back endpoint: %+v", ep)
	}
	anon = anonymousVolumes(ins.Mounts)
	if len(anon) != 2 || anon["/anon"] == "" || anon["/image-vol"] == "" {
		t.Fatalf("anonymous volumes: %v", anon)
	}

	obs, err := d.Observe(ctx, project, []string{imageRef, imageRef, "nope.invalid/none:1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(obs.Containers) != 1 || len(obs.Networks) != 2 || len(obs.Volumes) != 1 || len(obs.Images) != 1 || obs.Images[imageRef] != img.ID {
		t.Fatalf("observed: %+v", obs)
	}
	oc := obs.Containers[0]
	if oc.Name != spec.Name || oc.Service != "probe" || oc.Slot != 1 || oc.Hostname != "probe_1" || oc.ConfigHash != "h1" ||
		oc.State != "running" || oc.IPs[project+"_back"] != "10.231.0.50" || oc.IPs[project+"_default"] == "" || oc.ImageID != img.ID {
		t.Errorf("observed container: %+v", oc)
	}
	for _, n := range obs.Networks {
		if n.Name == project+"_back" && (len(n.Gateways) != 1 || n.Gateways[0] != "10.231.0.1" || n.Labels["mine"] != "yes") {
			t.Errorf("observed network: %+v", n)
		}
	}
	// health reaches healthy from the Status text
	deadline := time.Now().Add(30 * time.Second)
	for oc.Health != "healthy" && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		obs, err = d.Observe(ctx, project, nil)
		if err != nil || len(obs.Containers) != 1 {
			t.Fatal(obs, err)
		}
		oc = obs.Containers[0]
	}
	eq(t, "health", oc.Health, "healthy")

	// --- recreate keeping the anonymous volumes (as the reconciler does:
	// stop, rename away, create with Inherit, remove the old one)
	timeout := 2 * time.Second
	if err := d.StopContainer(ctx, id, &timeout); err != nil {
		t.Fatal(err)
	}
	if err := d.RenameContainer(ctx, id, spec.Name+"-old"); err != nil {
		t.Fatal(err)
	}
	spec.Inherit = id
	id2, err := d.CreateContainer(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.RemoveContainer(ctx, id, false); err != nil {
		t.Fatal(err)
	}
	ins2, err := cli.ContainerInspect(ctx, id2)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "inherited anonymous volumes", anonymousVolumes(ins2.Mounts), anon)
	if err := d.RemoveContainer(ctx, id2, true); err != nil {
		t.Fatal(err)
	}
	if err := d.RemoveContainer(ctx, id2, true); err != nil {
		t.Errorf("removing a missing container: %v", err)
	}
	for _, v := range anon {
		if _, err := cli.VolumeInspect(ctx, v); err == nil {
			t.Errorf("anonymous volume %s outlived its container", v)
		}
	}

	// --- events seen: create, start, health_status, die, destroy of slot 1
	seen := map[string]bool{}
	timer := time.After(10 * time.Second)
wait:
	for !(seen["create"] && seen["start"] && seen["health_status"] && seen["destroy"]) {
		select {
		case ev, ok := <-evs:
			if !ok {
				break wait
			}
			if ev.Service != "probe" || ev.Slot != 1 || ev.Container == "" {
				t.Errorf("event: %+v", ev)
			}
			seen[ev.Action] = true
		case <-timer:
			break wait
		}
	}
	if !(seen["create"] && seen["start"] && seen["health_status"] && seen["destroy"]) {
		t.Errorf("events seen: %v", seen)
	}
	ecancel()
	for range evs {
	}
	if err, ok := <-errc; ok && err != nil {
		t.Errorf("events after cancel: %v", err)
	}

	// --- remove networks and volume, twice
	for i := 0; i < 2; i++ {
		for _, n := range []string{project + "_default", project + "_back"} {
			if err := d.RemoveNetwork(ctx, n); err != nil {
				t.Error(err)
			}
		}
		if err := d.RemoveVolume(ctx, project+"_data"); err != nil {
			t.Error(err)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestNewUnreachable(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := New(ctx)
	if err == nil || !strings.HasPrefix(err.Error(), "cannot reach the Docker engine at unix:///nonexistent/docker.sock: ") ||
		!strings.HasSuffix(err.Error(), "(is the daemon running? is DOCKER_HOST right?)") {
		t.Errorf("error: %v", err)
	}
	if !client.IsErrConnectionFailed(err) {
		t.Errorf("the cause must stay reachable: %#v", err)
	}
}
