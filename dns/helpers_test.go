package dns

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

const zone = "demo.internal."

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// fixture: web 1..3 (2 not ready, 1 dual-stack), db 1 with an overridden
// hostname (IPv4 only), cache 1 not ready (service all-unready), ghost 1
// without address.
func fixture() []Replica {
	http := []Port{{Number: 80, Proto: "tcp", Name: "http"}}
	return []Replica{
		{Service: "web", Slot: 3, Hostname: "web_3", IPv4: []netip.Addr{ip("10.0.0.13")}, Ready: true, Ports: http},
		{Service: "web", Slot: 1, Hostname: "web_1", IPv4: []netip.Addr{ip("10.0.0.11")}, IPv6: []netip.Addr{ip("fd00::11")}, Ready: true, Ports: http},
		{Service: "web", Slot: 2, Hostname: "web_2", IPv4: []netip.Addr{ip("10.0.0.12")}, Ready: false, Ports: http},
		{Service: "db", Slot: 1, Hostname: "db-1", IPv4: []netip.Addr{ip("10.0.0.21")}, Ready: true,
			Ports: []Port{{Number: 5432, Name: "postgres"}, {Number: 5353, Proto: "udp"}}},
		{Service: "cache", Slot: 1, Hostname: "cache_1", IPv4: []netip.Addr{ip("10.0.0.31")}, Ready: false},
		{Service: "ghost", Slot: 1, Hostname: "ghost_1", Ready: true},
	}
}

// startServer listens on 127.0.0.1:0 (UDP and TCP) and returns the address.
func startServer(t testing.TB, cfg Config, tbl *Table) (*Server, string) {
	t.Helper()
	if cfg.Zone == "" {
		cfg.Zone = zone
	}
	if cfg.Upstreams == nil {
		cfg.Upstreams = []string{deadAddr(t)}
	}
	s := NewServer(cfg)
	if tbl != nil {
		s.Swap(tbl)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := s.Listen(ctx, []string{"127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	addrs := s.Addrs()
	if len(addrs) != 1 {
		t.Fatalf("Addrs() = %v", addrs)
	}
	return s, addrs[0]
}

// deadAddr returns a local address where nothing listens (UDP nor TCP).
func deadAddr(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	_ = pc.Close()
	return addr
}

func query(t testing.TB, addr, netw, name string, qtype uint16, edns uint16) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	c := &mdns.Client{Net: netw, Timeout: 5 * time.Second, UDPSize: edns}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", netw, name, mdns.TypeToString[qtype], err)
	}
	return r
}

// rawUDP sends q and returns the reply bytes as received.
func rawUDP(t testing.TB, addr string, q *mdns.Msg) []byte {
	t.Helper()
	b, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

func values(rrs []mdns.RR) []string {
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, strings.TrimPrefix(rr.String(), rr.Header().String()))
	}
	return out
}

func hasSOA(rrs []mdns.RR) bool {
	return slices.ContainsFunc(rrs, func(rr mdns.RR) bool { _, ok := rr.(*mdns.SOA); return ok })
}

// fakeWriter is a ResponseWriter that records the packed reply.
type fakeWriter struct {
	remote net.Addr
	msg    *mdns.Msg
	raw    []byte
}

func newFakeWriter(remote string) *fakeWriter {
	return &fakeWriter{remote: net.UDPAddrFromAddrPort(netip.MustParseAddrPort(remote))}
}

func (f *fakeWriter) LocalAddr() net.Addr  { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (f *fakeWriter) RemoteAddr() net.Addr { return f.remote }
func (f *fakeWriter) WriteMsg(m *mdns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	f.msg, f.raw = m, b
	return nil
}
func (f *fakeWriter) Write(b []byte) (int, error) { f.raw = slices.Clone(b); return len(b), nil }
func (f *fakeWriter) Close() error                { return nil }
func (f *fakeWriter) TsigStatus() error           { return nil }
func (f *fakeWriter) TsigTimersOnly(bool)         {}
func (f *fakeWriter) Hijack()                     {}

// fakeUpstream is a miekg server on 127.0.0.1:0 (UDP and TCP) answering
// any A with 192.0.2.1 and any PTR with upstream.example., else NXDOMAIN.
type fakeUpstream struct {
	addr    string
	queries atomic.Int32
}

func startUpstream(t testing.TB) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, req *mdns.Msg) {
		u.queries.Add(1)
		m := new(mdns.Msg)
		m.SetReply(req)
		m.RecursionAvailable = true
		q := req.Question[0]
		switch q.Qtype {
		case mdns.TypeA:
			rr, _ := mdns.NewRR(q.Name + " 60 IN A 192.0.2.1")
			m.Answer = append(m.Answer, rr)
		case mdns.TypePTR:
			rr, _ := mdns.NewRR(q.Name + " 60 IN PTR upstream.example.")
			m.Answer = append(m.Answer, rr)
		default:
			m.Rcode = mdns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	pc, ln, err := listenPair("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range []*mdns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	u.addr = pc.LocalAddr().String()
	return u
}
