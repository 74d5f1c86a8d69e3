package dns

import (
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// FuzzHandler feeds arbitrary packets to the handler as the miekg server
// would (whatever unpacks is handled): it must not panic, and any reply
// must unpack and fit the client's size over UDP.
func FuzzHandler(f *testing.F) {
	seed := func(name string, qtype uint16, edns uint16) {
		m := new(mdns.Msg)
		m.SetQuestion(name, qtype)
		if edns > 0 {
			m.SetEdns0(edns, true)
		}
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, true)
		f.Add(b, false)
	}
	seed("web_1.demo.internal.", mdns.TypeA, 0)
	seed("WEB.", mdns.TypeAAAA, 1232)
	seed("_http._tcp.web.demo.internal.", mdns.TypeSRV, 0)
	seed("11.0.0.10.in-addr.arpa.", mdns.TypePTR, 4096)
	seed("demo.internal.", mdns.TypeANY, 0)
	seed("nothere.demo.internal.", mdns.TypeNS, 0)
	seed("example.com.", mdns.TypeA, 0)
	notify := new(mdns.Msg)
	notify.SetNotify("demo.internal.")
	b, _ := notify.Pack()
	f.Add(b, true)
	f.Add([]byte{0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, true) // no question

	s := NewServer(Config{Zone: zone, Upstreams: []string{deadAddr(f)}, ForwardTimeout: 100 * time.Millisecond})
	s.Swap(NewTable(zone, 0, append(fixture(), manyReplicas(60)...)))
	h := s.Handler()
	f.Fuzz(func(t *testing.T, data []byte, loopback bool) {
		req := new(mdns.Msg)
		if err := req.Unpack(data); err != nil {
			return // the miekg server answers FORMERR or drops it before the handler
		}
		remote := "10.9.9.9:4000"
		if loopback {
			remote = "127.0.0.1:4000"
		}
		w := newFakeWriter(remote)
		h.ServeDNS(w, req)
		if w.raw == nil {
			return
		}
		r := new(mdns.Msg)
		if err := r.Unpack(w.raw); err != nil {
			t.Fatalf("reply does not unpack: %v\n%v", err, w.msg)
		}
		limit := mdns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			limit = min(max(int(opt.UDPSize()), limit), maxUDPSize)
		}
		if len(w.raw) > limit {
			t.Fatalf("reply of %d bytes over UDP, limit %d", len(w.raw), limit)
		}
		if r.Id != req.Id || !r.Response {
			t.Fatalf("reply header %v", r.MsgHdr)
		}
	})
}
