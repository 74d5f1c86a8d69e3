// Package naming holds roster's identity rules: replica slots, container
// names, hostnames, the labels every object carries and the config hash.
// Nothing here talks to an engine; every function is pure.
package naming

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// DefaultHostnameTemplate is the hostname of slot n of service s unless the
// service overrides it in x-roster.hostname.
const DefaultHostnameTemplate = "{service}_{n}"

// ContainerName is the container name of slot n, as compose v2 names it.
func ContainerName(project, service string, n int) string {
	return fmt.Sprintf("%s-%s-%d", project, service, n)
}

// Hostname expands a hostname template for slot n. Placeholders:
// {service}, {n} and {project}. The result must be a usable hostname:
// 1 to 63 characters of letters, digits, '-', '_' and '.', not starting or
// ending with '-' or '.'.
func Hostname(template, project, service string, n int) (string, error) {
	if template == "" {
		template = DefaultHostnameTemplate
	}
	if !strings.Contains(template, "{n}") {
		return "", fmt.Errorf("hostname template %q must contain {n} so that every replica gets its own name", template)
	}
	r := strings.NewReplacer("{service}", service, "{n}", strconv.Itoa(n), "{project}", project)
	h := r.Replace(template)
	if strings.ContainsAny(h, "{}") {
		return "", fmt.Errorf("hostname template %q: unknown placeholder (use {service}, {n}, {project})", template)
	}
	if err := ValidHostname(h); err != nil {
		return "", fmt.Errorf("hostname template %q gives %q: %w", template, h, err)
	}
	return h, nil
}

// ValidHostname reports whether h can be a container hostname and a DNS label.
func ValidHostname(h string) error {
	if h == "" || len(h) > 63 {
		return fmt.Errorf("must be 1 to 63 characters")
	}
	for _, c := range h {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return fmt.Errorf("character %q is not allowed (letters, digits, '-', '_')", c)
		}
	}
	if h[0] == '-' || h[len(h)-1] == '-' {
		return fmt.Errorf("must not start or end with '-'")
	}
	return nil
}

// SlotChange is what scaling a service to a number of replicas does to its
// existing slots.
type SlotChange struct {
	Keep   []int // existing slots within 1..desired
	Add    []int // free slots within 1..desired, lowest first
	Remove []int // existing slots above desired, highest first
}

// Slots computes the slot change for a service whose replicas currently
// occupy existing (any order, duplicates ignored) and should number desired.
// Slots are always 1..desired: scale up fills the lowest free slots, scale
// down removes the highest.
func Slots(existing []int, desired int) SlotChange {
	if desired < 0 {
		desired = 0
	}
	have := map[int]bool{}
	for _, s := range existing {
		if s > 0 {
			have[s] = true
		}
	}
	var ch SlotChange
	for n := 1; n <= desired; n++ {
		if have[n] {
			ch.Keep = append(ch.Keep, n)
		} else {
			ch.Add = append(ch.Add, n)
		}
	}
	for s := range have {
		if s > desired {
			ch.Remove = append(ch.Remove, s)
		}
	}
	sort.Sort(sort.Reverse(sort.IntSlice(ch.Remove)))
	return ch
}

// ParseSlot reads a slot number from a label value; 0 and an error when it
// is not a positive integer.
func ParseSlot(v string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 1 {
		return 0, fmt.Errorf("slot %q is not a positive integer", v)
	}
	return n, nil
}
