package e2e

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The issue-3 scenarios: roster's DNS seen from the project's containers
// (Go and glibc resolvers) and from the host (dig), answers that follow
// the replicas' state, and the background agent (`roster up -d`). Each
// test has one intent and its own testdata/<TestName>/compose.yaml.
//
// roster's DNS listens on the gateway of every project network, port 53;
// the zone is {project}.internal.; the agent is the container
// {project}-roster-agent.

// dnsUp bounds the wait for the agent's DNS to answer after `up -d`.
const dnsUp = 60 * time.Second

// poll calls fn every interval until it returns nil and returns the time
// that took; after timeout the test fails with fn's last error. Unlike
// eventually it polls fast, for short-lived states.
func poll(t testing.TB, timeout, interval time.Duration, fn func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := fn()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("still failing after %s: %v", timeout, err)
		}
		time.Sleep(interval)
	}
}

func TestDNSContainersResolveReplicaNames(t *testing.T) {
	needDebianImage(t, debianImage)
	p := newProject(t, "")
	diagnoseOnFailure(t, p)
	p.mustRoster("up", "-d")
	web := p.expectSlots(t, "web", 1, 2, 3)
	probe := p.expectSlots(t, "probe", 1)[0].Name   // Go's resolver (fixture)
	client := p.expectSlots(t, "client", 1)[0].Name // glibc (Debian)
	ip1, ip2 := web[0].ip(), web[1].ip()

	// Only roster's DNS knows names under the zone: wait for it to serve.
	eventually(t, dnsUp, func() error {
		got, err := p.goLookup(t, probe, "/resolve", "name", p.fqdn("web_1"))
		if err == nil && !slices.Equal(got, []string{ip1}) {
			err = fmt.Errorf("%s = %v, want [%s]", p.fqdn("web_1"), got, ip1)
		}
		return err
	})

	const within = 15 * time.Second
	goHas := func(t *testing.T, endpoint, key, value string, want []string) {
		eventually(t, within, func() error {
			got, err := p.goLookup(t, probe, endpoint, key, value)
			if err == nil && !slices.Equal(got, want) {
				err = fmt.Errorf("Go resolver in %s: %s %s = %v, want %v", probe, endpoint, value, got, want)
			}
			return err
		})
	}
	t.Run("go/web_1", func(t *testing.T) { goHas(t, "/resolve", "name", "web_1", []string{ip1}) })
	t.Run("go/web-2", func(t *testing.T) { goHas(t, "/resolve", "name", "web-2", []string{ip2}) })
	t.Run("go/web", func(t *testing.T) { goHas(t, "/resolve", "name", "web", ips(web...)) })
	t.Run("go/srv", func(t *testing.T) {
		var want []string
		for _, c := range web {
			want = append(want, p.fqdn(c.Hostname)+" 8080")
		}
		sort.Strings(want)
		goHas(t, "/srv", "name", "_8080._tcp."+p.fqdn("web"), want)
	})
	t.Run("go/ptr", func(t *testing.T) {
		eventually(t, within, func() error {
			got, err := p.goLookup(t, probe, "/ptr", "ip", ip2)
			if err == nil && !slices.ContainsFunc(got, func(n string) bool { return strings.EqualFold(n, p.fqdn("web_2")) }) {
				err = fmt.Errorf("Go resolver in %s: reverse of %s = %v, want %s among them", probe, ip2, got, p.fqdn("web_2"))
			}
			return err
		})
	})

	getentHas := func(t *testing.T, db, name string, want []string) {
		eventually(t, within, func() error {
			out, err := getent(client, db, name)
			if err == nil && !slices.Equal(getentAddrs(out), want) {
				err = fmt.Errorf("glibc in %s: getent %s %s = %v, want %v:\n%s", client, db, name, getentAddrs(out), want, out)
			}
			return err
		})
	}
	t.Run("glibc/web_1", func(t *testing.T) { getentHas(t, "hosts", "web_1", []string{ip1}) })
	t.Run("glibc/web-2", func(t *testing.T) { getentHas(t, "hosts", "web-2", []string{ip2}) })
	t.Run("glibc/web", func(t *testing.T) { getentHas(t, "ahostsv4", "web", ips(web...)) })
	t.Run("glibc/ptr", func(t *testing.T) {
		want := strings.TrimSuffix(p.fqdn("web_2"), ".")
		eventually(t, within, func() error {
			out, err := getent(client, "hosts", ip2)
			if err != nil {
				return err
			}
			// "IP  canonical-name alias..."
			if f := strings.Fields(out); len(f) < 2 || f[0] != ip2 || !slices.ContainsFunc(f[1:], func(n string) bool { return strings.EqualFold(n, want) }) {
				return fmt.Errorf("glibc in %s: getent hosts %s = %q, want %s", client, ip2, out, want)
			}
			return nil
		})
	})
}

