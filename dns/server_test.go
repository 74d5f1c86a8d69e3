package dns

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

func TestQueries(t *testing.T) {
	up := startUpstream(t)
	_, addr := startServer(t, Config{Upstreams: []string{up.addr}}, NewTable("Demo.Internal", 0, fixture()))
	rev4 := func(s string) string { r, _ := mdns.ReverseAddr(s); return r }
	const noerr, nx = mdns.RcodeSuccess, mdns.RcodeNameError
	type tc struct {
		name   string
		qtype  uint16
		rcode  int
		aa     bool
		answer []string // rdata in order; nil = empty
		soa    bool     // SOA in authority
		extra  int      // additional records (excluding OPT), -1 = don't care
	}
	cases := []tc{
		// replica names, zone and root, all spellings
		{"web_1.demo.internal.", mdns.TypeA, noerr, true, []string{"10.0.0.11"}, false, 0},
		{"web-1.demo.internal.", mdns.TypeA, noerr, true, []string{"10.0.0.11"}, false, 0},
		{"web_1.", mdns.TypeA, noerr, true, []string{"10.0.0.11"}, false, 0},
		{"web-1.", mdns.TypeAAAA, noerr, true, []string{"fd00::11"}, false, 0},
		{"WEB_1.Demo.INTERNAL.", mdns.TypeA, noerr, true, []string{"10.0.0.11"}, false, 0},
		{"Web_1.", mdns.TypeA, noerr, true, []string{"10.0.0.11"}, false, 0},
		{"db-1.demo.internal.", mdns.TypeA, noerr, true, []string{"10.0.0.21"}, false, 0},
		{"db_1.demo.internal.", mdns.TypeA, noerr, true, []string{"10.0.0.21"}, false, 0},
		// not ready: still under its own names, not under the service
		{"web_2.", mdns.TypeA, noerr, true, []string{"10.0.0.12"}, false, 0},
		{"web_2.demo.internal.", mdns.TypeA, noerr, true, []string{"10.0.0.12"}, false, 0},
		{"cache_1.demo.internal.", mdns.TypeA, noerr, true, []string{"10.0.0.31"}, false, 0},
		// service names: ready replicas by slot
		{"web.demo.internal.", mdns.TypeA, noerr, true, []string{"10.0.0.11", "10.0.0.13"}, false, 0},
		{"web.", mdns.TypeA, noerr, true, []string{"10.0.0.11", "10.0.0.13"}, false, 0},
		{"WEB.demo.internal.", mdns.TypeAAAA, noerr, true, []string{"fd00::11"}, false, 0},
		{"db.", mdns.TypeA, noerr, true, []string{"10.0.0.21"}, false, 0},
		// all-unready service and address-less replica: NXDOMAIN, never forwarded
		{"cache.demo.internal.", mdns.TypeA, nx, true, nil, true, 0},
		{"cache.", mdns.TypeA, nx, true, nil, true, 0},
		{"ghost_1.", mdns.TypeA, nx, true, nil, true, 0},
		{"ghost_1.demo.internal.", mdns.TypeA, nx, true, nil, true, 0},
		// NODATA
		{"db-1.demo.internal.", mdns.TypeAAAA, noerr, true, nil, true, 0},
		{"db_1.", mdns.TypeAAAA, noerr, true, nil, true, 0},
		{"db.demo.internal.", mdns.TypeAAAA, noerr, true, nil, true, 0},
		{"web_1.demo.internal.", mdns.TypeMX, noerr, true, nil, true, 0},
		{"web_1.", mdns.TypeTXT, noerr, true, nil, true, 0},
		{"demo.internal.", mdns.TypeA, noerr, true, nil, true, 0},
		{"_tcp.web.demo.internal.", mdns.TypeSRV, noerr, true, nil, true, 0}, // empty non-terminal
		{"web.demo.internal.", mdns.TypeSRV, noerr, true, nil, true, 0},
		// NXDOMAIN in the zone
		{"nothere.demo.internal.", mdns.TypeA, nx, true, nil, true, 0},
		{"a.web_1.demo.internal.", mdns.TypeA, nx, true, nil, true, 0},
		{"_443._tcp.web.demo.internal.", mdns.TypeSRV, nx, true, nil, true, 0},
		// SRV by number and by name, with the targets' addresses
		{"_80._tcp.web.demo.internal.", mdns.TypeSRV, noerr, true,
			[]string{"0 10 80 web_1.demo.internal.", "0 10 80 web_3.demo.internal."}, false, 3},
		{"_HTTP._tcp.web.demo.internal.", mdns.TypeSRV, noerr, true,
			[]string{"0 10 80 web_1.demo.internal.", "0 10 80 web_3.demo.internal."}, false, 3},
		{"_postgres._tcp.db.demo.internal.", mdns.TypeSRV, noerr, true, []string{"0 10 5432 db-1.demo.internal."}, false, 1},
		{"_5353._udp.db.demo.internal.", mdns.TypeSRV, noerr, true, []string{"0 10 5353 db-1.demo.internal."}, false, 1},
		// PTR
		{rev4("10.0.0.11"), mdns.TypePTR, noerr, true, []string{"web_1.demo.internal."}, false, 0},
		{rev4("10.0.0.12"), mdns.TypePTR, noerr, true, []string{"web_2.demo.internal."}, false, 0},
		{rev4("10.0.0.21"), mdns.TypePTR, noerr, true, []string{"db-1.demo.internal."}, false, 0},
		{strings.ToUpper(rev4("fd00::11")), mdns.TypePTR, noerr, true, []string{"web_1.demo.internal."}, false, 0},
		// apex
		{"demo.internal.", mdns.TypeNS, noerr, true, []string{"ns.demo.internal."}, false, 1},
		{"ns.demo.internal.", mdns.TypeA, noerr, true, []string{"127.0.0.1"}, false, 0},
		// ANY: RFC 8482 HINFO
		{"web_1.demo.internal.", mdns.TypeANY, noerr, true, []string{`"RFC8482" ""`}, false, 0},
		{"web.", mdns.TypeANY, noerr, true, []string{`"RFC8482" ""`}, false, 0},
		{"nothere.demo.internal.", mdns.TypeANY, nx, true, nil, true, 0},
		// forwarded: not ours
		{"example.com.", mdns.TypeA, noerr, false, []string{"192.0.2.1"}, false, 0},
		{"localhost.", mdns.TypeA, noerr, false, []string{"192.0.2.1"}, false, 0},
		{"foo.", mdns.TypeA, noerr, false, []string{"192.0.2.1"}, false, 0},
		{rev4("192.0.2.7"), mdns.TypePTR, noerr, false, []string{"upstream.example."}, false, 0},
		{"example.com.", mdns.TypeMX, nx, false, nil, false, 0},
	}
	for _, netw := range []string{"udp", "tcp"} {
		for _, c := range cases {
			t.Run(netw+"/"+c.name+"/"+mdns.TypeToString[c.qtype], func(t *testing.T) {
				r := query(t, addr, netw, c.name, c.qtype, 0)
				if r.Rcode != c.rcode {
					t.Errorf("rcode = %s, want %s", mdns.RcodeToString[r.Rcode], mdns.RcodeToString[c.rcode])
				}
				if r.Authoritative != c.aa {
					t.Errorf("AA = %v, want %v", r.Authoritative, c.aa)
				}
				if got := values(r.Answer); !slices.Equal(got, c.answer) && (len(got) > 0 || len(c.answer) > 0) {
					t.Errorf("answer = %q, want %q", got, c.answer)
				}
				for _, rr := range r.Answer {
					if rr.Header().Name != c.name {
						t.Errorf("owner %q, want the question's spelling %q", rr.Header().Name, c.name)
					}
				}
				if hasSOA(r.Ns) != c.soa {
					t.Errorf("SOA in authority = %v, want %v: %v", hasSOA(r.Ns), c.soa, r.Ns)
				}
				for _, rr := range r.Ns {
					if soa, ok := rr.(*mdns.SOA); ok && (soa.Hdr.Ttl > 1 || soa.Minttl > 1) {
						t.Errorf("negative TTL too long: %v", soa)
					}
				}
				if c.extra >= 0 && len(r.Extra) != c.extra {
					t.Errorf("extra = %v, want %d records", r.Extra, c.extra)
				}
				if c.aa && c.rcode == noerr && len(c.answer) > 0 && r.Answer[0].Header().Ttl != 5 {
					t.Errorf("TTL = %d, want 5", r.Answer[0].Header().Ttl)
				}
				if r.Truncated {
					t.Errorf("TC set")
				}
			})
		}
	}

	t.Run("SOA", func(t *testing.T) {
		r := query(t, addr, "udp", "DEMO.internal.", mdns.TypeSOA, 0)
		if len(r.Answer) != 1 || !r.Authoritative {
			t.Fatalf("answer %v", r)
		}
		soa := r.Answer[0].(*mdns.SOA)
		if soa.Hdr.Name != "DEMO.internal." || soa.Ns != "ns.demo.internal." || soa.Minttl != 1 || soa.Serial == 0 {
			t.Errorf("SOA = %v", soa)
		}
	})
	t.Run("SRV additional", func(t *testing.T) {
		r := query(t, addr, "udp", "_80._tcp.web.demo.internal.", mdns.TypeSRV, 0)
		want := []string{"web_1.demo.internal. A 10.0.0.11", "web_1.demo.internal. AAAA fd00::11", "web_3.demo.internal. A 10.0.0.13"}
		var got []string
		for _, rr := range r.Extra {
			got = append(got, fmt.Sprintf("%s %s %s", rr.Header().Name, mdns.TypeToString[rr.Header().Rrtype], values([]mdns.RR{rr})[0]))
		}
		if !slices.Equal(got, want) {
			t.Errorf("extra = %q, want %q", got, want)
		}
	})
	t.Run("NS glue", func(t *testing.T) {
		r := query(t, addr, "udp", "demo.internal.", mdns.TypeNS, 0)
		if len(r.Extra) != 1 || r.Extra[0].Header().Name != "ns.demo.internal." || values(r.Extra)[0] != "127.0.0.1" {
			t.Errorf("extra = %v", r.Extra)
		}
	})
	t.Run("EDNS echo", func(t *testing.T) {
		r := query(t, addr, "udp", "web_1.", mdns.TypeA, 1232)
		if opt := r.IsEdns0(); opt == nil || opt.UDPSize() != maxUDPSize {
			t.Errorf("OPT = %v", opt)
		}
		if r := query(t, addr, "udp", "web_1.", mdns.TypeA, 0); r.IsEdns0() != nil {
			t.Errorf("OPT without EDNS query")
		}
	})
	t.Run("BADVERS", func(t *testing.T) {
		m := new(mdns.Msg)
		m.SetQuestion("web_1.", mdns.TypeA)
		m.SetEdns0(1232, false)
		m.IsEdns0().SetVersion(1)
		r, _, err := (&mdns.Client{}).Exchange(m, addr)
		if err != nil {
			t.Fatal(err)
		}
		if r.Rcode != mdns.RcodeBadVers || r.IsEdns0() == nil {
			t.Errorf("rcode %s, OPT %v", mdns.RcodeToString[r.Rcode], r.IsEdns0())
		}
	})
	t.Run("NOTIFY NOTIMP", func(t *testing.T) {
		m := new(mdns.Msg)
		m.SetNotify("demo.internal.")
		r, _, err := (&mdns.Client{}).Exchange(m, addr)
		if err != nil {
			t.Fatal(err)
		}
		if r.Rcode != mdns.RcodeNotImplemented {
			t.Errorf("rcode %s", mdns.RcodeToString[r.Rcode])
		}
	})
	t.Run("no question FORMERR", func(t *testing.T) {
		m := new(mdns.Msg)
		m.Id = 7
		r := new(mdns.Msg)
		if err := r.Unpack(rawUDP(t, addr, m)); err != nil {
			t.Fatal(err)
		}
		if r.Rcode != mdns.RcodeFormatError || r.Id != 7 {
			t.Errorf("reply %v", r)
		}
	})
	t.Run("AXFR REFUSED", func(t *testing.T) {
		if r := query(t, addr, "tcp", "demo.internal.", mdns.TypeAXFR, 0); r.Rcode != mdns.RcodeRefused {
			t.Errorf("rcode %s", mdns.RcodeToString[r.Rcode])
		}
	})
	t.Run("not forwarded", func(t *testing.T) {
		before := up.queries.Load()
		for _, name := range []string{"db_1.", "cache.", "ghost_1.", "web_2."} {
			query(t, addr, "udp", name, mdns.TypeAAAA, 0)
		}
		if n := up.queries.Load() - before; n != 0 {
			t.Errorf("%d of our names reached the upstream", n)
		}
	})
}

