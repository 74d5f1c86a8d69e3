package render

import (
	"fmt"
	"strings"
)

// diffContext is the number of unchanged lines around each change.
const diffContext = 3

// maxLCSCells bounds the quadratic part of the diff (after the common
// prefix and suffix are trimmed); beyond it the middle is shown as one
// replacement, which is still a correct diff.
const maxLCSCells = 4 << 20

type diffOp struct {
	kind byte // ' ', '-', '+'
	line string
}

// splitLines splits s after each "\n"; the last line may lack one.
func splitLines(s string) []string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// unifiedDiff returns the unified diff (3 lines of context) turning a into
// b, headed by fromName and toName; "" when they are equal.
func unifiedDiff(fromName, toName, a, b string) string {
	if a == b {
		return ""
	}
	ops := diffLines(splitLines(a), splitLines(b))
	// aBefore[i], bBefore[i]: lines of a and b before ops[i].
	aBefore := make([]int, len(ops)+1)
	bBefore := make([]int, len(ops)+1)
	for i, o := range ops {
		aBefore[i+1], bBefore[i+1] = aBefore[i], bBefore[i]
		if o.kind != '+' {
			aBefore[i+1]++
		}
		if o.kind != '-' {
			bBefore[i+1]++
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s\n+++ %s\n", fromName, toName)
	for i := 0; i < len(ops); {
		if ops[i].kind == ' ' {
			i++
			continue
		}
		start := max(0, i-diffContext)
		j := i
		for {
			for j < len(ops) && ops[j].kind != ' ' {
				j++
			}
			k := j
			for k < len(ops) && ops[k].kind == ' ' {
				k++
			}
			if k < len(ops) && k-j <= 2*diffContext {
				j = k
				continue
			}
			end := min(len(ops), j+diffContext)
			fmt.Fprintf(&out, "@@ -%s +%s @@\n",
				hunkRange(aBefore[start], aBefore[end]-aBefore[start]),
				hunkRange(bBefore[start], bBefore[end]-bBefore[start]))
			for _, o := range ops[start:end] {
				out.WriteByte(o.kind)
				out.WriteString(o.line)
				if !strings.HasSuffix(o.line, "\n") {
					out.WriteString("\n\\ No newline at end of file\n")
				}
			}
			i = k
			break
		}
	}
	return out.String()
}

// hunkRange formats a hunk side as GNU diff does: "l" for one line,
// "l,n" otherwise, and the line before the hunk when it is empty.
func hunkRange(before, n int) string {
	switch n {
	case 0:
		return fmt.Sprintf("%d,0", before)
	case 1:
		return fmt.Sprintf("%d", before+1)
	}
	return fmt.Sprintf("%d,%d", before+1, n)
}

// diffLines is a line diff: common prefix and suffix, then a longest
// common subsequence of the middle.
func diffLines(a, b []string) []diffOp {
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	var ops []diffOp
	for _, l := range a[:pre] {
		ops = append(ops, diffOp{' ', l})
	}
	ma, mb := a[pre:len(a)-suf], b[pre:len(b)-suf]
	n, m := len(ma), len(mb)
	if n*m > maxLCSCells {
		for _, l := range ma {
			ops = append(ops, diffOp{'-', l})
		}
		for _, l := range mb {
			ops = append(ops, diffOp{'+', l})
		}
	} else {
		// lcs[i*(m+1)+j] is the LCS length of ma[i:] and mb[j:].
		w := m + 1
		lcs := make([]int32, (n+1)*w)
		for i := n - 1; i >= 0; i-- {
			for j := m - 1; j >= 0; j-- {
				if ma[i] == mb[j] {
					lcs[i*w+j] = lcs[(i+1)*w+j+1] + 1
				} else {
					lcs[i*w+j] = max(lcs[(i+1)*w+j], lcs[i*w+j+1])
				}
			}
		}
		i, j := 0, 0
		for i < n || j < m {
			switch {
			case i < n && j < m && ma[i] == mb[j]:
				ops = append(ops, diffOp{' ', ma[i]})
				i++
				j++
			case i < n && (j == m || lcs[(i+1)*w+j] >= lcs[i*w+j+1]):
				ops = append(ops, diffOp{'-', ma[i]})
				i++
			default:
				ops = append(ops, diffOp{'+', mb[j]})
				j++
			}
		}
	}
	for _, l := range b[len(b)-suf:] {
		ops = append(ops, diffOp{' ', l})
	}
	return ops
}
