package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Helpers of the DNS and agent scenarios (issue 3): roster's DNS is asked
// from the host with dig, from a fixture container with Go's resolver and
// from a Debian container with glibc's getent.

// zone is the project's default DNS zone: {project}.internal. (FQDN).
func (p *project) zone() string { return p.Name + ".internal." }

// fqdn is name under the project's zone, with the final dot.
func (p *project) fqdn(name string) string { return name + "." + p.zone() }

// agentName is the container name of the project's background operator.
func (p *project) agentName() string { return p.Name + "-roster-agent" }

// dnsDump is `roster dns --format json`.
type dnsDump struct {
	Zone    string      `json:"zone"`
	Servers []string    `json:"servers"`
	Records []dnsRecord `json:"records"`
}

type dnsRecord struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Value string `json:"value"`
	TTL   uint32 `json:"ttl"`
}

// dns runs `roster dns --format json` and decodes it.
func (p *project) dns(t testing.TB) dnsDump {
	t.Helper()
	r := p.mustRoster("dns", "--format", "json")
	var d dnsDump
	if err := json.Unmarshal([]byte(r.Stdout), &d); err != nil {
		t.Fatalf("roster dns --format json is not {zone, servers, records}: %v\n%s", err, r)
	}
	return d
}

// has reports whether the dump holds a record of type typ for name with
// value (names compared case-insensitively, with or without the final dot,
// relative names taken under the zone).
func (d dnsDump) has(name, typ, value string) bool {
	norm := func(s string) string { return strings.TrimSuffix(strings.ToLower(s), ".") }
	abs := func(s string) string {
		s = norm(s)
		if z := norm(d.Zone); z != "" && s != z && !strings.HasSuffix(s, "."+z) {
			s += "." + z
		}
		return s
	}
	for _, r := range d.Records {
		if abs(r.Name) == abs(name) && strings.EqualFold(r.Type, typ) && norm(r.Value) == norm(value) {
			return true
		}
	}
	return false
}

// gateways are the gateway addresses of the project's networks (sorted),
// where roster's DNS listens on port 53.
func (p *project) gateways(t testing.TB) []string {
	t.Helper()
	ids := strings.Fields(docker(t, "network", "ls", "-q", "--filter", "label="+labelProject+"="+p.Name))
	if len(ids) == 0 {
		t.Fatalf("project %s has no network", p.Name)
	}
	var gws []string
	out := docker(t, append([]string{"network", "inspect", "-f", `{{range .IPAM.Config}}{{.Gateway}} {{end}}`}, ids...)...)
	for _, gw := range strings.Fields(out) {
		if !strings.Contains(gw, ":") { // IPv4 only
			gws = append(gws, gw)
		}
	}
	if len(gws) == 0 {
		t.Fatalf("the networks of %s have no IPv4 gateway:\n%s", p.Name, out)
	}
	sort.Strings(gws)
	return gws
}

// dnsServer is the address the tests ask roster's DNS at: the gateway of
// the project's (first) network.
func (p *project) dnsServer(t testing.TB) string {
	t.Helper()
	return p.gateways(t)[0]
}

// rr is one resource record of a dig answer.
type rr struct {
	Name string
	TTL  int
	Type string
	Data string
}

// digResult is one parsed dig reply.
type digResult struct {
	Cmd       string
	Status    string // NOERROR, NXDOMAIN, ...
	Flags     []string
	Answer    []rr
	Authority []rr
	Raw       string
}

func (d digResult) String() string { return "$ " + d.Cmd + "\n" + d.Raw }

func (d digResult) flag(f string) bool { return slices.Contains(d.Flags, f) }

// answers are the data of the answer records of type typ, sorted.
func (d digResult) answers(typ string) []string {
	var out []string
	for _, r := range d.Answer {
		if r.Type == typ {
			out = append(out, r.Data)
		}
	}
	sort.Strings(out)
	return out
}

// soaInAuthority reports whether the authority section holds the SOA of zone.
func (d digResult) soaInAuthority(zone string) bool {
	for _, r := range d.Authority {
		if r.Type == "SOA" && strings.EqualFold(r.Name, zone) {
			return true
		}
	}
	return false
}