func TestDNSHostQueriesWithDig(t *testing.T) {
	p := newProject(t, "")
	diagnoseOnFailure(t, p)
	p.mustRoster("up", "-d")
	web := p.expectSlots(t, "web", 1, 2)
	ip1, ip2 := web[0].ip(), web[1].ip()
	server, z := p.dnsServer(t), p.zone()
	p.waitDNS(t, dnsUp, "web_1", ip1)

	t.Run("A is authoritative", func(t *testing.T) {
		d := dig(t, server, p.fqdn("web_1"), "A")
		if d.Status != "NOERROR" || !d.flag("aa") || !slices.Equal(d.answers("A"), []string{ip1}) {
			t.Errorf("want NOERROR, flag aa, A %s:\n%s", ip1, d)
		}
	})
	t.Run("case-insensitive", func(t *testing.T) {
		d := dig(t, server, strings.ToUpper(p.fqdn("web_1")), "A")
		if d.Status != "NOERROR" || !slices.Equal(d.answers("A"), []string{ip1}) {
			t.Errorf("want NOERROR, A %s:\n%s", ip1, d)
		}
	})
	t.Run("over TCP", func(t *testing.T) {
		d := dig(t, server, p.fqdn("web-2"), "A", "+tcp")
		if d.Status != "NOERROR" || !d.flag("aa") || !slices.Equal(d.answers("A"), []string{ip2}) {
			t.Errorf("want NOERROR, flag aa, A %s:\n%s", ip2, d)
		}
	})
	t.Run("service name", func(t *testing.T) {
		d := dig(t, server, p.fqdn("web"), "A")
		if d.Status != "NOERROR" || !d.flag("aa") || !slices.Equal(d.answers("A"), ips(web...)) {
			t.Errorf("want NOERROR, flag aa, A %v:\n%s", ips(web...), d)
		}
	})
	t.Run("NXDOMAIN with SOA", func(t *testing.T) {
		d := dig(t, server, p.fqdn("nosuch"), "A")
		if d.Status != "NXDOMAIN" || !d.flag("aa") || len(d.Answer) != 0 || !d.soaInAuthority(z) {
			t.Errorf("want NXDOMAIN, flag aa, no answer, the SOA of %s in AUTHORITY:\n%s", z, d)
		}
	})
	t.Run("NODATA with SOA", func(t *testing.T) {
		// An IPv4-only network: web_1 exists, it has no AAAA.
		d := dig(t, server, p.fqdn("web_1"), "AAAA")
		if d.Status != "NOERROR" || !d.flag("aa") || len(d.Answer) != 0 || !d.soaInAuthority(z) {
			t.Errorf("want NOERROR, flag aa, no answer, the SOA of %s in AUTHORITY:\n%s", z, d)
		}
	})
	t.Run("SOA and NS at the apex", func(t *testing.T) {
		d := dig(t, server, z, "SOA")
		if d.Status != "NOERROR" || !d.flag("aa") || len(d.answers("SOA")) != 1 || !strings.EqualFold(d.Answer[0].Name, z) {
			t.Errorf("want NOERROR, flag aa, one SOA for %s:\n%s", z, d)
		}
		d = dig(t, server, z, "NS")
		if d.Status != "NOERROR" || !d.flag("aa") || len(d.answers("NS")) == 0 {
			t.Errorf("want NOERROR, flag aa, NS records for %s:\n%s", z, d)
		}
	})
	t.Run("SRV", func(t *testing.T) {
		name := "_8080._tcp." + p.fqdn("web")
		d := dig(t, server, name, "SRV")
		var got []string
		for _, v := range d.answers("SRV") { // priority weight port target
			if f := strings.Fields(v); len(f) == 4 {
				got = append(got, f[2]+" "+strings.ToLower(f[3]))
			}
		}
		sort.Strings(got)
		want := []string{"8080 " + p.fqdn("web_1"), "8080 " + p.fqdn("web_2")}
		if d.Status != "NOERROR" || !d.flag("aa") || !slices.Equal(got, want) {
			t.Errorf("%s: want NOERROR, flag aa, SRV (port target) %v, have %v:\n%s", name, want, got, d)
		}
	})
	t.Run("PTR", func(t *testing.T) {
		d := dig(t, server, ip2, "PTR")
		if got := d.answers("PTR"); d.Status != "NOERROR" || !slices.ContainsFunc(got, func(n string) bool { return strings.EqualFold(n, p.fqdn("web_2")) }) {
			t.Errorf("reverse of %s: want NOERROR and PTR %s, have %v:\n%s", ip2, p.fqdn("web_2"), got, d)
		}
	})

	t.Run("roster dns", func(t *testing.T) {
		d := p.dns(t)
		if d.Zone != z {
			t.Errorf("roster dns: zone %q, want %q", d.Zone, z)
		}
		if !slices.Contains(d.Servers, server+":53") {
			t.Errorf("roster dns: servers %v, want %s:53 (the gateway of the project's network, where dig asked) among them", d.Servers, server)
		}
		for _, want := range []dnsRecord{{Name: p.fqdn("web_1"), Type: "A", Value: ip1}, {Name: p.fqdn("web"), Type: "A", Value: ip2}} {
			if !d.has(want.Name, want.Type, want.Value) {
				t.Errorf("roster dns: no record %s %s %s among:\n%+v", want.Name, want.Type, want.Value, d.Records)
			}
		}
	})
	t.Run("roster ps", func(t *testing.T) {
		out := p.mustRoster("ps").Stdout
		found := false
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, server) && strings.Contains(line, strings.TrimSuffix(z, ".")) {
				found = true
			}
		}
		if !found {
			t.Errorf("roster ps: no line with the DNS server %s and the zone %s:\n%s", server, z, out)
		}
	})
}

