// Package report holds the statistics and markdown shared by roster's
// benchmark drivers: a figure is measured in several runs, shown as
// "median (min–max)", and compared with a peer pair by pair (the ratio of
// run i of roster to run i of the peer, so slow drift of the machine
// cancels out).
package report

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
)

// Summary is the median, min and max of a set of runs.
type Summary struct {
	Median, Min, Max float64
	N                int
}

// Summarize returns the median (mean of the two middle values for an even
// count), min and max of xs. NaN values (failed runs) are ignored; with no
// value left N is 0.
func Summarize(xs []float64) Summary {
	v := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Summary{}
	}
	slices.Sort(v)
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return Summary{Median: m, Min: v[0], Max: v[len(v)-1], N: len(v)}
}

// Ratios returns a[i]/b[i] for each pair (NaN where either is missing or b
// is zero).
func Ratios(a, b []float64) []float64 {
	out := make([]float64, min(len(a), len(b)))
	for i := range out {
		if b[i] == 0 || math.IsNaN(a[i]) || math.IsNaN(b[i]) {
			out[i] = math.NaN()
			continue
		}
		out[i] = a[i] / b[i]
	}
	return out
}

// Format renders s as "median (min–max)" with f formatting each number
// ("—" when there is no value; just the median for a single run).
func (s Summary) Format(f func(float64) string) string {
	switch {
	case s.N == 0:
		return "—"
	case s.N == 1:
		return f(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", f(s.Median), f(s.Min), f(s.Max))
}

// Int formats x rounded to an integer with thousands separators.
func Int(x float64) string {
	if math.IsInf(x, 0) || math.IsNaN(x) {
		return fmt.Sprint(x)
	}
	n := int64(math.Round(x))
	neg := n < 0
	if neg {
		n = -n
	}
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// Fixed returns a formatter with d decimals.
func Fixed(d int) func(float64) string {
	return func(x float64) string { return fmt.Sprintf("%.*f", d, x) }
}

// Sig formats x with 3 significant digits (no exponent for usual values).
func Sig(x float64) string {
	switch ax := math.Abs(x); {
	case ax >= 1000:
		return Int(x)
	case ax >= 100:
		return fmt.Sprintf("%.0f", x)
	case ax >= 10:
		return fmt.Sprintf("%.1f", x)
	case ax >= 1:
		return fmt.Sprintf("%.2f", x)
	default:
		return fmt.Sprintf("%.3g", x)
	}
}

// Table is a markdown table.
type Table struct {
	Header []string
	Rows   [][]string
}

// Add appends a row.
func (t *Table) Add(cells ...string) { t.Rows = append(t.Rows, cells) }

// String renders the table as GitHub markdown.
func (t *Table) String() string {
	var b strings.Builder
	row := func(cells []string) {
		b.WriteString("|")
		for _, c := range cells {
			b.WriteString(" " + strings.ReplaceAll(c, "|", `\|`) + " |")
		}
		b.WriteString("\n")
	}
	row(t.Header)
	sep := make([]string, len(t.Header))
	for i := range sep {
		sep[i] = "---"
	}
	b.WriteString("|" + strings.Join(sep, "|") + "|\n")
	for _, r := range t.Rows {
		row(r)
	}
	return b.String()
}

// Target is one of issue 7's targets with its verdict, as a line of the
// report's "Targets" section.
type Target struct {
	Name  string // e.g. "no-op `up` under 100 ms at 30 replicas"
	Met   bool
	Value string // the measured value, e.g. "28 ms"
	Why   string // one line; required when not met
}

// AppendTarget appends t to the tab-separated file path (bench/run.sh
// collects the file into the report's "Targets" section). An empty path
// does nothing.
func AppendTarget(path string, t Target) error {
	if path == "" {
		return nil
	}
	clean := func(s string) string { return strings.NewReplacer("\t", " ", "\n", " ").Replace(s) }
	verdict := "not met"
	if t.Met {
		verdict = "met"
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "%s\t%s\t%s\t%s\n", clean(t.Name), verdict, clean(t.Value), clean(t.Why))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
