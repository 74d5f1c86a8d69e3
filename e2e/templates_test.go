package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The issue-4 scenarios: dependent configs rendered from the replicas
// (x-roster.templates), checked and reloaded, with a real nginx built from
// Debian packages. Each test has one intent and its own
// testdata/<TestName>/ (TestTemplateNginxUpstreamsFollowScale runs the
// example examples/nginx-upstreams itself).

// nginxImage is nginx from Debian packages, built by TestMain.
const nginxImage = "roster-nginx:bookworm"

func init() { debianImages[nginxImage] = []string{"nginx"} }

// upstreamFile is where the templates of these tests render.
const upstreamFile = "out/upstreams.conf"

// nginxUpstreamFile is where the nginx scenarios render.
const nginxUpstreamFile = "nginx/conf.d/upstreams.conf"

// readRendered returns the project file rel ("" and false when missing).
func (p *project) readRendered(t testing.TB, rel string) (string, bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.Dir, rel))
	if os.IsNotExist(err) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b), true
}

var upstreamServer = regexp.MustCompile(`(?m)^\s*server\s+([^\s:;]+):8080;`)

// upstreamHosts are the hosts of the `server host:8080;` lines, in order.
func upstreamHosts(conf string) []string {
	var out []string
	for _, m := range upstreamServer.FindAllStringSubmatch(conf, -1) {
		out = append(out, m[1])
	}
	return out
}

func webHosts(slots ...int) []string {
	out := make([]string, len(slots))
	for i, n := range slots {
		out[i] = hostname("web", n)
	}
	return out
}

// waitUpstreams waits until the rendered file rel lists exactly hosts, in
// that order, and returns its content.
func (p *project) waitUpstreams(t testing.TB, timeout time.Duration, rel string, hosts ...string) string {
	t.Helper()
	var conf string
	start := time.Now()
	eventually(t, timeout, func() error {
		c, ok := p.readRendered(t, rel)
		if !ok {
			return fmt.Errorf("%s was not rendered", rel)
		}
		conf = c
		if got := upstreamHosts(c); !slices.Equal(got, hosts) {
			return fmt.Errorf("%s lists %v, want %v:\n%s", rel, got, hosts, c)
		}
		return nil
	})
	t.Logf("%s lists %v (%s)", rel, hosts, time.Since(start).Round(time.Millisecond))
	return conf
}

// nginxProject is newProject for a compose file with an nginx service
// (NGINX_IMAGE, published on 127.0.0.1:NGINX_PORT) and web replicas
// (WEB_IMAGE): it sets those variables and returns the port.
func nginxProject(t *testing.T, dir string) (*project, int) {
	t.Helper()
	needDebianImage(t, nginxImage)
	p := newProject(t, dir)
	diagnoseOnFailure(t, p)
	port := freePort(t)
	p.Env = append(p.Env, "NGINX_IMAGE="+nginxImage, "WEB_IMAGE="+fixtureImage, "NGINX_PORT="+strconv.Itoa(port))
	t.Cleanup(func() {
		if t.Failed() {
			logs := execute(context.Background(), "", nil, "docker", "logs", "--tail", "60", p.cname("nginx", 1))
			conf, _ := p.readRendered(t, nginxUpstreamFile)
			t.Logf("nginx logs:\n%s%s\n%s now:\n%s", logs.Stdout, logs.Stderr, nginxUpstreamFile, conf)
		}
	})
	return p, port
}

// reloads counts the reloads nginx logged ("signal 1 (SIGHUP) received"):
// its error_log is stderr at notice level (see nginx.conf).
func (p *project) reloads(t testing.TB) int {
	t.Helper()
	r := execute(context.Background(), "", nil, "docker", "logs", p.cname("nginx", 1))
	if r.Err != nil {
		t.Fatalf("nginx logs:\n%s", r)
	}
	return strings.Count(r.Stdout+r.Stderr, "(SIGHUP) received")
}

// steadyReloads waits until nginx's reload count stays the same for
// window and returns it.
func (p *project) steadyReloads(t testing.TB, window time.Duration) int {
	t.Helper()
	n, since := p.reloads(t), time.Now()
	deadline := time.Now().Add(window + 30*time.Second)
	for time.Since(since) < window {
		if time.Now().After(deadline) {
			t.Fatalf("nginx keeps reloading (%d reloads)", n)
		}
		time.Sleep(250 * time.Millisecond)
		if m := p.reloads(t); m != n {
			n, since = m, time.Now()
		}
	}
	return n
}