func TestHandlerOpcodesAndQuestions(t *testing.T) {
	s := NewServer(Config{Zone: zone, Upstreams: []string{"127.0.0.1:1"}})
	s.Swap(NewTable(zone, 0, fixture()))
	for _, c := range []struct {
		name  string
		build func(*mdns.Msg)
		rcode int
	}{
		{"status opcode", func(m *mdns.Msg) { m.SetQuestion("web.", mdns.TypeA); m.Opcode = mdns.OpcodeStatus }, mdns.RcodeNotImplemented},
		{"update opcode", func(m *mdns.Msg) { m.SetUpdate(zone) }, mdns.RcodeNotImplemented},
		{"no question", func(m *mdns.Msg) {}, mdns.RcodeFormatError},
		{"two questions", func(m *mdns.Msg) {
			m.SetQuestion("web.", mdns.TypeA)
			m.Question = append(m.Question, m.Question[0])
		}, mdns.RcodeFormatError},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := new(mdns.Msg)
			c.build(m)
			w := newFakeWriter("127.0.0.1:5000")
			s.Handler().ServeDNS(w, m)
			if w.msg == nil || w.msg.Rcode != c.rcode {
				t.Fatalf("reply %v, want %s", w.msg, mdns.RcodeToString[c.rcode])
			}
		})
	}
	t.Run("responses are ignored", func(t *testing.T) {
		m := new(mdns.Msg)
		m.SetQuestion("web.", mdns.TypeA)
		m.Response = true
		w := newFakeWriter("127.0.0.1:5000")
		s.Handler().ServeDNS(w, m)
		if w.raw != nil {
			t.Fatalf("answered a response")
		}
	})
}