func TestDNSNamedPortGivesSRV(t *testing.T) {
	p := newProject(t, "")
	diagnoseOnFailure(t, p)
	p.mustRoster("up", "-d")
	web := p.expectSlots(t, "web", 1, 2)
	p.waitDNS(t, dnsUp, "web_1", web[0].ip())

	name := "_http._tcp." + p.fqdn("web")
	d := dig(t, p.dnsServer(t), name, "SRV")
	var got []string
	for _, v := range d.answers("SRV") {
		if f := strings.Fields(v); len(f) == 4 {
			got = append(got, f[2]+" "+strings.ToLower(f[3]))
		}
	}
	sort.Strings(got)
	want := []string{"8080 " + p.fqdn("web_1"), "8080 " + p.fqdn("web_2")}
	if d.Status != "NOERROR" || !slices.Equal(got, want) {
		t.Errorf("%s (port named http): want NOERROR, SRV (port target) %v, have %v:\n%s", name, want, got, d)
	}
}

func TestDNSKilledReplicaLeavesServiceName(t *testing.T) {
	p := newProject(t, "")
	diagnoseOnFailure(t, p)
	p.mustRoster("up", "-d")
	web := p.expectSlots(t, "web", 1, 2, 3)
	server := p.dnsServer(t)
	p.waitDNS(t, dnsUp, "web", ips(web...)...)

	docker(t, "kill", web[2].Name) // restart: "no": it stays exited
	want := ips(web[0], web[1])
	took := poll(t, 10*time.Second, 20*time.Millisecond, func() error {
		got, d, err := digA(server, p.fqdn("web"))
		if err == nil && !slices.Equal(got, want) {
			err = fmt.Errorf("%s A = %v, want %v (without the killed %s)\n%s", p.fqdn("web"), got, want, web[2].Name, d)
		}
		return err
	})
	t.Logf("%s stopped listing the killed %s (%s) %s after docker kill", p.fqdn("web"), web[2].Name, web[2].ip(), took.Round(time.Millisecond))

	p.mustRoster("up", "-d")
	back := p.expectSlots(t, "web", 1, 2, 3)
	took = p.waitDNS(t, 30*time.Second, "web", ips(back...)...)
	t.Logf("%s lists %s again %s after roster up -d", p.fqdn("web"), back[2].Name, took.Round(time.Millisecond))
}

