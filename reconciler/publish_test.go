package reconciler_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/roster-dev/roster/dns"
	"github.com/roster-dev/roster/naming"
	"github.com/roster-dev/roster/reconciler"
)

func TestDNSReplicas(t *testing.T) {
	p := load(t, `
services:
  web:
    image: fixture:1
    ports: [{name: http, target: 8080}]
    x-roster: {hostname: "{service}-{n}"}
`)
	lbl := func(slot string) map[string]string {
		return map[string]string{naming.LabelProject: "demo", naming.LabelService: "web", naming.LabelNumber: slot}
	}
	o := &reconciler.Observed{Containers: []reconciler.Container{
		{Name: "demo-web-2", Service: "web", Slot: 2, State: "running", Health: "unhealthy", Hostname: "web-2", Labels: lbl("2"),
			IPs: map[string]string{"demo_default": "10.0.0.3"}, Ports: []reconciler.PortBinding{{Private: 8080, Type: "tcp"}}},
		{Name: "demo-web-1", Service: "web", Slot: 1, State: "running", Hostname: "web-1", Labels: lbl("1"),
			IPs: map[string]string{"demo_default": "10.0.0.2"}, Ports: []reconciler.PortBinding{{Private: 8080, Type: "tcp"}}},
		{Name: "abc_demo-web-1", Service: "web", Slot: 1, State: "exited", Labels: lbl("1")}, // renamed aside
		{Name: "demo-roster-agent", Service: "roster-agent", Slot: 1, State: "running", Labels: map[string]string{naming.LabelRole: "agent"}},
	}}
	got := reconciler.DNSReplicas(p, o)
	if len(got) != 2 {
		t.Fatalf("replicas = %+v", got)
	}
	r1 := got[0]
	if r1.Slot != 1 || r1.Hostname != "web-1" || !r1.Ready || !slices.Equal(r1.IPv4, []netip.Addr{netip.MustParseAddr("10.0.0.2")}) ||
		!slices.Contains(r1.Aliases, "demo-web-1") || !slices.Equal(r1.Ports, []dns.Port{{Number: 8080, Proto: "tcp", Name: "http"}}) {
		t.Errorf("slot 1 = %+v", r1)
	}
	if got[1].Ready {
		t.Errorf("an unhealthy replica is not ready: %+v", got[1])
	}
}
