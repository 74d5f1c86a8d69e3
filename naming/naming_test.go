package naming

import (
	"slices"
	"strings"
	"testing"
)

func TestHostname(t *testing.T) {
	cases := []struct {
		tmpl, project, service string
		n                      int
		want, err              string
	}{
		{"", "demo", "web", 1, "web_1", ""},
		{"{service}-{n}", "demo", "web", 12, "web-12", ""},
		{"{project}-{service}{n}", "demo", "mq", 3, "demo-mq3", ""},
		{"{service}", "demo", "web", 1, "", "must contain {n}"},
		{"{service}.{n}", "demo", "web", 1, "", "not allowed"},
		{"{svc}_{n}", "demo", "web", 1, "", "unknown placeholder"},
		{"-{n}", "demo", "web", 1, "", "must not start"},
		{"{service}_{n}", "demo", strings.Repeat("x", 70), 1, "", "1 to 63"},
	}
	for _, c := range cases {
		got, err := Hostname(c.tmpl, c.project, c.service, c.n)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("Hostname(%q) err = %v, want %q", c.tmpl, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("Hostname(%q, %d) = %q, %v; want %q", c.tmpl, c.n, got, err, c.want)
		}
	}
}

func TestSlots(t *testing.T) {
	cases := []struct {
		existing          []int
		desired           int
		keep, add, remove []int
	}{
		{nil, 3, nil, []int{1, 2, 3}, nil},
		{[]int{1, 3}, 4, []int{1, 3}, []int{2, 4}, nil},
		{[]int{1, 2, 3, 4, 5}, 2, []int{1, 2}, nil, []int{5, 4, 3}},
		{[]int{1, 3, 5}, 3, []int{1, 3}, []int{2}, []int{5}},
		{[]int{2, 2, 0, -1}, 2, []int{2}, []int{1}, nil},
		{[]int{1}, 0, nil, nil, []int{1}},
	}
	for _, c := range cases {
		got := Slots(c.existing, c.desired)
		if !slices.Equal(got.Keep, c.keep) || !slices.Equal(got.Add, c.add) || !slices.Equal(got.Remove, c.remove) {
			t.Errorf("Slots(%v, %d) = %+v; want keep %v add %v remove %v", c.existing, c.desired, got, c.keep, c.add, c.remove)
		}
	}
}

func TestContainerName(t *testing.T) {
	if got := ContainerName("demo", "web", 2); got != "demo-web-2" {
		t.Fatal(got)
	}
}

// FuzzSlots checks the slot invariants for any existing set and count.
func FuzzSlots(f *testing.F) {
	f.Add([]byte{1, 3, 5}, 3)
	f.Add([]byte{}, 0)
	f.Add([]byte{9, 9, 2}, 12)
	f.Fuzz(func(t *testing.T, raw []byte, desired int) {
		if desired > 1000 || desired < -5 {
			return
		}
		existing := make([]int, len(raw))
		for i, b := range raw {
			existing[i] = int(b)
		}
		ch := Slots(existing, desired)
		after := append(append([]int{}, ch.Keep...), ch.Add...)
		slices.Sort(after)
		want := max(desired, 0)
		if len(after) != want {
			t.Fatalf("after scaling %v to %d: %d slots", existing, desired, len(after))
		}
		for i, s := range after {
			if s != i+1 {
				t.Fatalf("slots after scaling are %v, want 1..%d", after, want)
			}
		}
		for _, s := range ch.Remove {
			if s <= want || !slices.Contains(existing, s) {
				t.Fatalf("removed slot %d (desired %d, existing %v)", s, desired, existing)
			}
		}
		if !slices.IsSortedFunc(ch.Remove, func(a, b int) int { return b - a }) {
			t.Fatalf("remove order %v is not highest first", ch.Remove)
		}
	})
}

// FuzzHostname checks that any template either fails or yields a valid,
// slot-unique hostname.
func FuzzHostname(f *testing.F) {
	f.Add("{service}_{n}", "web", 1)
	f.Add("{service}-{n}", "rabbit", 42)
	f.Add("{project}{n}{", "x", 3)
	f.Fuzz(func(t *testing.T, tmpl, service string, n int) {
		if n < 1 || n > 1_000_000 {
			return
		}
		h, err := Hostname(tmpl, "demo", service, n)
		if err != nil {
			return
		}
		if verr := ValidHostname(h); verr != nil {
			t.Fatalf("Hostname(%q,%q,%d) = %q which is invalid: %v", tmpl, service, n, h, verr)
		}
		h2, err := Hostname(tmpl, "demo", service, n+1)
		if err == nil && h2 == h {
			t.Fatalf("slots %d and %d share hostname %q", n, n+1, h)
		}
	})
}
