package render

import (
	"fmt"
	"math/rand"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestUnifiedDiff(t *testing.T) {
	for _, tc := range []struct{ name, a, b, want string }{
		{"equal", "x\n", "x\n", ""},
		{"new file", "", "a\nb\n", "--- f\n+++ f\n@@ -0,0 +1,2 @@\n+a\n+b\n"},
		{"emptied", "a\n", "", "--- f\n+++ f\n@@ -1 +0,0 @@\n-a\n"},
		{"no newline at end", "a\nb", "a\nb\n", "--- f\n+++ f\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n"},
		{"two hunks", "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n", "1\nX\n3\n4\n5\n6\n7\n8\n9\n10\n11\nY\n",
			"--- f\n+++ f\n@@ -1,5 +1,5 @@\n 1\n-2\n+X\n 3\n 4\n 5\n@@ -9,4 +9,4 @@\n 9\n 10\n 11\n-12\n+Y\n"},
		{"hunks merged when close", "1\n2\n3\n4\n5\n6\n7\n8\n", "X\n2\n3\n4\n5\n6\n7\nY\n",
			"--- f\n+++ f\n@@ -1,8 +1,8 @@\n-1\n+X\n 2\n 3\n 4\n 5\n 6\n 7\n-8\n+Y\n"},
		{"insertion in the middle", "a\nb\nc\nd\ne\nf\ng\nh\n", "a\nb\nc\nd\nNEW\ne\nf\ng\nh\n",
			"--- f\n+++ f\n@@ -2,6 +2,7 @@\n b\n c\n d\n+NEW\n e\n f\n g\n"},
	} {
		if got := unifiedDiff("f", "f", tc.a, tc.b); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

var hunkHeader = regexp.MustCompile(`^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@$`)

// applyDiff applies a unified diff to a, checking context and counts.
func applyDiff(a, diff string) (string, error) {
	src := splitLines(a)
	lines := splitLines(diff)
	var out []string
	pos := 0 // next line of src to copy
	i := 2
	for i < len(lines) {
		m := hunkHeader.FindStringSubmatch(strings.TrimSuffix(lines[i], "\n"))
		if m == nil {
			return "", fmt.Errorf("line %d: not a hunk header: %q", i, lines[i])
		}
		num := func(s string, def int) int {
			if s == "" {
				return def
			}
			n, _ := strconv.Atoi(s)
			return n
		}
		aStart, aLen := num(m[1], 0), num(m[2], 1)
		bLen := num(m[4], 1)
		start := aStart - 1
		if aLen == 0 {
			start = aStart
		}
		out = append(out, src[pos:start]...)
		pos = start
		i++
		na, nb := 0, 0
		for i < len(lines) && !strings.HasPrefix(lines[i], "@@") {
			l := lines[i]
			body := l[1:]
			if i+1 < len(lines) && lines[i+1] == "\\ No newline at end of file\n" {
				body = strings.TrimSuffix(body, "\n")
				i++
			}
			switch l[0] {
			case ' ', '-':
				if pos >= len(src) || src[pos] != body {
					return "", fmt.Errorf("context mismatch at source line %d: %q vs %q", pos+1, body, src[min(pos, len(src)-1)])
				}
				pos++
				na++
				if l[0] == ' ' {
					out = append(out, body)
					nb++
				}
			case '+':
				out = append(out, body)
				nb++
			default:
				return "", fmt.Errorf("bad line %q", l)
			}
			i++
		}
		if na != aLen || nb != bLen {
			return "", fmt.Errorf("hunk counts %d/%d, header says %d/%d", na, nb, aLen, bLen)
		}
	}
	out = append(out, src[pos:]...)
	return strings.Join(out, ""), nil
}

// TestUnifiedDiffApplies checks on random edits that the diff applies to
// the old text and gives the new one.
func TestUnifiedDiffApplies(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	gen := func(n int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "l%d\n", rng.Intn(6))
		}
		s := b.String()
		if rng.Intn(4) == 0 {
			s = strings.TrimSuffix(s, "\n")
		}
		return s
	}
	for iter := 0; iter < 2000; iter++ {
		a, b := gen(rng.Intn(30)), gen(rng.Intn(30))
		d := unifiedDiff("a", "b", a, b)
		if a == b {
			if d != "" {
				t.Fatalf("equal texts gave a diff")
			}
			continue
		}
		got, err := applyDiff(a, d)
		if err != nil || got != b {
			t.Fatalf("diff of\n%q\n%q\n%s\napplies to %q (%v)", a, b, d, got, err)
		}
	}
}
