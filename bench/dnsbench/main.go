// Command dnsbench measures roster's DNS server (bench/dnsserve) against
// CoreDNS's hosts plugin serving the same names, with dnsperf, and prints a
// markdown section (table and method) on stdout. Progress goes to stderr.
//
// Both servers run side by side for the whole benchmark; the runs alternate
// between them (ABBA order, so slow drift of the machine hits both alike)
// and ratios are taken pair by pair. Every load is bounded: dnsperf -l
// (time) for throughput, -Q rate times -l for latency, and a hard deadline
// on every process.
//
//	dnsbench -roster bin/bench/dnsserve -coredns ~/.cache/roster-bench/coredns-v1.14.7/coredns -runs 5 -duration 10s
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/roster-dev/roster/bench/internal/report"
)

const zone = "bench.internal."

type config struct {
	rosterBin, corednsBin, corednsVersion string
	dnsperf                               string
	names, runs, clients, rate            int
	duration, warmup                      time.Duration
	work                                  string
	targets                               string
}

func main() {
	var c config
	flag.StringVar(&c.rosterBin, "roster", "bin/bench/dnsserve", "the bench/dnsserve binary")
	flag.StringVar(&c.corednsBin, "coredns", "", "the CoreDNS binary (bench/coredns.sh prints it)")
	flag.StringVar(&c.corednsVersion, "coredns-version", "", "CoreDNS version, for the report")
	flag.StringVar(&c.dnsperf, "dnsperf", "dnsperf", "the dnsperf binary")
	flag.IntVar(&c.names, "n", 50, "names served (web_1..web_N)")
	flag.IntVar(&c.runs, "runs", 5, "runs per server and figure")
	flag.IntVar(&c.clients, "clients", 4, "dnsperf -c")
	flag.IntVar(&c.rate, "rate", 10000, "fixed query rate (dnsperf -Q) of the latency runs")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "length of each run (dnsperf -l)")
	flag.DurationVar(&c.warmup, "warmup", time.Second, "unmeasured max-throughput run per server before the first round")
	flag.StringVar(&c.work, "work", "", "scratch directory (default: a temporary one, removed at exit)")
	flag.StringVar(&c.targets, "targets", "", "append issue 7's DNS target verdict to this file (report.AppendTarget)")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "dnsbench:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "dnsbench: "+format+"\n", args...)
}

// server is one DNS server under test.
type server struct {
	name string
	cmd  *exec.Cmd
	addr netip.AddrPort
	exit chan error // receives cmd.Wait's result
}

