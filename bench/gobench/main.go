// Command gobench turns `go test -bench -benchmem -count N` output (stdin)
// into a markdown table: per benchmark, the median (min–max) of each
// metric over the N runs. It passes the raw output through to stderr and
// fails when a benchmark failed or none ran.
//
//	go test -run '^$' -bench . -benchmem -count 5 ./dns/ 2>&1 | go run ./bench/gobench
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/roster-dev/roster/bench/internal/report"
)

func main() {
	md, err := format(os.Stdin, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gobench:", err)
		os.Exit(1)
	}
	fmt.Print(md)
}

var procs = regexp.MustCompile(`-\d+$`)

type bench struct {
	pkg, name string
	metrics   map[string][]float64 // unit -> one value per run
	units     []string             // in first-seen order
}

func format(r io.Reader, raw io.Writer) (string, error) {
	var (
		pkg     string
		order   []*bench
		byKey   = map[string]*bench{}
		failed  bool
		scanner = bufio.NewScanner(r)
	)
	for scanner.Scan() {
		line := scanner.Text()
		fmt.Fprintln(raw, line)
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		if strings.HasPrefix(line, "FAIL") || strings.HasPrefix(line, "--- FAIL") || strings.HasPrefix(line, "panic:") {
			failed = true
		}
		f := strings.Fields(line)
		// BenchmarkX-2  N  v unit  v unit ...
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := procs.ReplaceAllString(f[0], "")
		key := pkg + " " + name
		b := byKey[key]
		if b == nil {
			b = &bench{pkg: pkg, name: name, metrics: map[string][]float64{}}
			byKey[key] = b
			order = append(order, b)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			unit := f[i+1]
			if _, ok := b.metrics[unit]; !ok {
				b.units = append(b.units, unit)
			}
			b.metrics[unit] = append(b.metrics[unit], v)
		}
	}
	if err := scanner.Err(); err != nil {
		return "", err
	}
	if failed {
		return "", fmt.Errorf("a benchmark failed (see output above)")
	}
	if len(order) == 0 {
		return "", fmt.Errorf("no benchmark results in the input")
	}
	t := report.Table{Header: []string{"package", "benchmark", "runs", "ns/op median (min–max)", "B/op", "allocs/op", "other"}}
	for _, b := range order {
		cell := func(unit string, f func(float64) string) string {
			return report.Summarize(b.metrics[unit]).Format(f)
		}
		var other []string
		for _, u := range b.units {
			if !slices.Contains([]string{"ns/op", "B/op", "allocs/op"}, u) {
				other = append(other, cell(u, report.Sig)+" "+u)
			}
		}
		t.Add(strings.TrimPrefix(b.pkg, "github.com/roster-dev/roster/"), b.name,
			strconv.Itoa(len(b.metrics["ns/op"])), cell("ns/op", report.Sig),
			cell("B/op", report.Int), cell("allocs/op", report.Int), strings.Join(other, ", "))
	}
	return t.String(), nil
}