// throughNginx GETs /hostname through nginx on 127.0.0.1:port, at most
// 200 times, until every host of want has answered; it returns the hosts
// seen and an error naming those that did not answer.
func throughNginx(port int, want ...string) (map[string]int, error) {
	seen := map[string]int{}
	client := &http.Client{Timeout: 3 * time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/hostname", port)
	var last error
	for i := 0; i < 200; i++ {
		missing := false
		for _, h := range want {
			missing = missing || seen[h] == 0
		}
		if !missing {
			return seen, nil
		}
		resp, err := client.Get(url)
		if err != nil {
			last = err
			time.Sleep(50 * time.Millisecond)
			continue
		}
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			last = fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(b.String()))
			time.Sleep(50 * time.Millisecond)
			continue
		}
		seen[strings.TrimSpace(b.String())]++
	}
	return seen, fmt.Errorf("after 200 requests through nginx, seen %v, want every one of %v (last error: %v)", seen, want, last)
}

// waitThroughNginx retries throughNginx for up to timeout.
func waitThroughNginx(t testing.TB, timeout time.Duration, port int, want ...string) map[string]int {
	t.Helper()
	var seen map[string]int
	eventually(t, timeout, func() error {
		var err error
		seen, err = throughNginx(port, want...)
		return err
	})
	return seen
}

func TestTemplateNginxUpstreamsFollowScale(t *testing.T) {
	p, port := nginxProject(t, filepath.Join(moduleRoot, "examples", "nginx-upstreams"))
	// A file rendered by someone who ran the example is not ours.
	os.Remove(filepath.Join(p.Dir, nginxUpstreamFile))
	// The example waits 200ms of quiet; the two new replicas of the scale
	// can start further apart than that on a loaded machine, which would be
	// two changes and two reloads. A longer quiet window makes "one reload
	// for the change" what is tested, rather than the machine's speed.
	p.editCompose(t, "wait:   { min: 200ms, max: 2s }", "wait:   { min: 2s, max: 8s }")

	p.mustRoster("up", "-d")
	p.expectSlots(t, "web", 1, 2)
	p.expectSlots(t, "nginx", 1)
	p.waitUpstreams(t, 90*time.Second, nginxUpstreamFile, webHosts(1, 2)...)
	waitThroughNginx(t, 30*time.Second, port, webHosts(1, 2)...)
	before := p.steadyReloads(t, 10*time.Second)

	p.mustRoster("scale", "web=4")
	p.expectSlots(t, "web", 1, 2, 3, 4)
	p.waitUpstreams(t, 60*time.Second, nginxUpstreamFile, webHosts(1, 2, 3, 4)...)
	seen := waitThroughNginx(t, 30*time.Second, port, webHosts(1, 2, 3, 4)...)
	t.Logf("answers through nginx: %v", seen)
	after := p.steadyReloads(t, 10*time.Second) // longer than wait.max
	if after-before != 1 {
		t.Errorf("nginx reloaded %d times for the scale 2 -> 4, want once", after-before)
	}
}

func TestTemplateKilledReplicaLeavesUpstream(t *testing.T) {
	p := newProject(t, "")
	diagnoseOnFailure(t, p)
	p.mustRoster("up", "-d")
	web := p.expectSlots(t, "web", 1, 2, 3)
	p.waitUpstreams(t, 90*time.Second, upstreamFile, webHosts(1, 2, 3)...)

	docker(t, "kill", web[2].Name) // restart: "no": it stays exited
	p.waitUpstreams(t, 30*time.Second, upstreamFile, webHosts(1, 2)...)

	p.mustRoster("up", "-d")
	p.expectSlots(t, "web", 1, 2, 3)
	p.waitUpstreams(t, 30*time.Second, upstreamFile, webHosts(1, 2, 3)...)
}

func TestTemplateInvalidConfigKeepsLastGood(t *testing.T) {
	p, port := nginxProject(t, "")
	p.mustRoster("up", "-d")
	p.expectSlots(t, "web", 1, 2)
	good := p.waitUpstreams(t, 90*time.Second, nginxUpstreamFile, webHosts(1, 2)...)
	waitThroughNginx(t, 30*time.Second, port, webHosts(1, 2)...)
	reloads := p.steadyReloads(t, 5*time.Second)

	// three ready replicas: the template renders a directive nginx rejects
	p.mustRoster("scale", "web=3")
	p.expectSlots(t, "web", 1, 2, 3)
	var ps result
	eventually(t, 60*time.Second, func() error {
		ps = p.roster("ps")
		if out := ps.Stdout + ps.Stderr; !strings.Contains(out, "check failed") {
			return fmt.Errorf("roster ps does not report the failed check of %s:\n%s", nginxUpstreamFile, ps)
		}
		return nil
	})
	t.Logf("roster ps reports:\n%s%s", ps.Stdout, ps.Stderr)

	// The last good file stays (a failed check is not retried with the
	// same bytes, so it is not installed again later either).
	for i := 0; i < 12; i++ {
		if conf, _ := p.readRendered(t, nginxUpstreamFile); conf != good {
			t.Fatalf("%s changed after a failed check:\n%s\nwas:\n%s", nginxUpstreamFile, conf, good)
		}
		time.Sleep(250 * time.Millisecond)
	}
	// nginx was not reloaded and still serves the last good config
	if n := p.reloads(t); n != reloads {
		t.Errorf("nginx reloaded %d times after the failed check", n-reloads)
	}
	if seen, err := throughNginx(port, webHosts(1, 2)...); err != nil {
		t.Errorf("nginx stopped serving: %v", err)
	} else if seen[hostname("web", 3)] != 0 {
		t.Errorf("web_3 answered through nginx although its config was rejected: %v", seen)
	}
}