func TestDNSUnhealthyReplicaIsNotInServiceName(t *testing.T) {
	p := newProject(t, "")
	diagnoseOnFailure(t, p)
	p.mustRoster("up", "-d")
	web := p.expectSlots(t, "web", 1, 2, 3)
	server := p.dnsServer(t)
	health := func(want string) func() error {
		return func() error {
			cs := p.serviceContainers(t, "web")
			for _, c := range cs {
				if c.Health != want {
					return fmt.Errorf("want every web replica %s:\n%s", want, describe(cs))
				}
			}
			return nil
		}
	}
	eventually(t, 60*time.Second, health("healthy"))
	p.waitDNS(t, dnsUp, "web", ips(web...)...)

	p.httpGet(t, web[1].Name, "/write?path=/tmp/unhealthy&data=x")
	want := ips(web[0], web[2])
	took := poll(t, 30*time.Second, 50*time.Millisecond, func() error {
		got, d, err := digA(server, p.fqdn("web"))
		if err == nil && !slices.Equal(got, want) {
			c, _ := p.container(t, web[1].Name)
			err = fmt.Errorf("%s A = %v, want %v (without %s, health %s)\n%s", p.fqdn("web"), got, want, web[1].Name, c.Health, d)
		}
		return err
	})
	c, _ := p.container(t, web[1].Name)
	t.Logf("%s stopped listing %s %s after /tmp/unhealthy was written (health now %s)", p.fqdn("web"), web[1].Name, took.Round(time.Millisecond), c.Health)

	// The replica's own name still resolves: it has an address.
	if got, d, err := digA(server, p.fqdn("web_2")); err != nil || !slices.Equal(got, []string{web[1].ip()}) {
		t.Errorf("%s of the unhealthy replica: A = %v (%v), want %s\n%s", p.fqdn("web_2"), got, err, web[1].ip(), d)
	}

	p.httpGet(t, web[1].Name, "/remove?path=/tmp/unhealthy")
	took = p.waitDNS(t, 30*time.Second, "web", ips(web...)...)
	t.Logf("%s lists %s again %s after /tmp/unhealthy was removed", p.fqdn("web"), web[1].Name, took.Round(time.Millisecond))
	sameContainers(t, web, p.serviceContainers(t, "web"))
}