// tryDig asks server (port 53) for name/qtype without recursion (one try,
// 2s timeout) and parses the reply; extra are further dig options (e.g.
// "+tcp"). An error means no parsable reply.
func tryDig(server, name, qtype string, extra ...string) (digResult, error) {
	args := append([]string{"@" + server, "-p", "53", "+norecurse", "+time=2", "+tries=1"}, extra...)
	if qtype == "PTR" {
		args = append(args, "-x", name)
	} else {
		args = append(args, name, qtype)
	}
	r := execute(context.Background(), "", nil, "dig", args...)
	d := digResult{Cmd: r.Cmd, Raw: r.Stdout + r.Stderr}
	if r.Err != nil {
		return d, fmt.Errorf("no reply from %s: %v\n%s", server, r.Err, d)
	}
	var section *[]rr
	for _, line := range strings.Split(r.Stdout, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, ";; ->>HEADER<<-"):
			if _, after, ok := strings.Cut(line, "status: "); ok {
				d.Status, _, _ = strings.Cut(after, ",")
			}
		case strings.HasPrefix(line, ";; flags:"):
			flags, _, _ := strings.Cut(strings.TrimPrefix(line, ";; flags:"), ";")
			d.Flags = strings.Fields(flags)
		case line == ";; ANSWER SECTION:":
			section = &d.Answer
		case line == ";; AUTHORITY SECTION:":
			section = &d.Authority
		case line == "" || strings.HasPrefix(line, ";"):
			section = nil
		case section != nil:
			f := strings.Fields(line)
			if len(f) < 5 {
				return d, fmt.Errorf("unparsable record %q\n%s", line, d)
			}
			ttl, _ := strconv.Atoi(f[1])
			*section = append(*section, rr{Name: f[0], TTL: ttl, Type: f[3], Data: strings.Join(f[4:], " ")})
		}
	}
	if d.Status == "" {
		return d, fmt.Errorf("no status in dig's output\n%s", d)
	}
	return d, nil
}

// dig is tryDig failing the test when there is no reply.
func dig(t testing.TB, server, name, qtype string, extra ...string) digResult {
	t.Helper()
	d, err := tryDig(server, name, qtype, extra...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// digA asks for the A records of name and returns the addresses, sorted;
// an error for a failed query or a status other than NOERROR/NXDOMAIN
// (NXDOMAIN gives no address and no error).
func digA(server, name string) ([]string, digResult, error) {
	d, err := tryDig(server, name, "A")
	if err != nil {
		return nil, d, err
	}
	if d.Status != "NOERROR" && d.Status != "NXDOMAIN" {
		return nil, d, fmt.Errorf("status %s\n%s", d.Status, d)
	}
	return d.answers("A"), d, nil
}

// waitDNS waits until roster's DNS answers name (under the zone) from the
// host with exactly the addresses want, and returns the time it took.
func (p *project) waitDNS(t testing.TB, timeout time.Duration, name string, want ...string) time.Duration {
	t.Helper()
	start := time.Now()
	server := p.dnsServer(t)
	sort.Strings(want)
	eventually(t, timeout, func() error {
		got, d, err := digA(server, p.fqdn(name))
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("%s A = %v, want %v\n%s", p.fqdn(name), got, want, d)
		}
		return nil
	})
	return time.Since(start)
}

// ips are the IPv4 addresses of containers, sorted.
func ips(cs ...ctr) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ip())
	}
	sort.Strings(out)
	return out
}

// goLookup asks the fixture in container (Go's resolver) at endpoint
// (/resolve, /srv, /ptr) and returns the lines of a 200 answer, sorted.
func (p *project) goLookup(t testing.TB, container, endpoint, key, value string) ([]string, error) {
	t.Helper()
	code, body, err := p.tryHTTPGet(t, container, endpoint+"?"+key+"="+url.QueryEscape(value))
	if err != nil {
		return nil, err
	}
	if code != 200 {
		return nil, fmt.Errorf("Go resolver in %s: %s %s: %d %s", container, endpoint, value, code, strings.TrimSpace(body))
	}
	return sortedLines(body), nil
}

