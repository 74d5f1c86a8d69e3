package main

import (
	"io"
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/roster-dev/roster/dns
cpu: Some CPU
BenchmarkHandler-2   	 1000000	      1000 ns/op	     400 B/op	      10 allocs/op
BenchmarkHandler-2   	 1000000	      3000 ns/op	     400 B/op	      10 allocs/op
BenchmarkHandler-2   	 1000000	      2000 ns/op	     400 B/op	      10 allocs/op
PASS
ok  	github.com/roster-dev/roster/dns	3.1s
pkg: github.com/roster-dev/roster/reconciler
BenchmarkPlan/1000-2 	     100	  10000000 ns/op	   5.5 containers/op
PASS
`

func TestFormat(t *testing.T) {
	md, err := format(strings.NewReader(sample), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| dns | BenchmarkHandler | 3 | 2,000 (1,000–3,000) | 400 (400–400) | 10 (10–10) |  |",
		"| reconciler | BenchmarkPlan/1000 | 1 | 10,000,000 | — | — | 5.50 containers/op |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("missing %q in\n%s", want, md)
		}
	}
	if _, err := format(strings.NewReader("--- FAIL: BenchmarkX\nFAIL\n"), io.Discard); err == nil {
		t.Error("failure not reported")
	}
}
