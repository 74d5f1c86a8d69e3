// Package dns serves a project's replicas in DNS. It knows nothing of
// Docker: the reconciler builds a Table from the replicas it observed and
// swaps it into a running Server.
package dns

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

// DefaultTTL is the positive TTL used when NewTable is given ttl <= 0.
const DefaultTTL = 5 * time.Second

// negTTL is the TTL of the SOA in negative answers, hence the negative
// caching time (RFC 2308: min(SOA TTL, SOA MINIMUM)).
const negTTL = 1

// Port is a port a replica listens on.
type Port struct {
	Number uint16
	Proto  string // "tcp" (default) or "udp"
	Name   string // optional, e.g. "http"
}

// Replica is one slot of a service as the reconciler sees it.
type Replica struct {
	Service  string // "web"
	Slot     int    // 1..N
	Hostname string // from the slot's template, e.g. "web_1" or "web-1"
	IPv4     []netip.Addr
	IPv6     []netip.Addr
	Ready    bool // running and (no healthcheck or healthy)
	Ports    []Port
	// Aliases are further names of this replica (its container name,
	// network aliases), answered like the hostname, so that containers
	// whose resolv.conf points here still find what Docker's DNS would.
	Aliases []string
}

// Record is one served resource record, for listing (`roster dns`).
type Record struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Value string `json:"value"`
	TTL   uint32 `json:"ttl"`
}

type srvTarget struct {
	port   uint16
	target string
}

// node holds everything served at one owner name.
type node struct {
	addrs []netip.Addr // IPv4 and IPv6, in slot order
	srv   []srvTarget
	ptr   []string
	ent   bool // has names below it: an empty non-terminal answers NODATA
	nx    bool // our name, currently without data: NXDOMAIN, never forwarded
}

func (n *node) empty() bool { return len(n.addrs) == 0 && len(n.srv) == 0 && len(n.ptr) == 0 }

// Table is an immutable snapshot of the records served for one zone.
type Table struct {
	zone   string
	nsName string
	ttl    uint32
	serial uint32
	names  map[string]*node // lowercase FQDN -> node
}

var lastSerial atomic.Uint32

// nextSerial returns the unix time, or one more than the previous serial if
// that is not greater, so every table gets a new, increasing SOA serial.
func nextSerial() uint32 {
	for {
		old := lastSerial.Load()
		s := uint32(time.Now().Unix())
		if s <= old {
			s = old + 1
		}
		if lastSerial.CompareAndSwap(old, s) {
			return s
		}
	}
}

func normalizeZone(zone string) string {
	zone = mdns.CanonicalName(strings.TrimSpace(zone))
	if _, ok := mdns.IsDomainName(zone); !ok || zone == "." {
		return "roster.internal."
	}
	return zone
}

