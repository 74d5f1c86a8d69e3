package main

import (
	"fmt"
	"math"
	"os/exec"
	"strings"

	"github.com/roster-dev/roster/bench/internal/report"
)

// results are one server's figures, one entry per run.
type results struct {
	qps, avgUs, cpuUs []float64
	p50, p99, p999    []float64 // µs at the fixed rate; +Inf when lost queries reach that rank
	tpSent, tpLost    int
	latSent, latLost  int
	rssMiB, hwmMiB    float64
}

func (r *results) add(tp, lat *perf, cpuSec float64) {
	r.qps = append(r.qps, tp.qps)
	r.avgUs = append(r.avgUs, tp.avgLatency*1e6)
	cpu := math.NaN()
	if tp.completed > 0 {
		cpu = cpuSec / float64(tp.completed) * 1e6
	}
	r.cpuUs = append(r.cpuUs, cpu)
	r.p50 = append(r.p50, lat.pct(0.50)*1e6)
	r.p99 = append(r.p99, lat.pct(0.99)*1e6)
	r.p999 = append(r.p999, lat.pct(0.999)*1e6)
	r.tpSent += tp.sent
	r.tpLost += tp.lost
	r.latSent += lat.sent
	r.latLost += lat.lost
}

func fmtInt(x float64) string { return report.Int(x) }

func fmtMicros(us float64) string {
	if math.IsInf(us, 1) {
		return "lost"
	}
	return report.Sig(us * 1e6)
}

func micros(x float64) string {
	if math.IsInf(x, 1) {
		return "lost (>2 s)"
	}
	return report.Sig(x)
}

func lost(n, of int) string {
	pct := 0.0
	if of > 0 {
		pct = 100 * float64(n) / float64(of)
	}
	return fmt.Sprintf("%s of %s (%.3f %%)", report.Int(float64(n)), report.Int(float64(of)), pct)
}

func dnsperfVersion(bin string) string {
	out, _ := exec.Command(bin, "-h").CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "Version "); ok {
			return v
		}
	}
	return "?"
}

func markdown(c config, rs, cs *server, ro, co *results) string {
	t := report.Table{Header: []string{"figure", "roster median (min–max)", "CoreDNS median (min–max)", "ratio roster/CoreDNS, pair by pair, median (min–max)"}}
	row := func(name string, a, b []float64, f func(float64) string) {
		t.Add(name, report.Summarize(a).Format(f), report.Summarize(b).Format(f),
			report.Summarize(report.Ratios(a, b)).Format(report.Fixed(2)))
	}
	row("throughput, UDP, max (queries/s, higher is better)", ro.qps, co.qps, report.Int)
	row("average latency at max throughput (µs)", ro.avgUs, co.avgUs, report.Sig)
	row("server CPU per answered query at max throughput (µs, lower is better)", ro.cpuUs, co.cpuUs, report.Sig)
	rate := report.Int(float64(c.rate))
	row("p50 latency at "+rate+" queries/s (µs)", ro.p50, co.p50, micros)
	row("p99 latency at "+rate+" queries/s (µs, lower is better)", ro.p99, co.p99, micros)
	row("p99.9 latency at "+rate+" queries/s (µs)", ro.p999, co.p999, micros)
	t.Add("lost queries, max throughput (all runs)", lost(ro.tpLost, ro.tpSent), lost(co.tpLost, co.tpSent), "—")
	t.Add("lost queries, "+rate+" queries/s (all runs)", lost(ro.latLost, ro.latSent), lost(co.latLost, co.latSent), "—")
	mem := func(r *results) string { return fmt.Sprintf("%.1f (peak %.1f)", r.rssMiB, r.hwmMiB) }
	ratio := "—"
	if co.rssMiB > 0 {
		ratio = fmt.Sprintf("%.2f", ro.rssMiB/co.rssMiB)
	}
	t.Add("server resident memory after the runs (MiB)", mem(ro), mem(co), ratio)

	var b strings.Builder
	fmt.Fprintf(&b, "### DNS: roster vs CoreDNS `hosts` plugin, %d names\n\n", c.names)
	b.WriteString(t.String())
	b.WriteString("\n" + verdict(c, ro, co))
	secs := int(c.duration.Seconds())
	fmt.Fprintf(&b, `
How it was measured (bench/dnsbench): roster = bench/dnsserve (roster's dns
package, %d ready replicas web_1..web_%d in zone bench.internal.); CoreDNS %s
(built from the Go module proxy by bench/coredns.sh) with the hosts plugin
serving the same %d names from a hosts file (ttl 5, no reload, no cache plugin,
errors only). Both run side by side on 127.0.0.1 for the whole benchmark and
are checked first to give the same answer for every name, over UDP and TCP
(for an unknown name in the zone roster answers NXDOMAIN with SOA, CoreDNS's
hosts plugin SERVFAIL, as it has no SOA; only known names are benchmarked). Queries: A for web_1..web_%d.bench.internal in
turn. dnsperf %s, UDP, %d clients (-c %d), on the same machine as the
servers. Each of the %d rounds runs, for each server in turn (order
alternating ABBA):
- max throughput: dnsperf -l %d (no -Q: as fast as the server answers, 100
  queries outstanding); queries/s and average latency as dnsperf reports them;
  CPU = user+system time of the server process during the run / answered
  queries;
- latency: %d one-second slices of dnsperf -l 1 -Q %d -v (a fixed rate both
  servers sustain), alternating between the servers so that the machine's
  slow phases hit both alike, pooled per server; percentiles by nearest rank
  over every sent query's own latency as dnsperf prints it, lost queries (no
  answer within 2 s, -t 2) counted as infinitely slow, so a p99 is what 99 %%
  of the sent queries at least got.
Ratios are computed run by run (round i of roster / round i of CoreDNS); > 1
means roster is higher (better for throughput, worse for latency, CPU and
memory). All answers were NOERROR. %d s of unmeasured warm-up per server
precede the first round.
`, c.names, c.names, orUnknown(c.corednsVersion), c.names, c.names, dnsperfVersion(c.dnsperf),
		c.clients, c.clients, c.runs, secs, secs, c.rate, int(c.warmup.Seconds()))
	return b.String()
}

