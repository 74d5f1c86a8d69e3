package operator

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/roster-dev/roster/compose"
	"github.com/roster-dev/roster/naming"
	"github.com/roster-dev/roster/reconciler"
)

func project(t *testing.T) *compose.Project {
	t.Helper()
	dir := t.TempDir()
	y := "services:\n  web:\n    image: ${WEB_IMAGE:-fixture:1}\n    deploy: {replicas: 2}\n"
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := compose.Load(context.Background(), compose.Options{Files: []string{filepath.Join(dir, "compose.yaml")}, ProjectName: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func observed(gw string) *reconciler.Observed {
	lbl := func(n string) map[string]string {
		return map[string]string{naming.LabelProject: "demo", naming.LabelService: "web", naming.LabelNumber: n}
	}
	return &reconciler.Observed{
		Networks: []reconciler.Network{{Name: "demo_default", Labels: map[string]string{naming.LabelProject: "demo"}, Gateways: []string{gw}, Subnets: []string{gw + "/32"}}},
		Containers: []reconciler.Container{
			{Name: "demo-web-1", Service: "web", Slot: 1, State: "running", Hostname: "web_1", Labels: lbl("1"), IPs: map[string]string{"demo_default": "10.9.0.2"}},
			{Name: "demo-web-2", Service: "web", Slot: 2, State: "exited", Hostname: "web_2", Labels: lbl("2")},
		},
	}
}

func TestPrepareWritesResolvConfOnce(t *testing.T) {
	p := project(t)
	d, err := Prepare(context.Background(), reconciler.Desired{Project: p}, observed("10.9.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	path := d.ResolvConf["demo_default"]
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "nameserver 10.9.0.1\nnameserver 127.0.0.11\nsearch demo.internal\n") {
		t.Fatalf("resolv.conf:\n%s", b)
	}
	st1, _ := os.Stat(path)
	time.Sleep(10 * time.Millisecond)
	if _, err := Prepare(context.Background(), reconciler.Desired{Project: p}, observed("10.9.0.1")); err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(path)
	if !st1.ModTime().Equal(st2.ModTime()) {
		t.Fatal("unchanged resolv.conf was rewritten")
	}
}

func TestDNSServesFromObservations(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test binds port 53 and needs root (CI runs as root)")
	}
	p := project(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := &DNS{Log: nil}
	d.Log = discard()
	d.SetProject(p)
	d.Start(ctx)
	defer d.Close()
	d.Observed(observed("127.0.0.77"))
	q := func(name string) *mdns.Msg {
		m := new(mdns.Msg)
		m.SetQuestion(name, mdns.TypeA)
		r, _, err := new(mdns.Client).Exchange(m, "127.0.0.77:53")
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := q("web_1.demo.internal."); len(r.Answer) != 1 || !r.Authoritative {
		t.Fatalf("web_1: %v", r)
	}
	if r := q("web.demo.internal."); len(r.Answer) != 1 {
		t.Fatalf("web (one ready of two): %v", r)
	}
	// slot 2 becomes ready: the next observation is served at once
	o := observed("127.0.0.77")
	o.Containers[1].State = "running"
	o.Containers[1].IPs = map[string]string{"demo_default": "10.9.0.3"}
	d.Observed(o)
	if r := q("web.demo.internal."); len(r.Answer) != 2 {
		t.Fatalf("web after swap: %v", r)
	}
}

func TestOperatorLock(t *testing.T) {
	p := project(t)
	unlock, err := TryLockOperator(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TryLockOperator(p); !errors.Is(err, ErrLocked) {
		t.Fatalf("second operator: %v", err)
	}
	if !OperatorRunning(p) {
		t.Fatal("OperatorRunning = false while held")
	}
	unlock()
	if OperatorRunning(p) {
		t.Fatal("OperatorRunning = true after release")
	}
}

func TestAgentSpec(t *testing.T) {
	p := project(t)
	env := []string{"WEB_IMAGE=x:2", "SECRET_TOKEN=hunter2", "COMPOSE_PROFILES=a", "PATH=/bin"}
	a, err := AgentSpec(p, "roster-agent:abc", AgentArgs{Files: p.Files}, env)
	if err != nil {
		t.Fatal(err)
	}
	e := a.Service.Config.Environment
	if e["WEB_IMAGE"] == nil || e["COMPOSE_PROFILES"] == nil || e["SECRET_TOKEN"] != nil || e["PATH"] != nil {
		t.Fatalf("agent env = %v (only referenced and COMPOSE_* variables)", e)
	}
	if a.Service.Config.NetworkMode != "host" || a.Name != "demo-roster-agent" {
		t.Fatalf("agent = %+v", a)
	}
	b, _ := AgentSpec(p, "roster-agent:abc", AgentArgs{Files: p.Files}, env)
	if a.Service.Hash != b.Service.Hash {
		t.Fatal("agent hash is not stable")
	}
	c, _ := AgentSpec(p, "roster-agent:def", AgentArgs{Files: p.Files}, env)
	if a.Service.Hash == c.Service.Hash {
		t.Fatal("a new roster binary must change the agent hash")
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
