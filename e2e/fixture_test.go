package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestFixtureImage checks the harness and the fixture image without roster:
// docker-compose v1 runs it, and every endpoint the scenarios rely on
// answers as documented.
func TestFixtureImage(t *testing.T) {
	p := newProject(t, "")
	mustDockerCompose(t, p, "up", "-d")

	one := func(service string) ctr {
		t.Helper()
		cs := p.serviceContainers(t, service)
		if len(cs) != 1 {
			t.Fatalf("want one %s container, have:\n%s", service, describe(cs))
		}
		return cs[0]
	}
	web, late := one("web"), one("late")

	if got := strings.TrimSpace(p.httpGet(t, web.Name, "/hostname")); got != web.Hostname {
		t.Errorf("/hostname = %q, want %q", got, web.Hostname)
	}
	if got := strings.TrimSpace(p.httpGet(t, web.Name, "/")); got != web.Hostname {
		t.Errorf("/ = %q, want %q", got, web.Hostname)
	}
	if got := strings.TrimSpace(p.httpGet(t, web.Name, "/env?name=GREETING")); got != "hello" {
		t.Errorf("/env?name=GREETING = %q, want hello", got)
	}
	if code, body, err := p.tryHTTPGet(t, web.Name, "/env?name=E2E_UNSET"); err != nil || code != http.StatusNotFound {
		t.Errorf("/env of an unset variable: %d %q %v, want 404", code, body, err)
	}

	// Go's resolver in the scratch image, through the engine's embedded DNS.
	if got := strings.TrimSpace(p.httpGet(t, web.Name, "/resolve?name=late")); got != late.ip() {
		t.Errorf("/resolve?name=late = %q, want %q", got, late.ip())
	}
	if got := p.httpGet(t, web.Name, "/ptr?ip="+late.ip()); strings.TrimSpace(got) == "" {
		t.Errorf("/ptr?ip=%s is empty", late.ip())
	}
	if code, body, err := p.tryHTTPGet(t, web.Name, "/resolve?name=no-such-host.invalid"); err != nil || code != http.StatusNotFound {
		t.Errorf("/resolve of an unknown name: %d %q %v, want 404", code, body, err)
	}
	if code, body, err := p.tryHTTPGet(t, web.Name, "/srv?name=_http._tcp.no-such-host.invalid"); err != nil || code != http.StatusNotFound {
		t.Errorf("/srv of an unknown name: %d %q %v, want 404", code, body, err)
	}

	p.httpGet(t, web.Name, "/write?path=/tmp/e2e/deep/file&data="+url.QueryEscape("some data"))
	if got := p.httpGet(t, web.Name, "/read?path=/tmp/e2e/deep/file"); got != "some data" {
		t.Errorf("/read after /write = %q, want %q", got, "some data")
	}

	// Health: `fixture health` as a compose healthcheck, HEALTHY_AFTER and
	// /tmp/unhealthy.
	for _, c := range []ctr{web, late} {
		eventually(t, time.Minute, func() error {
			got, _ := p.container(t, c.Name)
			if got.Health != "healthy" {
				return fmt.Errorf("%s health is %q, want healthy", c.Name, got.Health)
			}
			return nil
		})
	}
	p.httpGet(t, web.Name, "/write?path=/tmp/unhealthy&data=x")
	if code, _, err := p.tryHTTPGet(t, web.Name, "/healthz"); err != nil || code != http.StatusServiceUnavailable {
		t.Errorf("/healthz with /tmp/unhealthy: %d %v, want 503", code, err)
	}
	if r := execute(context.Background(), "", nil, "docker", "exec", web.Name, "/fixture", "health"); r.Code != 1 {
		t.Errorf("fixture health on an unhealthy server: want exit 1\n%s", r)
	}
	eventually(t, time.Minute, func() error {
		got, _ := p.container(t, web.Name)
		if got.Health != "unhealthy" {
			return fmt.Errorf("%s health is %q, want unhealthy", web.Name, got.Health)
		}
		return nil
	})

	// SIGTERM: a prompt, clean exit (137 would mean docker had to kill it).
	docker(t, "stop", "-t", "20", web.Name)
	if got, _ := p.container(t, web.Name); got.State != "exited" || got.ExitCode != 0 {
		t.Errorf("after docker stop: state %s, exit code %d; want exited, 0", got.State, got.ExitCode)
	}
	if logs := mustDockerCompose(t, p, "logs", "web"); !strings.Contains(logs.Stdout, "listening on") {
		t.Errorf("docker-compose logs web does not show the start-up line:\n%s", logs)
	}
}