func manyReplicas(n int) []Replica {
	var rs []Replica
	for i := 1; i <= n; i++ {
		rs = append(rs, Replica{Service: "web", Slot: i, Hostname: fmt.Sprintf("web_%d", i),
			IPv4: []netip.Addr{netip.AddrFrom4([4]byte{10, 1, byte(i / 256), byte(i % 256)})}, Ready: true})
	}
	return rs
}

func TestTruncation(t *testing.T) {
	_, addr := startServer(t, Config{}, NewTable(zone, 0, manyReplicas(100)))
	const rrSize = 16 // compressed A record
	udp := func(t *testing.T, edns uint16) (*mdns.Msg, int) {
		m := new(mdns.Msg)
		m.SetQuestion("web.demo.internal.", mdns.TypeA)
		if edns > 0 {
			m.SetEdns0(edns, false)
		}
		raw := rawUDP(t, addr, m)
		r := new(mdns.Msg)
		if err := r.Unpack(raw); err != nil {
			t.Fatal(err)
		}
		return r, len(raw)
	}
	t.Run("UDP no EDNS", func(t *testing.T) {
		r, n := udp(t, 0)
		if !r.Truncated || len(r.Answer) == 0 || n > 512 || n+rrSize <= 512 {
			t.Fatalf("TC=%v answers=%d size=%d: want TC and as many records as fit in 512", r.Truncated, len(r.Answer), n)
		}
		t.Logf("%d records in %d bytes", len(r.Answer), n)
	})
	t.Run("UDP EDNS 1232", func(t *testing.T) {
		r, n := udp(t, 1232)
		if !r.Truncated || n > 1232 || n+rrSize <= 1232 || r.IsEdns0() == nil {
			t.Fatalf("TC=%v answers=%d size=%d", r.Truncated, len(r.Answer), n)
		}
	})
	t.Run("UDP EDNS 4096", func(t *testing.T) {
		r, n := udp(t, 4096)
		if r.Truncated || len(r.Answer) != 100 || n > 4096 {
			t.Fatalf("TC=%v answers=%d size=%d", r.Truncated, len(r.Answer), n)
		}
	})
	t.Run("TCP", func(t *testing.T) {
		r := query(t, addr, "tcp", "web.demo.internal.", mdns.TypeA, 0)
		if r.Truncated || len(r.Answer) != 100 {
			t.Fatalf("TC=%v answers=%d", r.Truncated, len(r.Answer))
		}
	})
	t.Run("miekg client UDP", func(t *testing.T) {
		r := query(t, addr, "udp", "web.", mdns.TypeA, 0)
		if !r.Truncated {
			t.Fatalf("TC not set")
		}
	})
}