func (s *server) alive() bool {
	select {
	case err := <-s.exit:
		s.exit <- err
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits up to 5 s, then kills.
func (s *server) stop() {
	if s == nil || s.cmd == nil || s.cmd.Process == nil || !s.alive() {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exit:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exit
	}
}

func start(name string, cmd *exec.Cmd) (*server, error) {
	s := &server{name: name, cmd: cmd, exit: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { s.exit <- cmd.Wait() }()
	return s, nil
}

func run(c config) error {
	if c.corednsBin == "" {
		return errors.New("-coredns is required (run bench/coredns.sh)")
	}
	if c.runs < 1 || c.names < 1 || c.names > 65534 || c.clients < 1 || c.rate < 1 || c.duration < time.Second {
		return errors.New("bad -runs/-n/-clients/-rate/-duration")
	}
	if c.work == "" {
		dir, err := os.MkdirTemp("", "dnsbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		c.work = dir
	}
	queries := filepath.Join(c.work, "queries.txt")
	hosts := filepath.Join(c.work, "hosts")
	corefile := filepath.Join(c.work, "Corefile")
	var q, h bytes.Buffer
	for i := 1; i <= c.names; i++ {
		fmt.Fprintf(&q, "web_%d.bench.internal A\n", i)
		fmt.Fprintf(&h, "%s web_%d.bench.internal\n", replicaIP(i), i)
	}
	if err := os.WriteFile(queries, q.Bytes(), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(hosts, h.Bytes(), 0o644); err != nil {
		return err
	}

	// roster: dnsserve picks a free port and prints "ready ADDR".
	rs, err := startRoster(c)
	if err != nil {
		return err
	}
	defer rs.stop()
	cs, err := startCoreDNS(c, corefile, hosts)
	if err != nil {
		return err
	}
	defer cs.stop()
	servers := []*server{rs, cs}
	for _, s := range servers {
		if err := verify(s, c.names); err != nil {
			return err
		}
		logf("%s on %s: %d names verified (UDP and TCP)", s.name, s.addr, c.names)
	}

	for _, s := range servers {
		logf("warm-up %s %s", s.name, c.warmup)
		if _, err := dnsperf(c, s, queries, c.warmup, 0); err != nil {
			return err
		}
	}
	res := map[string]*results{rs.name: {}, cs.name: {}}
	for r := range c.runs {
		order := servers
		if r%2 == 1 {
			order = []*server{cs, rs}
		}
		// Max throughput: one run of c.duration per server.
		tps := map[string]*perf{}
		cpus := map[string]float64{}
		for _, s := range order {
			if !s.alive() {
				return fmt.Errorf("%s exited during the benchmark", s.name)
			}
			cpu0, err := cpuSeconds(s.cmd.Process.Pid)
			if err != nil {
				return err
			}
			if tps[s.name], err = dnsperf(c, s, queries, c.duration, 0); err != nil {
				return err
			}
			cpu1, err := cpuSeconds(s.cmd.Process.Pid)
			if err != nil {
				return err
			}
			cpus[s.name] = cpu1 - cpu0
		}
		// Latency at a fixed rate: 1 s slices alternating between the
		// servers, pooled per server, so that the machine's slow phases
		// (tens of seconds on a small VM) hit both alike.
		lats := map[string]*perf{rs.name: {}, cs.name: {}}
		for range int(c.duration / time.Second) {
			for _, s := range order {
				p, err := dnsperf(c, s, queries, time.Second, c.rate)
				if err != nil {
					return err
				}
				lats[s.name].merge(p)
			}
		}
		for _, s := range order {
			tp, lat := tps[s.name], lats[s.name]
			lat.finish()
			res[s.name].add(tp, lat, cpus[s.name])
			logf("run %d/%d %-7s %s q/s, avg %.0f µs, lost %d | at %d q/s: p50 %s µs, p99 %s µs, lost %d",
				r+1, c.runs, s.name, fmtInt(tp.qps), tp.avgLatency*1e6, tp.lost,
				c.rate, fmtMicros(lat.pct(0.50)), fmtMicros(lat.pct(0.99)), lat.lost)
		}
	}
	for _, s := range servers {
		res[s.name].rssMiB, res[s.name].hwmMiB, _ = memory(s.cmd.Process.Pid)
	}
	fmt.Print(markdown(c, rs, cs, res[rs.name], res[cs.name]))
	return report.AppendTarget(c.targets, target(res[rs.name], res[cs.name]))
}

// replicaIP is the address of slot i, as bench/dnsserve serves it.
func replicaIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 77, byte(i >> 8), byte(i)})
}

func startRoster(c config) (*server, error) {
	cmd := exec.Command(c.rosterBin, "-addr", "127.0.0.1:0", "-n", strconv.Itoa(c.names))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	s, err := start("roster", cmd)
	if err != nil {
		return nil, err
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case l := <-line:
		f := strings.Fields(l)
		if len(f) != 2 || f[0] != "ready" {
			s.stop()
			return nil, fmt.Errorf("dnsserve said %q, want \"ready ADDR\"", l)
		}
		if s.addr, err = netip.ParseAddrPort(f[1]); err != nil {
			s.stop()
			return nil, fmt.Errorf("dnsserve: %w", err)
		}
		return s, nil
	case <-time.After(10 * time.Second):
		s.stop()
		return nil, errors.New("dnsserve not ready after 10 s")
	}
}

// freePort returns a port free for both UDP and TCP on 127.0.0.1 (it may be
// taken again before CoreDNS binds it; startCoreDNS then fails clearly).
func freePort() (int, error) {
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		_ = pc.Close()
		if err == nil {
			_ = ln.Close()
			return p, nil
		}
	}
	return 0, errors.New("no free port")
}

func startCoreDNS(c config, corefile, hosts string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	// The hosts plugin answers the zone from the file (NXDOMAIN for other
	// names in it, no fallthrough); same positive TTL as roster (5 s); no
	// periodic reload; no cache plugin (roster has no cache either: both
	// answer every query from an in-memory table); errors only, no log.
	conf := fmt.Sprintf(`%s:%d {
    bind 127.0.0.1
    hosts %s {
        ttl 5
        reload 0
        no_reverse
    }
    errors
}
`, zone, port, hosts)
	if err := os.WriteFile(corefile, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(c.corednsBin, "-conf", corefile, "-quiet")
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	s, err := start("CoreDNS", cmd)
	if err != nil {
		return nil, err
	}
	s.addr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	cl := &mdns.Client{Net: "udp", Timeout: 200 * time.Millisecond}
	m := new(mdns.Msg)
	m.SetQuestion("web_1."+zone, mdns.TypeA)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if !s.alive() {
			return nil, fmt.Errorf("CoreDNS exited at start (see above): %v", <-s.exit)
		}
		if r, _, err := cl.Exchange(m, s.addr.String()); err == nil && r.Rcode == mdns.RcodeSuccess {
			return s, nil
		}
	}
	s.stop()
	return nil, fmt.Errorf("CoreDNS not answering on %s after 20 s", s.addr)
}

// verify checks that s answers each name with exactly its address (UDP and
// TCP) and an unknown name in the zone with NXDOMAIN, so both servers are
// known to do the same work.
func verify(s *server, names int) error {
	for _, netw := range []string{"udp", "tcp"} {
		cl := &mdns.Client{Net: netw, Timeout: 2 * time.Second}
		for i := 1; i <= names+1; i++ {
			m := new(mdns.Msg)
			m.SetQuestion(fmt.Sprintf("web_%d.%s", i, zone), mdns.TypeA)
			r, _, err := cl.Exchange(m, s.addr.String())
			if err != nil {
				return fmt.Errorf("verify %s over %s: %s: %w", s.name, netw, m.Question[0].Name, err)
			}
			if i > names {
				// CoreDNS's hosts plugin has no SOA and answers SERVFAIL
				// for unknown names; roster must say NXDOMAIN. Only known
				// names are benchmarked.
				if s.name == "roster" && r.Rcode != mdns.RcodeNameError {
					return fmt.Errorf("verify %s: %s: rcode %s, want NXDOMAIN", s.name, m.Question[0].Name, mdns.RcodeToString[r.Rcode])
				}
				continue
			}
			if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
				return fmt.Errorf("verify %s: %s: rcode %s, %d answers", s.name, m.Question[0].Name, mdns.RcodeToString[r.Rcode], len(r.Answer))
			}
			a, ok := r.Answer[0].(*mdns.A)
			if !ok || !a.A.Equal(net.IP(replicaIP(i).AsSlice())) {
				return fmt.Errorf("verify %s: %s: got %s", s.name, m.Question[0].Name, r.Answer[0])
			}
		}
	}
	return nil
}