// validLabel reports whether s (lowercase) is a single label we publish:
// letters, digits, '-' and '_', at most 63 bytes.
func validLabel(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

func appendUnique[T comparable](list []T, items ...T) []T {
	for _, it := range items {
		if !slices.Contains(list, it) {
			list = append(list, it)
		}
	}
	return list
}

func replicaAddrs(r Replica) []netip.Addr {
	var out []netip.Addr
	for _, a := range r.IPv4 {
		if a = a.Unmap(); a.Is4() {
			out = appendUnique(out, a)
		}
	}
	for _, a := range r.IPv6 {
		if a = a.WithZone(""); a.Is6() && !a.Is4In6() {
			out = appendUnique(out, a)
		}
	}
	return out
}

// NewTable builds the records for replicas in zone (e.g. "demo.internal.").
// A ttl <= 0 means DefaultTTL. Names that are not valid single DNS labels
// (letters, digits, '-', '_') are skipped.
func NewTable(zone string, ttl time.Duration, replicas []Replica) *Table {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	t := &Table{
		zone:   normalizeZone(zone),
		ttl:    uint32(max(ttl/time.Second, 1)),
		serial: nextSerial(),
		names:  map[string]*node{},
	}
	rs := slices.Clone(replicas)
	slices.SortStableFunc(rs, func(a, b Replica) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Slot, b.Slot))
	})
	var services []string
	for _, r := range rs {
		svc := strings.ToLower(r.Service)
		if !validLabel(svc) {
			continue
		}
		services = appendUnique(services, svc)
		var labels []string
		for _, l := range append([]string{r.Hostname, svc + "_" + strconv.Itoa(r.Slot), svc + "-" + strconv.Itoa(r.Slot)}, r.Aliases...) {
			if l = strings.ToLower(l); validLabel(l) {
				labels = appendUnique(labels, l)
			}
		}
		addrs := replicaAddrs(r)
		for _, l := range labels {
			for _, name := range []string{l + ".", l + "." + t.zone} {
				n := t.node(name)
				n.addrs = appendUnique(n.addrs, addrs...)
				n.nx = n.nx || len(addrs) == 0 // only matters while empty
			}
		}
		target := labels[0] + "." + t.zone
		for _, a := range addrs {
			if rev, err := mdns.ReverseAddr(a.String()); err == nil {
				n := t.node(rev)
				n.ptr = appendUnique(n.ptr, target)
			}
		}
		if !r.Ready || len(addrs) == 0 {
			continue
		}
		for _, name := range []string{svc + ".", svc + "." + t.zone} {
			n := t.node(name)
			n.addrs = appendUnique(n.addrs, addrs...)
		}
		for _, p := range r.Ports {
			proto := cmp.Or(strings.ToLower(p.Proto), "tcp")
			if p.Number == 0 || !validLabel(proto) {
				continue
			}
			st := srvTarget{port: p.Number, target: target}
			names := []string{"_" + strconv.Itoa(int(p.Number))}
			if pn := strings.ToLower(p.Name); validLabel(pn) {
				names = append(names, "_"+pn)
			}
			for _, prefix := range names {
				n := t.node(prefix + "._" + proto + "." + svc + "." + t.zone)
				n.srv = appendUnique(n.srv, st)
			}
		}
	}
	// A service without a ready replica is NXDOMAIN (and not forwarded).
	for _, svc := range services {
		for _, name := range []string{svc + ".", svc + "." + t.zone} {
			if n := t.node(name); n.empty() {
				n.nx = true
			}
		}
	}
	// Empty non-terminals between the names and the apex answer NODATA.
	for name := range t.names {
		for name != t.zone && strings.HasSuffix(name, "."+t.zone) {
			name = name[strings.IndexByte(name, '.')+1:]
			t.node(name).ent = true
		}
	}
	t.node(t.zone)
	t.nsName = "ns." + t.zone
	if _, taken := t.names[t.nsName]; taken {
		t.nsName = "roster-ns." + t.zone
	}
	t.node(t.nsName)
	return t
}

func (t *Table) node(name string) *node {
	n := t.names[name]
	if n == nil {
		n = &node{}
		t.names[name] = n
	}
	return n
}

// Zone returns the table's zone, lowercase and fully qualified.
func (t *Table) Zone() string { return t.zone }

func (t *Table) inZone(name string) bool {
	return name == t.zone || strings.HasSuffix(name, "."+t.zone)
}

func (t *Table) hdr(name string, typ uint16, ttl uint32) mdns.RR_Header {
	return mdns.RR_Header{Name: name, Rrtype: typ, Class: mdns.ClassINET, Ttl: ttl}
}

func (t *Table) soa(ttl uint32) mdns.RR {
	return &mdns.SOA{
		Hdr: t.hdr(t.zone, mdns.TypeSOA, ttl), Ns: t.nsName, Mbox: "hostmaster." + t.zone,
		Serial: t.serial, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: negTTL,
	}
}

func (t *Table) ns() mdns.RR {
	return &mdns.NS{Hdr: t.hdr(t.zone, mdns.TypeNS, t.ttl), Ns: t.nsName}
}

// addrRRs returns the A (qtype A), AAAA (qtype AAAA) or both (other qtype)
// records for addrs, owned by name.
func (t *Table) addrRRs(name string, addrs []netip.Addr, qtype uint16) []mdns.RR {
	var out []mdns.RR
	for _, a := range addrs {
		switch {
		case a.Is4() && qtype != mdns.TypeAAAA:
			out = append(out, &mdns.A{Hdr: t.hdr(name, mdns.TypeA, t.ttl), A: a.AsSlice()})
		case a.Is6() && qtype != mdns.TypeA:
			out = append(out, &mdns.AAAA{Hdr: t.hdr(name, mdns.TypeAAAA, t.ttl), AAAA: a.AsSlice()})
		}
	}
	return out
}

