package main

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func TestRotate(t *testing.T) {
	xs := []int{1, 2, 3}
	for i, want := range [][]int{{1, 2, 3}, {2, 3, 1}, {3, 1, 2}, {1, 2, 3}} {
		if got := rotate(xs, i); !slices.Equal(got, want) {
			t.Errorf("rotate(%v, %d) = %v, want %v", xs, i, got, want)
		}
	}
	if !slices.Equal(xs, []int{1, 2, 3}) {
		t.Errorf("rotate changed its input: %v", xs)
	}
}

func TestUpArgs(t *testing.T) {
	r := &tool{bin: "roster"}
	if got := strings.Join(r.upArgs("p", "f", map[string]int{"web": 3}), " "); got != "roster -p p -f f up -d --no-agent" {
		t.Errorf("roster: %s", got)
	}
	a := &tool{bin: "roster", agent: true}
	if got := strings.Join(a.upArgs("p", "f", nil), " "); got != "roster -p p -f f up -d" {
		t.Errorf("roster with agent: %s", got)
	}
	c := &tool{bin: "docker-compose", compose: true}
	if got := strings.Join(c.upArgs("p", "f", map[string]int{"web": 3, "db": 1}), " "); got != "docker-compose -p p -f f up -d --scale db=1 --scale web=3" {
		t.Errorf("compose: %s", got)
	}
}

func TestRatioOrNote(t *testing.T) {
	if got := ratioOrNote([]float64{10, 20}, []float64{5, 10}); got != "2.0 (2.0–2.0)" {
		t.Errorf("ratio: %q", got)
	}
	if got := ratioOrNote([]float64{10}, []float64{-3}); !strings.HasPrefix(got, "—") {
		t.Errorf("negative reference: %q", got)
	}
}

func TestCount(t *testing.T) {
	if got := count([]float64{6, 6, 6}); got != "6" {
		t.Errorf("same: %q", got)
	}
	if got := count([]float64{5, 6, math.NaN()}); got != "6 (5–6)" {
		t.Errorf("different: %q", got)
	}
}