func TestTemplateRecreateKeepsFileIdentical(t *testing.T) {
	p := newProject(t, "")
	diagnoseOnFailure(t, p)
	p.mustRoster("up", "-d")
	before := p.expectSlots(t, "web", 1, 2, 3)
	conf := p.waitUpstreams(t, 90*time.Second, upstreamFile, webHosts(1, 2, 3)...)

	p.editCompose(t, "GREETING: one", "GREETING: two")
	p.mustRoster("up", "-d")
	after := p.expectSlots(t, "web", 1, 2, 3)
	for i := range after {
		if after[i].ID == before[i].ID {
			t.Fatalf("%s was not recreated by the environment change", after[i].Name)
		}
	}
	// once the agent has seen the new containers ready, and for longer
	// than wait.max after, the file is what it was
	eventually(t, 30*time.Second, func() error {
		got, _ := p.readRendered(t, upstreamFile)
		if got != conf {
			return fmt.Errorf("%s after the recreate:\n%s\nbefore:\n%s", upstreamFile, got, conf)
		}
		return nil
	})
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if got, _ := p.readRendered(t, upstreamFile); got != conf {
			t.Fatalf("%s after the recreate:\n%s\nbefore:\n%s", upstreamFile, got, conf)
		}
	}
}

func TestTemplateRenderDryRun(t *testing.T) {
	p := newProject(t, "")
	p.mustRoster("up", "-d", "--no-agent")
	p.expectSlots(t, "web", 1, 2)
	target := filepath.Join(p.Dir, upstreamFile)
	os.Remove(target) // whatever up did: start from no file

	// a new file: the whole content as added lines
	r := p.mustRoster("render", "--dry-run")
	for _, s := range []string{"--- ", "+++ ", "@@ -0,0 +1,4 @@", "+upstream web {", "+    server web_1:8080;", "+    server web_2:8080;", "+}"} {
		if !strings.Contains(r.Stdout, s) {
			t.Errorf("dry-run output lacks %q:\n%s", s, r)
		}
	}
	if _, err := os.Stat(target); err == nil {
		t.Fatalf("roster render --dry-run wrote %s", upstreamFile)
	}

	p.mustRoster("render")
	want := "upstream web {\n    server web_1:8080;\n    server web_2:8080;\n}\n"
	if got, _ := p.readRendered(t, upstreamFile); got != want {
		t.Fatalf("roster render wrote:\n%s\nwant:\n%s", got, want)
	}

	// nothing to change: no hunk
	if r := p.mustRoster("render", "--dry-run"); strings.Contains(r.Stdout, "@@") {
		t.Errorf("dry-run with nothing to change printed a diff:\n%s", r)
	}

	// an edited template: a hunk with context, the file untouched
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(target, old, old); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(p.Dir, "upstreams.conf.tmpl")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, append([]byte("# edited\n"), b...), 0o644); err != nil {
		t.Fatal(err)
	}
	r = p.mustRoster("render", "--dry-run")
	for _, s := range []string{"@@ -1,3 +1,4 @@", "+# edited\n upstream web {\n     server web_1:8080;\n     server web_2:8080;\n"} {
		if !strings.Contains(r.Stdout, s) {
			t.Errorf("dry-run output lacks %q:\n%s", s, r)
		}
	}
	st, err := os.Stat(target)
	if got, _ := p.readRendered(t, upstreamFile); got != want || err != nil || !st.ModTime().Equal(old) {
		t.Errorf("roster render --dry-run touched %s", upstreamFile)
	}
	p.mustRoster("render")
	if got, _ := p.readRendered(t, upstreamFile); got != "# edited\n"+want {
		t.Errorf("roster render wrote:\n%s", got)
	}
}
