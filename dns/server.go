package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

const (
	// maxUDPSize is the EDNS0 UDP payload size we advertise and the most
	// we send over UDP, whatever larger size a client advertises.
	maxUDPSize = 4096
	// DefaultForwardTimeout is the per-upstream timeout when Config has none.
	DefaultForwardTimeout = 2 * time.Second
	resolvConf            = "/etc/resolv.conf"
)

// Config configures a Server.
type Config struct {
	Zone string
	// Upstreams are "ip:port" (or "ip", port 53) of the resolvers that
	// names outside the zone are forwarded to, tried in order. Empty means
	// the nameservers of /etc/resolv.conf.
	Upstreams []string
	// Allowed are the clients that may use forwarding; loopback and the
	// server's own addresses always may. Others get REFUSED for names that
	// are not ours (our names are answered to anyone who can reach us).
	Allowed        []netip.Prefix
	Logger         *slog.Logger
	ForwardTimeout time.Duration // per upstream; default 2s
}

// Server is an authoritative server for a Table's names and a forwarder
// for everything else.
type Server struct {
	cfg   Config
	log   *slog.Logger
	table atomic.Pointer[Table]
	st    atomic.Pointer[state]

	mu      sync.Mutex
	servers []*mdns.Server
	done    chan struct{}
}

// state is what Listen learns and the handler needs.
type state struct {
	ctx       context.Context
	addrs     []string     // bound UDP addresses
	local     []netip.Addr // bound IPs: clients using them are the host itself
	nsAddr    netip.Addr   // served for the NS target
	upstreams []string
}

// NewServer returns a server that answers SERVFAIL for the zone until the
// first Swap.
func NewServer(cfg Config) *Server {
	s := &Server{cfg: cfg, log: cfg.Logger, done: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.cfg.Zone = normalizeZone(cfg.Zone)
	if s.cfg.ForwardTimeout <= 0 {
		s.cfg.ForwardTimeout = DefaultForwardTimeout
	}
	ups := slices.Clone(cfg.Upstreams)
	if len(ups) == 0 {
		var err error
		if ups, err = UpstreamsFromResolvConf(resolvConf); err != nil {
			s.log.Warn("dns: no upstream resolvers, names outside the zone will fail", "err", err)
		}
	}
	for i, u := range ups {
		if _, _, err := net.SplitHostPort(u); err != nil {
			ups[i] = net.JoinHostPort(u, "53")
		}
	}
	s.st.Store(&state{ctx: context.Background(), nsAddr: netip.AddrFrom4([4]byte{127, 0, 0, 1}), upstreams: ups})
	return s
}

// UpstreamsFromResolvConf returns the nameservers of a resolv.conf file as
// "ip:port".
func UpstreamsFromResolvConf(path string) ([]string, error) {
	cc, err := mdns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	out := make([]string, 0, len(cc.Servers))
	for _, srv := range cc.Servers {
		out = append(out, net.JoinHostPort(srv, cc.Port))
	}
	return out, nil
}

// Swap atomically replaces the served table; the next query sees it.
func (s *Server) Swap(t *Table) { s.table.Store(t) }

// Handler returns the query handler (for tests and fuzzing).
func (s *Server) Handler() mdns.Handler { return mdns.HandlerFunc(s.serveDNS) }

// Addrs returns the bound UDP addresses (TCP uses the same ones).
func (s *Server) Addrs() []string { return slices.Clone(s.st.Load().addrs) }

// Listen binds UDP and TCP on each "ip:port" (port 0 picks a free port,
// the same for both), returns once all are serving, and serves until ctx
// ends or Close is called. Upstreams equal to a bound address are dropped
// to avoid forwarding loops.
func (s *Server) Listen(ctx context.Context, addrs []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.servers != nil {
		return errors.New("dns: server already listening")
	}
	select {
	case <-s.done:
		return errors.New("dns: server closed")
	default:
	}
	var servers []*mdns.Server
	fail := func(err error) error {
		for _, srv := range servers {
			_ = srv.Shutdown()
		}
		return err
	}
	old := s.st.Load()
	st := &state{ctx: ctx, nsAddr: old.nsAddr}
	foundNS := false
	for _, addr := range addrs {
		pc, ln, err := listenPair(addr)
		if err != nil {
			return fail(fmt.Errorf("listen %s: %w", addr, err))
		}
		bound := pc.LocalAddr().String()
		for _, srv := range []*mdns.Server{
			{PacketConn: pc, Handler: s.Handler(), UDPSize: maxUDPSize},
			{Listener: ln, Handler: s.Handler()},
		} {
			if err := s.start(srv); err != nil {
				_ = pc.Close()
				_ = ln.Close()
				return fail(fmt.Errorf("listen %s: %w", addr, err))
			}
			servers = append(servers, srv)
		}
		st.addrs = append(st.addrs, bound)
		ap, err := netip.ParseAddrPort(bound)
		if err != nil {
			continue
		}
		ip := ap.Addr().Unmap()
		st.local = append(st.local, ip)
		if !foundNS && ip.Is4() && !ip.IsLoopback() && !ip.IsUnspecified() {
			st.nsAddr, foundNS = ip, true
		}
	}
	for _, u := range old.upstreams {
		if !slices.Contains(st.addrs, u) {
			st.upstreams = append(st.upstreams, u)
		}
	}
	s.servers = servers
	s.st.Store(st)
	s.log.Info("dns: listening", "addrs", st.addrs, "upstreams", st.upstreams)
	go func() {
		select {
		case <-ctx.Done():
			_ = s.Close()
		case <-s.done:
		}
	}()
	return nil
}

// start runs srv in the background and waits until it is serving.
func (s *Server) start(srv *mdns.Server) error {
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	errc := make(chan error, 1)
	go func() {
		err := srv.ActivateAndServe()
		errc <- err
		if err != nil {
			s.log.Debug("dns: server stopped", "err", err)
		}
	}()
	select {
	case <-started:
		return nil
	case err := <-errc:
		return err
	}
}

// listenPair binds UDP on addr and TCP on the same ip:port. With port 0 it
// retries when the kernel's UDP port is taken for TCP.
func listenPair(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	for try := 0; ; try++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		p := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err == nil {
			return pc, ln, nil
		}
		_ = pc.Close()
		if port != "0" || try >= 10 {
			return nil, nil, err
		}
	}
}

