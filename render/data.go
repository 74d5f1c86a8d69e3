// Package render renders the dependent config files of a roster project
// (the top-level x-roster.templates of the compose file): Go text/template
// over the project's services and replicas, written only when the bytes
// change, atomically, checked before they replace the last good file, and
// followed by one reload per consumer per batch. See README.md.
package render

import (
	"cmp"
	"slices"
	"strconv"
)

// Data is what a template sees as ".". It must come from a complete
// observation of the engine (never from a partial view at start-up).
type Data struct {
	Project  string
	Zone     string    // DNS zone, e.g. "demo.internal."
	Services []Service // sorted by name
}

// Service is one compose service and its replicas.
type Service struct {
	Name     string
	Replicas []Replica // sorted by slot
	// Desired is the desired number of replicas: the slots are 1..Desired
	// even while one of them is being recreated or repaired.
	Desired int
}

// Replica is one container of a service.
type Replica struct {
	Service  string
	Slot     int
	Hostname string // e.g. web_1
	Name     string // container name, e.g. demo-web-1
	ID       string // container ID
	// IPs maps network name -> IPv4 address.
	IPs map[string]string
	// IP is the address on the first network by name (filled by Normalize
	// when empty).
	IP     string
	Ports  []Port
	State  string // created, running, restarting, exited, ...
	Health string // "", starting, healthy, unhealthy
	Ready  bool   // running and (no healthcheck or healthy)
}

// Port is one port of a replica; Public is 0 when it is only exposed.
type Port struct {
	Private uint16
	Public  uint16
	Proto   string // tcp, udp, sctp
}

// String is the replica's hostname, so that {{join ", " (readyReplicas "web")}}
// lists hostnames.
func (r Replica) String() string { return r.Hostname }

// Running reports whether the replica's container is running (the
// containers exec and signal actions reach).
func (r Replica) Running() bool { return r.State == "running" }

// String is "8080/tcp", or "8081:8080/tcp" when published on 8081.
func (p Port) String() string {
	s := strconv.Itoa(int(p.Private)) + "/" + cmp.Or(p.Proto, "tcp")
	if p.Public != 0 {
		s = strconv.Itoa(int(p.Public)) + ":" + s
	}
	return s
}

// Service returns the named service, or an empty one named name.
func (d Data) Service(name string) Service {
	for _, s := range d.Services {
		if s.Name == name {
			return s
		}
	}
	return Service{Name: name}
}

// Ready returns the service's ready replicas, sorted by slot.
func (s Service) Ready() []Replica { return ready(s.Replicas) }

// Normalize returns a copy of d with services sorted by name, replicas by
// slot (then name), ports by private port and protocol, empty protocols set
// to tcp and IP filled from IPs (first network by name) when empty. The
// renderer normalizes every Data it receives; callers need not.
func (d Data) Normalize() Data {
	out := Data{Project: d.Project, Zone: d.Zone, Services: make([]Service, len(d.Services))}
	for i, s := range d.Services {
		rs := make([]Replica, len(s.Replicas))
		for j, r := range s.Replicas {
			if r.Service == "" {
				r.Service = s.Name
			}
			if r.IP == "" && len(r.IPs) > 0 {
				nets := make([]string, 0, len(r.IPs))
				for n, ip := range r.IPs {
					if ip != "" {
						nets = append(nets, n)
					}
				}
				slices.Sort(nets)
				if len(nets) > 0 {
					r.IP = r.IPs[nets[0]]
				}
			}
			ps := slices.Clone(r.Ports)
			for k := range ps {
				if ps[k].Proto == "" {
					ps[k].Proto = "tcp"
				}
			}
			slices.SortStableFunc(ps, func(a, b Port) int {
				return cmp.Or(cmp.Compare(a.Private, b.Private), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Public, b.Public))
			})
			r.Ports = ps
			rs[j] = r
		}
		out.Services[i] = Service{Name: s.Name, Replicas: sortBySlot(rs)}
	}
	slices.SortStableFunc(out.Services, func(a, b Service) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// sortBySlot returns a sorted copy.
func sortBySlot(rs []Replica) []Replica {
	out := slices.Clone(rs)
	slices.SortStableFunc(out, func(a, b Replica) int {
		return cmp.Or(cmp.Compare(a.Slot, b.Slot), cmp.Compare(a.Name, b.Name))
	})
	return out
}

func ready(rs []Replica) []Replica {
	var out []Replica
	for _, r := range rs {
		if r.Ready {
			out = append(out, r)
		}
	}
	return out
}

func running(rs []Replica) []Replica {
	var out []Replica
	for _, r := range rs {
		if r.Running() {
			out = append(out, r)
		}
	}
	return out
}