// getent runs `getent ARGS...` (glibc) in container and returns its
// output; exit code 2 (not found) is an error.
func getent(container string, args ...string) (string, error) {
	r := execute(context.Background(), "", nil, "docker", append([]string{"exec", container, "getent"}, args...)...)
	if r.Err != nil {
		return "", fmt.Errorf("glibc in %s: getent %s: exit %d %s%s", container, strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout, nil
}

// getentAddrs is the set of addresses (first column) of getent's output, sorted.
func getentAddrs(out string) []string {
	seen := map[string]bool{}
	var addrs []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && !seen[f[0]] {
			seen[f[0]] = true
			addrs = append(addrs, f[0])
		}
	}
	sort.Strings(addrs)
	return addrs
}

func sortedLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out
}

// agent returns the project's background operator, failing the test
// unless there is exactly one (labelled dev.roster.role=agent) named
// {project}-roster-agent.
func (p *project) agent(t testing.TB) ctr {
	t.Helper()
	var agents []ctr
	for _, c := range p.containers(t) {
		if c.Labels[labelRole] == "agent" {
			agents = append(agents, c)
		}
	}
	if len(agents) != 1 || agents[0].Name != p.agentName() {
		t.Fatalf("want one agent container %s (labels %s=%s, %s=agent), have:\n%sall containers:\n%s",
			p.agentName(), labelProject, p.Name, labelRole, describe(agents), describe(p.containers(t)))
	}
	return agents[0]
}

// waitAgentServing waits until the agent runs and its DNS answers
// web_1 with want (the address of web_1).
func (p *project) waitAgentServing(t testing.TB, timeout time.Duration, web1 string) ctr {
	t.Helper()
	eventually(t, timeout, func() error {
		c, ok := p.container(t, p.agentName())
		if !ok {
			return fmt.Errorf("no agent container %s", p.agentName())
		}
		if c.State != "running" {
			return fmt.Errorf("agent %s is %s", p.agentName(), c.State)
		}
		return nil
	})
	p.waitDNS(t, timeout, "web_1", web1)
	a, _ := p.container(t, p.agentName())
	return a
}

// steady fails the test unless the project's service containers stay
// exactly before (IDs, names, states) for the whole window, polling.
// It catches an operator that recreates containers a little after it
// (re)starts.
func (p *project) steady(t testing.TB, window time.Duration, before []ctr) {
	t.Helper()
	end := time.Now().Add(window)
	for {
		sameContainers(t, before, p.replicas(t))
		if time.Now().After(end) {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// diagnoseOnFailure logs, when the test has failed, what roster's DNS
// serves, roster ps, the agent's logs and the containers' resolv.conf.
// Call it right after newProject, so it runs before the clean-up.
func diagnoseOnFailure(t *testing.T, p *project) {
	t.Cleanup(func() {
		if !t.Failed() || rosterBin == "" {
			return
		}
		ctx := context.Background()
		var b strings.Builder
		show := func(r result) { fmt.Fprintf(&b, "%s\n", r) }
		full := func(args ...string) []string { return append([]string{"-p", p.Name, "-f", p.File}, args...) }
		show(execute(ctx, p.Dir, p.Env, rosterBin, full("dns")...))
		show(execute(ctx, p.Dir, p.Env, rosterBin, full("ps")...))
		cs := p.containers(t)
		fmt.Fprintf(&b, "containers:\n%s", describe(cs))
		show(execute(ctx, "", nil, "docker", "logs", "--tail", "200", "--timestamps", p.agentName()))
		show(execute(ctx, "", nil, "docker", "inspect", "-f", "{{.Name}} restart={{.HostConfig.RestartPolicy.Name}} net={{.HostConfig.NetworkMode}} restarts={{.RestartCount}} state={{.State.Status}} binds={{.HostConfig.Binds}}", p.agentName()))
		for _, c := range cs {
			if c.State == "running" && c.Labels[labelRole] != "agent" {
				// The fixture has no cat: it serves the file itself.
				if code, body, err := p.tryHTTPGet(t, c.Name, "/read?path=/etc/resolv.conf"); err == nil && code == 200 {
					fmt.Fprintf(&b, "/etc/resolv.conf of %s:\n%s\n", c.Name, body)
					break
				}
			}
		}
		t.Logf("diagnostics of %s:\n%s", p.Name, b.String())
	})
}
