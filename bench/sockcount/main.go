// Command sockcount is a counting proxy for the Docker engine's API: it
// listens on a unix socket, forwards every HTTP request to the engine's
// socket and counts the requests by method and path (API version prefix
// dropped, object names and IDs replaced by {id}). The tool under test runs
// with DOCKER_HOST=unix://LISTEN.
//
//	sockcount -listen /tmp/x/docker.sock [-upstream /var/run/docker.sock] -out counts.json
//
// It prints "ready" on stdout once listening and, on SIGTERM or SIGINT,
// writes the counts as JSON to -out ({"total": N, "writes": N, "requests":
// {"GET /containers/json": N, ...}}) and exits. Streaming responses
// (events, logs) are flushed as they come; connection upgrades (attach,
// exec start) are passed through both ways.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

type counter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *counter) add(key string) {
	c.mu.Lock()
	c.counts[key]++
	c.mu.Unlock()
}

// Counts is the JSON written at exit.
type Counts struct {
	Total    int            `json:"total"`
	Writes   int            `json:"writes"` // every method but GET and HEAD
	Requests map[string]int `json:"requests"`
}

func (c *counter) snapshot() Counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := Counts{Requests: map[string]int{}}
	for k, n := range c.counts {
		out.Requests[k] = n
		out.Total += n
		if m, _, _ := strings.Cut(k, " "); m != http.MethodGet && m != http.MethodHead {
			out.Writes += n
		}
	}
	return out
}

var version = regexp.MustCompile(`^/v[0-9]+\.[0-9]+/`)

// objectPath: the resources whose second path segment names an object.
var objectPath = map[string]bool{"containers": true, "networks": true, "volumes": true,
	"images": true, "exec": true, "plugins": true, "services": true, "tasks": true,
	"secrets": true, "configs": true, "nodes": true, "distribution": true}

// Key is "METHOD /path" with the API version dropped and the object named
// in the path replaced by {id}: GET /v1.41/containers/abc/json -> GET
// /containers/{id}/json. Fixed sub-resources (containers/json,
// containers/create, networks/create, images/json, ...) are kept.
func Key(method, path string) string {
	p := version.ReplaceAllString(path, "/")
	seg := strings.Split(strings.TrimPrefix(p, "/"), "/")
	if len(seg) >= 2 && objectPath[seg[0]] {
		switch seg[1] {
		case "json", "create", "prune", "load", "search", "build", "get":
		default:
			if seg[0] == "images" && len(seg) > 2 {
				// image names contain slashes: keep only the last segment (the action)
				seg = []string{seg[0], "{id}", seg[len(seg)-1]}
			} else {
				seg[1] = "{id}"
			}
		}
	}
	return method + " /" + strings.Join(seg, "/")
}

func main() {
	listen := flag.String("listen", "", "unix socket to listen on")
	upstream := flag.String("upstream", "/var/run/docker.sock", "the engine's unix socket")
	out := flag.String("out", "", "file for the JSON counts (default: stdout)")
	flag.Parse()
	if *listen == "" {
		fmt.Fprintln(os.Stderr, "usage: sockcount -listen SOCK [-upstream SOCK] [-out FILE]")
		os.Exit(2)
	}
	if err := run(*listen, *upstream, *out); err != nil {
		fmt.Fprintln(os.Stderr, "sockcount:", err)
		os.Exit(1)
	}
}

func run(listen, upstream, out string) error {
	_ = os.Remove(listen)
	ln, err := net.Listen("unix", listen)
	if err != nil {
		return err
	}
	defer os.Remove(listen)
	c := &counter{counts: map[string]int{}}
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", upstream)
	}
	target := &url.URL{Scheme: "http", Host: "docker"}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
		Transport:     &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second},
		FlushInterval: -1,
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.add(Key(r.Method, r.URL.Path))
		proxy.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 30 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	fmt.Println("ready")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case err := <-done:
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	b, err := json.MarshalIndent(c.snapshot(), "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if out == "" {
		_, err = os.Stdout.Write(b)
		return err
	}
	return os.WriteFile(out, b, 0o644)
}
