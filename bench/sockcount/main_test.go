package main

import "testing"

func TestKey(t *testing.T) {
	for _, c := range []struct{ method, path, want string }{
		{"GET", "/v1.41/containers/json", "GET /containers/json"},
		{"GET", "/v1.41/containers/3f2c9a1b7d4e/json", "GET /containers/{id}/json"},
		{"POST", "/v1.41/containers/create", "POST /containers/create"},
		{"POST", "/v1.41/containers/demo-web-1/start", "POST /containers/{id}/start"},
		{"DELETE", "/v1.41/containers/abc", "DELETE /containers/{id}"},
		{"GET", "/v1.41/images/roster-fixture:bench/json", "GET /images/{id}/json"},
		{"GET", "/v1.41/images/example.org/a/b:1/json", "GET /images/{id}/json"},
		{"GET", "/_ping", "GET /_ping"},
		{"HEAD", "/_ping", "HEAD /_ping"},
		{"GET", "/v1.41/networks/bench_default", "GET /networks/{id}"},
		{"GET", "/version", "GET /version"},
	} {
		if got := Key(c.method, c.path); got != c.want {
			t.Errorf("Key(%s %s) = %q, want %q", c.method, c.path, got, c.want)
		}
	}
}
