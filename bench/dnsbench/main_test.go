package main

import (
	"math"
	"strings"
	"testing"
)

const verbose = `DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -s 127.0.0.1 -p 15353 -d q.txt -n 1 -v
> NOERROR web_1.bench.internal A 0.000300
> T web_2.bench.internal A
> NOERROR web_3.bench.internal A 0.000100
> NOERROR web_4.bench.internal A 0.000200
[Status] Testing complete (end of file)

Statistics:

  Queries sent:         4
  Queries completed:    3 (75.00%)
  Queries lost:         1 (25.00%)

  Response codes:       NOERROR 3 (100.00%)
  Average packet size:  request 38, response 54
  Run time (s):         0.000769
  Queries per second:   5201.560468

  Average Latency (s):  0.000200 (min 0.000100, max 0.000300)
  Latency StdDev (s):   0.000126
`

func TestParseDnsperf(t *testing.T) {
	p, err := parseDnsperf(strings.NewReader(verbose))
	if err != nil {
		t.Fatal(err)
	}
	if p.sent != 4 || p.completed != 3 || p.lost != 1 || p.noerror != 3 || p.qps != 5201.560468 || p.avgLatency != 0.0002 {
		t.Fatalf("got %+v", p)
	}
	if got := p.pct(0.5); got != 0.0002 {
		t.Errorf("p50 = %v", got)
	}
	if got := p.pct(0.75); got != 0.0003 {
		t.Errorf("p75 = %v", got)
	}
	// The lost query is the slowest: p99 of 4 queries is the 4th.
	if got := p.pct(0.99); !math.IsInf(got, 1) {
		t.Errorf("p99 = %v, want +Inf (lost)", got)
	}
	if _, err := parseDnsperf(strings.NewReader("garbage\n")); err == nil {
		t.Error("no error on garbage")
	}
}

func TestMerge(t *testing.T) {
	a := &perf{sent: 2, completed: 2, noerror: 2, latencies: []float64{0.3, 0.1}}
	b := &perf{sent: 2, completed: 1, lost: 1, noerror: 1, latencies: []float64{0.2}}
	p := &perf{}
	p.merge(a)
	p.merge(b)
	p.finish()
	if p.sent != 4 || p.completed != 3 || p.lost != 1 || p.pct(0.5) != 0.2 || p.pct(0.75) != 0.3 || !math.IsInf(p.pct(1), 1) {
		t.Fatalf("got %+v", p)
	}
}
