package report

import (
	"math"
	"testing"
)

func TestSummarize(t *testing.T) {
	s := Summarize([]float64{5, 1, math.NaN(), 3, 9})
	if s != (Summary{Median: 4, Min: 1, Max: 9, N: 4}) {
		t.Fatalf("got %+v", s)
	}
	if s := Summarize([]float64{3, 1, 2}); s.Median != 2 || s.N != 3 {
		t.Fatalf("got %+v", s)
	}
	if s := Summarize(nil); s.N != 0 || s.Format(Int) != "—" {
		t.Fatalf("got %+v", s)
	}
}

func TestRatios(t *testing.T) {
	r := Ratios([]float64{10, 5, 1}, []float64{5, 0, 2})
	if r[0] != 2 || !math.IsNaN(r[1]) || r[2] != 0.5 {
		t.Fatalf("got %v", r)
	}
}

func TestFormat(t *testing.T) {
	for x, want := range map[float64]string{1234567.4: "1,234,567", 999: "999", 0: "0", -1234: "-1,234"} {
		if got := Int(x); got != want {
			t.Errorf("Int(%v) = %q, want %q", x, got, want)
		}
	}
	s := Summary{Median: 1.5, Min: 1, Max: 2, N: 3}
	if got := s.Format(Fixed(2)); got != "1.50 (1.00–2.00)" {
		t.Errorf("got %q", got)
	}
	tb := Table{Header: []string{"a", "b"}}
	tb.Add("x|y", "1")
	if got, want := tb.String(), "| a | b |\n|---|---|\n| x\\|y | 1 |\n"; got != want {
		t.Errorf("got %q want %q", got, want)
	}
}