// Close stops serving and waits for in-flight queries.
func (s *Server) Close() error {
	s.mu.Lock()
	servers := s.servers
	s.servers = nil
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	s.mu.Unlock()
	var errs []error
	for _, srv := range servers {
		if err := srv.Shutdown(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func remoteAddr(w mdns.ResponseWriter) (ip netip.Addr, tcp bool) {
	switch a := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap(), false
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap(), true
	case nil:
		return netip.Addr{}, false
	default:
		ap, _ := netip.ParseAddrPort(a.String())
		return ap.Addr().Unmap(), a.Network() == "tcp"
	}
}

// allowed reports whether a client may use forwarding.
func (s *Server) allowed(st *state, ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.WithZone("")
	if ip.IsLoopback() || slices.Contains(st.local, ip) {
		return true
	}
	for _, p := range s.cfg.Allowed {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func (s *Server) serveDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	if req.Response {
		return // never answer answers
	}
	st := s.st.Load()
	client, tcp := remoteAddr(w)
	allowed := s.allowed(st, client)
	opt := req.IsEdns0()
	m := new(mdns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = allowed
	switch {
	case req.Opcode != mdns.OpcodeQuery:
		m.Rcode = mdns.RcodeNotImplemented
	case len(req.Question) != 1:
		m.Rcode = mdns.RcodeFormatError
	case opt != nil && opt.Version() != 0:
		m.Rcode = mdns.RcodeBadVers
	default:
		q := req.Question[0]
		if s.authoritative(m, q, st) {
			break
		}
		if !allowed {
			m.Rcode = mdns.RcodeRefused
			break
		}
		if r := s.forward(st, req, tcp); r != nil {
			s.write(w, r, opt, tcp)
			return
		}
		m.Rcode = mdns.RcodeServerFailure
	}
	if opt != nil {
		m.SetEdns0(maxUDPSize, opt.Do())
	}
	s.write(w, m, opt, tcp)
}

// authoritative fills m when q is ours and reports whether it was.
func (s *Server) authoritative(m *mdns.Msg, q mdns.Question, st *state) bool {
	if q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY {
		return false
	}
	t := s.table.Load()
	if t == nil {
		// No table yet: do not let our names be forwarded or negatively
		// cached; resolvers retry on SERVFAIL.
		name := mdns.CanonicalName(q.Name)
		if mdns.IsSubDomain(s.cfg.Zone, name) || mdns.CountLabel(name) == 1 {
			m.Rcode = mdns.RcodeServerFailure
			return true
		}
		return false
	}
	if q.Qtype == mdns.TypeAXFR || q.Qtype == mdns.TypeIXFR {
		if !t.inZone(mdns.CanonicalName(q.Name)) {
			return false
		}
		m.Rcode = mdns.RcodeRefused // no zone transfers
		return true
	}
	res, ok := t.lookup(q, st.nsAddr)
	if !ok {
		return false
	}
	m.Authoritative = true
	m.Rcode = res.rcode
	m.Answer = res.answer
	m.Extra = res.extra
	if res.soa {
		m.Ns = []mdns.RR{t.soa(negTTL)}
	}
	return true
}

// forward sends req to the upstreams in order and returns the first
// answer that is not SERVFAIL/REFUSED/NOTIMP (else the last such answer),
// or nil when none answered.
func (s *Server) forward(st *state, req *mdns.Msg, tcp bool) *mdns.Msg {
	c := &mdns.Client{Net: "udp", Timeout: s.cfg.ForwardTimeout}
	if tcp {
		c.Net = "tcp"
	}
	fq := req.Copy()
	fq.Id = mdns.Id()
	var last *mdns.Msg
	for _, up := range st.upstreams {
		ctx, cancel := context.WithTimeout(st.ctx, s.cfg.ForwardTimeout)
		r, _, err := c.ExchangeContext(ctx, fq, up)
		cancel()
		if err != nil {
			s.log.Debug("dns: forward failed", "upstream", up, "name", req.Question[0].Name, "err", err)
			continue
		}
		last = r
		if r.Rcode != mdns.RcodeServerFailure && r.Rcode != mdns.RcodeRefused && r.Rcode != mdns.RcodeNotImplemented {
			break
		}
	}
	if last != nil {
		last.Id = req.Id
	}
	return last
}

// write sends m, truncated to what the client accepts: 512 bytes over UDP
// without EDNS0, the advertised size (at most maxUDPSize) with it, 64 KiB
// over TCP. Truncation keeps whole records and sets TC.
func (s *Server) write(w mdns.ResponseWriter, m *mdns.Msg, opt *mdns.OPT, tcp bool) {
	size := mdns.MinMsgSize
	switch {
	case tcp:
		size = mdns.MaxMsgSize
	case opt != nil:
		size = min(max(int(opt.UDPSize()), mdns.MinMsgSize), maxUDPSize)
	}
	m.Truncate(size)
	m.Compress = true
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("dns: write reply", "err", err)
	}
}