func (t *Table) srvRRs(name string, n *node) []mdns.RR {
	out := make([]mdns.RR, 0, len(n.srv))
	for _, s := range n.srv {
		out = append(out, &mdns.SRV{Hdr: t.hdr(name, mdns.TypeSRV, t.ttl), Priority: 0, Weight: 10, Port: s.port, Target: s.target})
	}
	return out
}

func (t *Table) ptrRRs(name string, n *node) []mdns.RR {
	out := make([]mdns.RR, 0, len(n.ptr))
	for _, p := range n.ptr {
		out = append(out, &mdns.PTR{Hdr: t.hdr(name, mdns.TypePTR, t.ttl), Ptr: p})
	}
	return out
}

// result is an authoritative answer.
type result struct {
	rcode  int
	answer []mdns.RR
	extra  []mdns.RR
	soa    bool // negative answer: SOA in the authority section
}

// lookup answers q from the table. ok is false when the name is not ours
// (outside the zone, and not one of our single-label or reverse names): the
// caller forwards it. nsAddr is the address served for the NS target.
func (t *Table) lookup(q mdns.Question, nsAddr netip.Addr) (res result, ok bool) {
	name := strings.ToLower(q.Name)
	n := t.names[name]
	if n == nil {
		if !t.inZone(name) {
			return result{}, false
		}
		return result{rcode: mdns.RcodeNameError, soa: true}, true
	}
	if n.nx && n.empty() && !n.ent {
		return result{rcode: mdns.RcodeNameError, soa: true}, true
	}
	switch q.Qtype {
	case mdns.TypeA, mdns.TypeAAAA:
		addrs := n.addrs
		if name == t.nsName && n.empty() {
			addrs = []netip.Addr{nsAddr}
		}
		res.answer = t.addrRRs(q.Name, addrs, q.Qtype)
	case mdns.TypeSRV:
		res.answer = t.srvRRs(q.Name, n)
		var seen []string
		for _, s := range n.srv {
			if !slices.Contains(seen, s.target) {
				seen = append(seen, s.target)
				if tn := t.names[s.target]; tn != nil {
					res.extra = append(res.extra, t.addrRRs(s.target, tn.addrs, 0)...)
				}
			}
		}
	case mdns.TypePTR:
		res.answer = t.ptrRRs(q.Name, n)
	case mdns.TypeSOA, mdns.TypeNS:
		if name != t.zone {
			break
		}
		if q.Qtype == mdns.TypeSOA {
			res.answer = []mdns.RR{t.soa(t.ttl)}
		} else {
			res.answer = []mdns.RR{t.ns()}
			res.extra = t.addrRRs(t.nsName, []netip.Addr{nsAddr}, 0)
		}
		res.answer[0].Header().Name = q.Name
	case mdns.TypeANY:
		// RFC 8482 section 4.2: one synthesized HINFO instead of every RRset.
		res.answer = []mdns.RR{&mdns.HINFO{Hdr: t.hdr(q.Name, mdns.TypeHINFO, t.ttl), Cpu: "RFC8482"}}
	}
	res.soa = len(res.answer) == 0 // NODATA
	return res, true
}

// Records lists the served records, sorted by name and type, each RRset in
// slot order. The NS target's address depends on where the server listens
// and is not listed.
func (t *Table) Records() []Record {
	var out []Record
	add := func(rrs ...mdns.RR) {
		for _, rr := range rrs {
			h := rr.Header()
			out = append(out, Record{
				Name: h.Name, Type: mdns.TypeToString[h.Rrtype],
				Value: strings.TrimPrefix(rr.String(), h.String()), TTL: h.Ttl,
			})
		}
	}
	add(t.soa(t.ttl), t.ns())
	for name, n := range t.names {
		add(t.addrRRs(name, n.addrs, 0)...)
		add(t.srvRRs(name, n)...)
		add(t.ptrRRs(name, n)...)
	}
	slices.SortStableFunc(out, func(a, b Record) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Type, b.Type))
	})
	return out
}