func TestForwarding(t *testing.T) {
	up := startUpstream(t)
	dead := deadAddr(t)
	t.Run("failover", func(t *testing.T) {
		_, addr := startServer(t, Config{Upstreams: []string{dead, up.addr}}, NewTable(zone, 0, fixture()))
		for _, netw := range []string{"udp", "tcp"} {
			r := query(t, addr, netw, "example.com.", mdns.TypeA, 0)
			if r.Rcode != mdns.RcodeSuccess || r.Authoritative || !r.RecursionAvailable || len(r.Answer) != 1 {
				t.Errorf("%s: %v", netw, r)
			}
		}
	})
	t.Run("all dead SERVFAIL", func(t *testing.T) {
		_, addr := startServer(t, Config{Upstreams: []string{dead, deadAddr(t)}, ForwardTimeout: 300 * time.Millisecond}, NewTable(zone, 0, fixture()))
		for _, netw := range []string{"udp", "tcp"} {
			if r := query(t, addr, netw, "example.com.", mdns.TypeA, 0); r.Rcode != mdns.RcodeServerFailure {
				t.Errorf("%s: rcode %s", netw, mdns.RcodeToString[r.Rcode])
			}
		}
	})
	t.Run("timeout failover", func(t *testing.T) {
		// An upstream that reads and never answers.
		silent, _, err := listenPair("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer silent.Close()
		_, addr := startServer(t, Config{Upstreams: []string{silent.LocalAddr().String(), up.addr}, ForwardTimeout: 200 * time.Millisecond}, NewTable(zone, 0, nil))
		if r := query(t, addr, "udp", "example.com.", mdns.TypeA, 0); r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
			t.Errorf("%v", r)
		}
	})

	s := NewServer(Config{Zone: zone, Upstreams: []string{up.addr}, Allowed: []netip.Prefix{netip.MustParsePrefix("172.18.0.0/16")}})
	s.Swap(NewTable(zone, 0, fixture()))
	ask := func(remote, name string) *mdns.Msg {
		m := new(mdns.Msg)
		m.SetQuestion(name, mdns.TypeA)
		w := newFakeWriter(remote)
		s.Handler().ServeDNS(w, m)
		if w.msg == nil {
			t.Fatalf("no reply")
		}
		return w.msg
	}
	for _, c := range []struct {
		remote, name string
		rcode        int
		ra           bool
	}{
		{"10.9.9.9:4000", "example.com.", mdns.RcodeRefused, false},
		{"10.9.9.9:4000", "foo.", mdns.RcodeRefused, false},
		{"10.9.9.9:4000", "web_1.demo.internal.", mdns.RcodeSuccess, false}, // our names: answered to anyone
		{"[::ffff:10.9.9.9]:4000", "example.com.", mdns.RcodeRefused, false},
		{"172.18.0.5:4000", "example.com.", mdns.RcodeSuccess, true},
		{"[::ffff:172.18.0.5]:4000", "example.com.", mdns.RcodeSuccess, true},
		{"127.0.0.1:4000", "example.com.", mdns.RcodeSuccess, true},
		{"[::1]:4000", "example.com.", mdns.RcodeSuccess, true},
	} {
		if r := ask(c.remote, c.name); r.Rcode != c.rcode || r.RecursionAvailable != c.ra {
			t.Errorf("%s asks %s: rcode %s RA %v, want %s RA %v", c.remote, c.name,
				mdns.RcodeToString[r.Rcode], r.RecursionAvailable, mdns.RcodeToString[c.rcode], c.ra)
		}
	}
}