func TestAgentRestartChangesNoServiceContainer(t *testing.T) {
	p := newProject(t, "")
	diagnoseOnFailure(t, p)
	p.mustRoster("up", "-d")
	before := p.expectSlots(t, "web", 1, 2, 3)
	p.waitAgentServing(t, dnsUp, before[0].ip())
	agent := p.agent(t)
	if got := strings.TrimSpace(docker(t, "inspect", "-f", "{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.NetworkMode}}", agent.ID)); got != "unless-stopped host" {
		t.Errorf("agent %s: restart policy and network mode %q, want \"unless-stopped host\"", agent.Name, got)
	}

	// restarted waits until the engine has (re)started the same agent
	// container after since and its DNS answers again.
	restarted := func(how string, since time.Time) {
		t.Helper()
		start := time.Now()
		eventually(t, 60*time.Second, func() error {
			c, ok := p.container(t, p.agentName())
			switch {
			case !ok:
				return fmt.Errorf("no agent container %s after %s", p.agentName(), how)
			case c.ID != agent.ID:
				t.Fatalf("after %s the agent is another container (%.12s, was %.12s): the engine should restart it", how, c.ID, agent.ID)
			case c.State != "running" || !c.StartedAt.After(since):
				return fmt.Errorf("agent %s is %s, started %s (%s at %s)", c.Name, c.State, c.StartedAt.Format(time.RFC3339Nano), how, since.Format(time.RFC3339Nano))
			}
			return nil
		})
		p.waitDNS(t, dnsUp, "web_1", before[0].ip())
		t.Logf("after %s the agent runs and serves DNS again in %s", how, time.Since(start).Round(time.Millisecond))
		// Nothing changes, also a little after the agent is back.
		p.steady(t, 3*time.Second, before)
	}

	// A crash: SIGKILL to the agent's process from the host. (Not `docker
	// kill`: the engine takes that for a manual stop and applies no
	// restart policy until the daemon restarts.)
	pid, err := strconv.Atoi(strings.TrimSpace(docker(t, "inspect", "-f", "{{.State.Pid}}", agent.ID)))
	if err != nil || pid <= 0 {
		t.Fatalf("the agent's host PID: %d %v", pid, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d (the agent's process, from the host; needs root): %v", pid, err)
	}
	restarted("kill -9 of its process", agent.StartedAt)

	a := p.agent(t)
	docker(t, "restart", a.Name)
	restarted("docker restart", a.StartedAt)

	p.mustRoster("down")
	if left := p.containers(t); len(left) != 0 {
		t.Errorf("roster down left containers:\n%s", describe(left))
	}
	if nets := strings.Fields(docker(t, "network", "ls", "-q", "--filter", "label="+labelProject+"="+p.Name)); len(nets) != 0 {
		t.Errorf("roster down left networks %v", nets)
	}
}

func TestAgentRepairsRemovedReplica(t *testing.T) {
	p := newProject(t, "")
	diagnoseOnFailure(t, p)
	p.mustRoster("up", "-d")
	before := p.expectSlots(t, "web", 1, 2, 3)
	p.waitAgentServing(t, dnsUp, before[0].ip())

	removed := time.Now()
	docker(t, "rm", "-f", before[1].Name)
	var after []ctr
	eventually(t, 30*time.Second, func() error {
		after = p.serviceContainers(t, "web")
		if err := checkSlots(p, "web", after, []int{1, 2, 3}); err != nil {
			return err
		}
		if after[1].ID == before[1].ID {
			return fmt.Errorf("%s still has its old ID", after[1].Name)
		}
		return nil
	})
	t.Logf("the agent brought back %s (hostname %s) %s after docker rm -f", after[1].Name, after[1].Hostname, time.Since(removed).Round(time.Millisecond))
	for _, i := range []int{0, 2} {
		if after[i].ID != before[i].ID {
			t.Errorf("%s was replaced (%.12s -> %.12s); only slot 2 was removed", after[i].Name, before[i].ID, after[i].ID)
		}
	}
	if got := strings.TrimSpace(p.httpGet(t, after[1].Name, "/hostname")); got != "web_2" {
		t.Errorf("/hostname of the returned replica = %q, want web_2", got)
	}
}

// operatorMessage is what a second operator must say: that the agent (or
// another operator / roster) is in charge of the project.
var operatorMessage = regexp.MustCompile(`(?i)agent|operator|another roster`)

func TestOnlyOneOperatorActs(t *testing.T) {
	p := newProject(t, "")
	diagnoseOnFailure(t, p)
	p.mustRoster("up", "-d")
	before := p.expectSlots(t, "web", 1, 2, 3)
	p.waitAgentServing(t, dnsUp, before[0].ip())
	agent := p.agent(t)

	f := p.startForeground(t, "up")
	eventually(t, 30*time.Second, func() error {
		out := f.output()
		if f.exited() {
			if f.err == nil {
				t.Fatalf("a foreground roster up exited 0 while the agent runs; want it to refuse (non-zero exit) or wait, saying why:\n%s", out)
			}
			if !operatorMessage.MatchString(out) {
				t.Fatalf("a foreground roster up refused (%v) without naming the agent or the other operator:\n%s", f.err, out)
			}
			return nil
		}
		if !operatorMessage.MatchString(out) {
			return fmt.Errorf("the foreground roster up runs and has not said that the agent is in charge; output so far:\n%s", out)
		}
		return nil
	})
	if f.exited() {
		t.Logf("the foreground roster up refused (%v):\n%s", f.err, f.output())
	} else {
		t.Logf("the foreground roster up waits:\n%s", f.output())
	}

	// No duplicate, nothing recreated, the agent unchanged and serving.
	p.steady(t, 3*time.Second, before)
	if a := p.agent(t); a.ID != agent.ID || a.State != "running" {
		t.Errorf("the agent changed: %.12s %s, was %.12s running", a.ID, a.State, agent.ID)
	}
	if err := f.stop(t); err != nil {
		t.Logf("the foreground roster up exited with %v", err)
	}
	sameContainers(t, before, p.expectSlots(t, "web", 1, 2, 3))
	p.waitDNS(t, 10*time.Second, "web_1", before[0].ip())
}