// perf is one dnsperf run.
type perf struct {
	sent, completed, lost int
	qps                   float64
	avgLatency            float64   // seconds, over completed queries
	latencies             []float64 // seconds, each completed query (-v runs only), sorted
	noerror               int
}

// merge adds the queries of another run of the same kind.
func (p *perf) merge(o *perf) {
	p.sent += o.sent
	p.completed += o.completed
	p.lost += o.lost
	p.noerror += o.noerror
	p.latencies = append(p.latencies, o.latencies...)
}

// finish sorts the latencies after merges.
func (p *perf) finish() { slices.Sort(p.latencies) }

// pct returns the q-quantile (nearest rank) of the per-query latencies,
// counting lost queries as infinitely slow, so a p99 is never better than
// what 99 % of the sent queries got.
func (p *perf) pct(q float64) float64 {
	if p.sent == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(q*float64(p.sent))) - 1
	if rank < len(p.latencies) {
		return p.latencies[max(rank, 0)]
	}
	return math.Inf(1)
}

// dnsperf runs dnsperf against s for d, at most rate queries per second
// (0: as fast as the server answers, 100 outstanding). With a rate it
// records every query's latency (-v).
func dnsperf(c config, s *server, queries string, d time.Duration, rate int) (*perf, error) {
	secs := int(d.Round(time.Second) / time.Second)
	args := []string{"-s", s.addr.Addr().String(), "-p", strconv.Itoa(int(s.addr.Port())),
		"-d", queries, "-l", strconv.Itoa(secs), "-c", strconv.Itoa(c.clients), "-t", "2"}
	if rate > 0 {
		args = append(args, "-Q", strconv.Itoa(rate), "-v")
	}
	// -l bounds the sending; outstanding queries time out after -t 2 s.
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.dnsperf, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	// The output (one line per query with -v) goes to a file and is parsed
	// afterwards, so no parser competes for the CPU during the run.
	out, err := os.Create(filepath.Join(c.work, "dnsperf.out"))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd.Stdout = out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("dnsperf %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	p, err := parseDnsperf(out)
	if err != nil {
		return nil, fmt.Errorf("dnsperf %s: %w", strings.Join(args, " "), err)
	}
	if p.noerror != p.completed {
		return nil, fmt.Errorf("%s: %d of %d answers were not NOERROR", s.name, p.completed-p.noerror, p.completed)
	}
	if rate > 0 && len(p.latencies) != p.completed {
		return nil, fmt.Errorf("dnsperf -v: %d latencies for %d completed queries", len(p.latencies), p.completed)
	}
	return p, nil
}

func parseDnsperf(r io.Reader) (*perf, error) {
	p := &perf{}
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "> "); ok {
			// "> NOERROR web_1.bench.internal A 0.000049" or "> T name A" (lost)
			f := strings.Fields(rest)
			if len(f) == 4 && f[0] != "T" {
				v, err := strconv.ParseFloat(f[3], 64)
				if err != nil {
					return nil, fmt.Errorf("bad line %q", line)
				}
				p.latencies = append(p.latencies, v)
			}
			continue
		}
		key, val, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		first := strings.Fields(val + " x")[0]
		var err error
		switch key {
		case "Queries sent":
			p.sent, err = strconv.Atoi(first)
		case "Queries completed":
			p.completed, err = strconv.Atoi(first)
		case "Queries lost":
			p.lost, err = strconv.Atoi(first)
		case "Queries per second":
			p.qps, err = strconv.ParseFloat(first, 64)
		case "Average Latency (s)":
			p.avgLatency, err = strconv.ParseFloat(first, 64)
		case "Response codes":
			// "NOERROR 123 (100.00%), NXDOMAIN 2 (..)"
			for _, part := range strings.Split(val, ",") {
				f := strings.Fields(part)
				if len(f) >= 2 && f[0] == "NOERROR" {
					p.noerror, err = strconv.Atoi(f[1])
				}
			}
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("bad line %q", line)
		}
		seen[key] = true
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, k := range []string{"Queries sent", "Queries completed", "Queries lost", "Queries per second", "Average Latency (s)"} {
		if !seen[k] {
			return nil, fmt.Errorf("no %q in the output", k)
		}
	}
	slices.Sort(p.latencies)
	return p, nil
}

// cpuSeconds is the user+system CPU time the process has used.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the ")" of the command name: state is field 3, utime 14, stime 15.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return (ut + st) / clockTicks(), nil
}

func clockTicks() float64 {
	if out, err := exec.Command("getconf", "CLK_TCK").Output(); err == nil {
		if v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err == nil && v > 0 {
			return v
		}
	}
	return 100
}

// memory returns the resident set and its peak, in MiB.
func memory(pid int) (rss, hwm float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return math.NaN(), math.NaN(), err
	}
	rss, hwm = math.NaN(), math.NaN()
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		kb, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			rss = kb / 1024
		case "VmHWM":
			hwm = kb / 1024
		}
	}
	return rss, hwm, nil
}