func TestNoTableYet(t *testing.T) {
	up := startUpstream(t)
	s, addr := startServer(t, Config{Upstreams: []string{up.addr}}, nil)
	for _, name := range []string{"web_1.demo.internal.", "web_1."} {
		if r := query(t, addr, "udp", name, mdns.TypeA, 0); r.Rcode != mdns.RcodeServerFailure {
			t.Errorf("%s before first Swap: %s", name, mdns.RcodeToString[r.Rcode])
		}
	}
	if r := query(t, addr, "udp", "example.com.", mdns.TypeA, 0); r.Rcode != mdns.RcodeSuccess {
		t.Errorf("forwarding before first Swap: %s", mdns.RcodeToString[r.Rcode])
	}
	s.Swap(NewTable(zone, 0, fixture()))
	if r := query(t, addr, "udp", "web_1.", mdns.TypeA, 0); r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("after Swap: %v", r)
	}
}

func TestSwap(t *testing.T) {
	t1 := NewTable(zone, 0, fixture())
	s, addr := startServer(t, Config{}, t1)
	serial := func() uint32 {
		return query(t, addr, "udp", zone, mdns.TypeSOA, 0).Answer[0].(*mdns.SOA).Serial
	}
	s1 := serial()
	if r := query(t, addr, "udp", "web_1.", mdns.TypeA, 0); values(r.Answer)[0] != "10.0.0.11" {
		t.Fatalf("before: %v", r.Answer)
	}
	rs := fixture()
	rs[1].IPv4 = []netip.Addr{ip("10.0.0.99")}
	rs[0].Ready = false // web_3 leaves the service
	s.Swap(NewTable(zone, 0, rs))
	if r := query(t, addr, "udp", "web_1.", mdns.TypeA, 0); values(r.Answer)[0] != "10.0.0.99" {
		t.Errorf("after: %v", r.Answer)
	}
	if r := query(t, addr, "tcp", "web.demo.internal.", mdns.TypeA, 0); !slices.Equal(values(r.Answer), []string{"10.0.0.99"}) {
		t.Errorf("service after: %v", r.Answer)
	}
	if s2 := serial(); s2 <= s1 {
		t.Errorf("serial %d -> %d, want increase", s1, s2)
	}

	// Concurrent swaps and queries (run with -race).
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Go(func() {
			for i := 0; i < 200; i++ {
				m := new(mdns.Msg)
				m.SetQuestion("web.demo.internal.", mdns.TypeA)
				w := newFakeWriter("127.0.0.1:5000")
				s.Handler().ServeDNS(w, m)
				if w.msg == nil || w.msg.Rcode != mdns.RcodeSuccess {
					t.Errorf("reply %v", w.msg)
					return
				}
			}
		})
	}
	for i := 0; i < 100; i++ {
		s.Swap(NewTable(zone, 0, manyReplicas(i%7+1)))
	}
	wg.Wait()
}