func orUnknown(s string) string {
	if s == "" {
		return "(version not given)"
	}
	return s
}

// verdict states plainly whether roster met issue 7's DNS target
// (throughput at least CoreDNS's) and how the p99 latencies compare.
func verdict(c config, ro, co *results) string {
	tp := report.Summarize(report.Ratios(ro.qps, co.qps))
	rq, cq := report.Summarize(ro.qps), report.Summarize(co.qps)
	var b strings.Builder
	switch {
	case tp.N == 0:
		b.WriteString("**Throughput: no comparable runs.**")
	case tp.Median >= 1:
		fmt.Fprintf(&b, "**Throughput target (at least CoreDNS's) met**: roster answered %s queries/s, CoreDNS %s (median ratio %.2f, %.2f–%.2f).",
			report.Int(rq.Median), report.Int(cq.Median), tp.Median, tp.Min, tp.Max)
	default:
		fmt.Fprintf(&b, "**Throughput target (at least CoreDNS's) NOT met: roster is slower than CoreDNS**, %s queries/s against %s (median ratio %.2f, %.2f–%.2f).",
			report.Int(rq.Median), report.Int(cq.Median), tp.Median, tp.Min, tp.Max)
	}
	p99 := report.Summarize(report.Ratios(ro.p99, co.p99))
	if p99.N > 0 && !math.IsNaN(p99.Median) && !math.IsInf(p99.Median, 0) {
		word := "lower (better)"
		if p99.Median > 1 {
			word = "higher (worse)"
		}
		fmt.Fprintf(&b, " p99 latency at %s queries/s: roster %s µs, CoreDNS %s µs, roster's is %s (median ratio %.2f).",
			report.Int(float64(c.rate)), micros(report.Summarize(ro.p99).Median), micros(report.Summarize(co.p99).Median), word, p99.Median)
	}
	if ro.tpLost+ro.latLost > 0 {
		fmt.Fprintf(&b, " roster lost %d queries.", ro.tpLost+ro.latLost)
	}
	return b.String() + "\n"
}

// target is issue 7's DNS target: throughput at least CoreDNS's.
func target(ro, co *results) report.Target {
	t := report.Target{Name: "DNS throughput at least CoreDNS's (`hosts` plugin, 50 names)"}
	tp := report.Summarize(report.Ratios(ro.qps, co.qps))
	if tp.N == 0 {
		t.Value, t.Why = "no comparable runs", "no run of both servers completed"
		return t
	}
	t.Met = tp.Median >= 1
	t.Value = fmt.Sprintf("%s vs %s queries/s, ratio %.2f", report.Int(report.Summarize(ro.qps).Median), report.Int(report.Summarize(co.qps).Median), tp.Median)
	if !t.Met {
		t.Why = "roster answered fewer queries per second than CoreDNS in the median pair (see the DNS section and NOTES)"
	}
	return t
}
