package reconciler

import (
	"net/netip"
	"sort"

	"github.com/roster-dev/roster/compose"
	"github.com/roster-dev/roster/dns"
	"github.com/roster-dev/roster/naming"
	"github.com/roster-dev/roster/render"
)

// Ready is the contract's readiness: running and (no healthcheck or healthy).
func Ready(c Container) bool {
	return c.State == "running" && (c.Health == "" || c.Health == "healthy")
}

// Replicas returns the observed containers that hold a slot of a service
// of the project under its canonical name (not the agent, not one-off
// containers, not a container renamed aside during a recreate), sorted by
// service and slot.
func Replicas(p *compose.Project, o *Observed) []Container {
	var out []Container
	for _, c := range o.Containers {
		if c.OneOff || c.Slot < 1 || c.Labels[naming.LabelRole] == "agent" {
			continue
		}
		svc, ok := p.Service(c.Service)
		if !ok || c.Name != canonicalName(p.Name, svc, c.Slot) {
			continue
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		return out[i].Slot < out[j].Slot
	})
	return out
}

// DNSReplicas converts an observation into the DNS server's data.
func DNSReplicas(p *compose.Project, o *Observed) []dns.Replica {
	var out []dns.Replica
	for _, c := range Replicas(p, o) {
		svc, _ := p.Service(c.Service)
		hostname := c.Hostname
		if hostname == "" {
			hostname, _ = naming.Hostname(svc.HostnameTemplate, p.Name, svc.Name, c.Slot)
		}
		r := dns.Replica{Service: c.Service, Slot: c.Slot, Hostname: hostname, Ready: Ready(c), Aliases: []string{c.Name}}
		for _, ip := range sortedValues(c.IPs) {
			if a, err := netip.ParseAddr(ip); err == nil {
				r.IPv4 = append(r.IPv4, a)
			}
		}
		for _, ip := range sortedValues(c.IPv6) {
			if a, err := netip.ParseAddr(ip); err == nil {
				r.IPv6 = append(r.IPv6, a)
			}
		}
		seen := map[dns.Port]bool{}
		for _, pb := range c.Ports {
			proto := pb.Type
			if proto == "" {
				proto = "tcp"
			}
			port := dns.Port{Number: pb.Private, Proto: proto, Name: portName(svc, pb.Private, proto)}
			if !seen[port] {
				seen[port] = true
				r.Ports = append(r.Ports, port)
			}
		}
		for _, n := range svc.Config.Networks {
			if n != nil {
				r.Aliases = append(r.Aliases, n.Aliases...)
			}
		}
		out = append(out, r)
	}
	return out
}

// portName is the compose long-syntax name of a service port, or "".
func portName(svc *compose.Service, port uint16, proto string) string {
	for _, pc := range svc.Config.Ports {
		p := pc.Protocol
		if p == "" {
			p = "tcp"
		}
		if pc.Name != "" && pc.Target == uint32(port) && p == proto {
			return pc.Name
		}
	}
	return ""
}

func sortedValues(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, m[k])
	}
	return out
}

// TemplateData converts an observation into the templates' data: every
// service of the project (also those with no replica), its replicas by
// slot and its desired replicas (replicas, falling back to the file's).
func TemplateData(p *compose.Project, o *Observed, replicas map[string]int) render.Data {
	d := render.Data{Project: p.Name, Zone: p.Roster.Zone}
	by := map[string][]render.Replica{}
	for _, c := range Replicas(p, o) {
		r := render.Replica{Service: c.Service, Slot: c.Slot, Hostname: c.Hostname, Name: c.Name, ID: c.ID,
			IPs: c.IPs, State: c.State, Health: c.Health, Ready: Ready(c)}
		if vals := sortedValues(c.IPs); len(vals) > 0 {
			r.IP = vals[0]
		}
		for _, pb := range c.Ports {
			r.Ports = append(r.Ports, render.Port{Private: pb.Private, Public: pb.Public, Proto: pb.Type})
		}
		by[c.Service] = append(by[c.Service], r)
	}
	for _, s := range p.Services {
		want, ok := replicas[s.Name]
		if !ok {
			want = s.Replicas
		}
		d.Services = append(d.Services, render.Service{Name: s.Name, Replicas: by[s.Name], Desired: want})
	}
	return d
}