func TestRecords(t *testing.T) {
	tbl := NewTable(zone, 30*time.Second, fixture())
	recs := tbl.Records()
	if !slices.IsSortedFunc(recs, func(a, b Record) int { return strings.Compare(a.Name+" "+a.Type, b.Name+" "+b.Type) }) {
		t.Errorf("not sorted")
	}
	for _, want := range []Record{
		{"web_1.demo.internal.", "A", "10.0.0.11", 30},
		{"web_1.", "AAAA", "fd00::11", 30},
		{"web-2.", "A", "10.0.0.12", 30},
		{"db-1.demo.internal.", "A", "10.0.0.21", 30},
		{"_http._tcp.web.demo.internal.", "SRV", "0 10 80 web_1.demo.internal.", 30},
		{"11.0.0.10.in-addr.arpa.", "PTR", "web_1.demo.internal.", 30},
		{"demo.internal.", "NS", "ns.demo.internal.", 30},
	} {
		if !slices.Contains(recs, want) {
			t.Errorf("missing %+v", want)
		}
	}
	var web []string
	for _, r := range recs {
		if r.Name == "web.demo.internal." {
			web = append(web, r.Value)
		}
		if r.Name == "cache.demo.internal." || r.Name == "ghost_1." {
			t.Errorf("unexpected %+v", r)
		}
	}
	if !slices.Equal(web, []string{"10.0.0.11", "10.0.0.13", "fd00::11"}) {
		t.Errorf("web = %v", web)
	}
	b, _ := json.Marshal(recs[0])
	if !strings.Contains(string(b), `"name":`) || !strings.Contains(string(b), `"ttl":`) {
		t.Errorf("json %s", b)
	}
	stable := NewTable(zone, 30*time.Second, fixture()).Records()
	for i := range stable {
		if stable[i].Type != "SOA" && stable[i] != recs[i] {
			t.Fatalf("not stable at %d: %+v vs %+v", i, stable[i], recs[i])
		}
	}
}

func TestNSNameCollision(t *testing.T) {
	tbl := NewTable(zone, 0, []Replica{{Service: "ns", Slot: 1, IPv4: []netip.Addr{ip("10.0.0.5")}, Ready: true}})
	s := NewServer(Config{Zone: zone, Upstreams: []string{"127.0.0.1:1"}})
	s.Swap(tbl)
	m := new(mdns.Msg)
	m.SetQuestion(zone, mdns.TypeNS)
	w := newFakeWriter("127.0.0.1:5000")
	s.Handler().ServeDNS(w, m)
	if got := values(w.msg.Answer); !slices.Equal(got, []string{"roster-ns.demo.internal."}) {
		t.Errorf("NS = %v", got)
	}
}

func TestUpstreamsFromResolvConf(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(p, []byte("search example.org\nnameserver 192.0.2.53\nnameserver ::1\noptions ndots:2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := UpstreamsFromResolvConf(p)
	if err != nil || !slices.Equal(got, []string{"192.0.2.53:53", "[::1]:53"}) {
		t.Errorf("got %v, %v", got, err)
	}
	if _, err := UpstreamsFromResolvConf(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Errorf("no error for a missing file")
	}
}

func TestListen(t *testing.T) {
	s := NewServer(Config{Zone: zone, Upstreams: []string{"127.0.0.1:1"}})
	s.Swap(NewTable(zone, 0, fixture()))
	ctx, cancel := context.WithCancel(context.Background())
	addrs := []string{"127.0.0.1:0"}
	if pc, ln, err := listenPair("[::1]:0"); err == nil {
		_, _ = pc.Close(), ln.Close()
		addrs = append(addrs, "[::1]:0")
	}
	if err := s.Listen(ctx, addrs); err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(ctx, addrs); err == nil {
		t.Errorf("second Listen succeeded")
	}
	bound := s.Addrs()
	if len(bound) != len(addrs) {
		t.Fatalf("Addrs = %v", bound)
	}
	for _, a := range bound {
		for _, netw := range []string{"udp", "tcp"} {
			if r := query(t, a, netw, "web_1.", mdns.TypeA, 0); len(r.Answer) != 1 {
				t.Errorf("%s %s: %v", netw, a, r)
			}
		}
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := &mdns.Client{Net: "tcp", Timeout: 200 * time.Millisecond}
		m := new(mdns.Msg)
		m.SetQuestion("web_1.", mdns.TypeA)
		if _, _, err := c.Exchange(m, bound[0]); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still serving after ctx ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close after ctx end: %v", err)
	}
	if err := NewServer(Config{Upstreams: []string{"127.0.0.1:1"}}).Listen(context.Background(), []string{"256.0.0.1:53"}); err == nil || !strings.Contains(err.Error(), "listen 256.0.0.1:53") {
		t.Errorf("bad address: %v", err)
	}
}

func BenchmarkHandler(b *testing.B) {
	s := NewServer(Config{Zone: zone, Upstreams: []string{"127.0.0.1:1"}})
	s.Swap(NewTable(zone, 0, fixture()))
	h := s.Handler()
	m := new(mdns.Msg)
	m.SetQuestion("web_1.demo.internal.", mdns.TypeA)
	w := newFakeWriter("127.0.0.1:5000")
	b.ReportAllocs()
	for b.Loop() {
		w.msg = nil
		h.ServeDNS(w, m)
		if w.msg == nil || len(w.msg.Answer) != 1 {
			b.Fatal("bad reply")
		}
	}
}

func TestAliases(t *testing.T) {
	tbl := NewTable(zone, 0, []Replica{{Service: "web", Slot: 1, Hostname: "web_1", Ready: true,
		IPv4: []netip.Addr{netip.MustParseAddr("10.0.0.11")}, Aliases: []string{"demo-web-1", "bad.alias"}}})
	recs := tbl.Records()
	for _, want := range []Record{{"demo-web-1.", "A", "10.0.0.11", 5}, {"demo-web-1.demo.internal.", "A", "10.0.0.11", 5}} {
		if !slices.Contains(recs, want) {
			t.Errorf("missing %+v", want)
		}
	}
	for _, r := range recs {
		if strings.HasPrefix(r.Name, "bad") {
			t.Errorf("invalid label published: %+v", r)
		}
	}
}
