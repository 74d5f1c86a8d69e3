package compose

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadFeatures(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{
		"compose.yaml": `
name: shop
include: [extra.yaml]
x-roster:
  zone: shop.test
services:
  base:
    image: fixture:${TAG:-1}
    environment: [FROM_BASE=1]
  web:
    extends: base
    env_file: web.env
    scale: 2
    x-roster: {hostname: "{service}-{n}"}
  debug:
    image: fixture:1
    profiles: [debug]
`,
		"override.yaml": "services:\n  web:\n    environment: [OVERRIDDEN=yes]\n",
		"extra.yaml":    "services:\n  cache:\n    image: fixture:1\n    deploy: {replicas: 3}\n",
		"web.env":       "FROM_FILE=2\n",
		".env":          "TAG=7\n",
	})
	p, err := Load(context.Background(), Options{Files: []string{filepath.Join(dir, "compose.yaml"), filepath.Join(dir, "override.yaml")}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "shop" || p.Roster.Zone != "shop.test." {
		t.Fatalf("name %q zone %q", p.Name, p.Roster.Zone)
	}
	if got := strings.Join(p.ServiceNames(), ","); got != "base,cache,web" {
		t.Fatalf("services = %s (profiles not honoured?)", got)
	}
	web, _ := p.Service("web")
	if web.Config.Image != "fixture:7" || web.Replicas != 2 || web.HostnameTemplate != "{service}-{n}" {
		t.Fatalf("web = image %q replicas %d template %q", web.Config.Image, web.Replicas, web.HostnameTemplate)
	}
	env := web.Config.Environment
	for _, k := range []string{"FROM_BASE", "FROM_FILE", "OVERRIDDEN"} {
		if env[k] == nil {
			t.Errorf("environment lacks %s: %v", k, env)
		}
	}
	cache, _ := p.Service("cache")
	if cache.Replicas != 3 {
		t.Fatalf("cache replicas %d", cache.Replicas)
	}

	p2, err := Load(context.Background(), Options{Files: []string{filepath.Join(dir, "compose.yaml")}, Profiles: []string{"debug"}, ProjectName: "other", EnvFiles: []string{filepath.Join(dir, "web.env")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p2.Service("debug"); !ok || p2.Name != "other" {
		t.Fatalf("profile/name not applied: %v %s", p2.ServiceNames(), p2.Name)
	}
	if w, _ := p2.Service("web"); w.Config.Image != "fixture:1" {
		t.Fatalf("--env-file replaces .env: image %q", w.Config.Image)
	}
}

func TestLoadErrors(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"bad port", "services:\n  web:\n    image: x\n    ports: [\"not-a-port\"]\n", "compose.yaml"},
		{"bad field type", "services:\n  web:\n    image: x\n    environment: 3\n", "environment"},
		{"container_name with replicas", "services:\n  web:\n    image: x\n    container_name: one\n    scale: 2\n", `service "web": container_name`},
		{"container_name with deploy replicas", "services:\n  web:\n    image: x\n    container_name: one\n    deploy: {replicas: 2}\n", `service "web": container_name`},
		{"bad hostname template", "services:\n  web:\n    image: x\n    x-roster: {hostname: \"{service}\"}\n", `service "web": x-roster.hostname`},
		{"unknown x-roster field", "services:\n  web:\n    image: x\n    x-roster: {hostnme: a}\n", `unknown field "hostnme"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, map[string]string{"compose.yaml": c.yaml})
			_, err := Load(context.Background(), Options{Files: []string{filepath.Join(dir, "compose.yaml")}})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
		})
	}
}

func TestUnsupportedFieldsWarn(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{"compose.yaml": "services:\n  web:\n    image: x\n    develop: {watch: [{path: ., action: rebuild}]}\n    links: [db]\n  db: {image: x}\n"})
	p, err := Load(context.Background(), Options{Files: []string{filepath.Join(dir, "compose.yaml")}})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(p.Warnings, "\n")
	for _, f := range []string{`"develop"`, `"links"`} {
		if !strings.Contains(got, `service "web": field `+f) {
			t.Errorf("no warning for %s in:\n%s", f, got)
		}
	}
}

func TestHashIgnoresReplicas(t *testing.T) {
	dir := t.TempDir()
	load := func(y string) *Service {
		write(t, dir, map[string]string{"compose.yaml": y})
		p, err := Load(context.Background(), Options{Files: []string{filepath.Join(dir, "compose.yaml")}})
		if err != nil {
			t.Fatal(err)
		}
		s, _ := p.Service("web")
		return s
	}
	a := load("services:\n  web: {image: x, scale: 1}\n")
	b := load("services:\n  web: {image: x, scale: 4}\n")
	c := load("services:\n  web: {image: x, scale: 4, environment: [A=1]}\n")
	if a.Hash != b.Hash || b.Hash == c.Hash {
		t.Fatalf("hash: scale must not matter, env must: %s %s %s", a.Hash, b.Hash, c.Hash)
	}
}

func TestScaleState(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{"compose.yaml": "services:\n  web: {image: x, scale: 2}\n  db: {image: y}\n"})
	opts := Options{Files: []string{filepath.Join(dir, "compose.yaml")}}
	p, _ := Load(context.Background(), opts)
	st, err := ReadState(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.SetScale(&st, map[string]int{"web": 5}); err != nil {
		t.Fatal(err)
	}
	if err := p.SetScale(&st, map[string]int{"nosuch": 1}); err == nil {
		t.Fatal("unknown service accepted")
	}
	if err := WriteState(p, st); err != nil {
		t.Fatal(err)
	}
	st2, _ := ReadState(p)
	if r, _ := p.Replicas(st2); r["web"] != 5 || r["db"] != 1 {
		t.Fatalf("replicas %v", r)
	}
	// the file's own count changes: the file wins again
	write(t, dir, map[string]string{"compose.yaml": "services:\n  web: {image: x, scale: 3}\n  db: {image: y}\n"})
	p, _ = Load(context.Background(), opts)
	r, notes := p.Replicas(st2)
	if r["web"] != 3 || len(notes) != 1 {
		t.Fatalf("replicas %v notes %v", r, notes)
	}
}

func TestSlotVolumesValidated(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"services:\n  mq:\n    image: x\n    x-roster: {slot_volumes: [nope]}\n", `"nope" must be a volume declared`},
		{"services:\n  mq:\n    image: x\n    x-roster: {slot_volumes: [data]}\nvolumes:\n  data: {}\n", `does not mount volume "data"`},
	} {
		dir := t.TempDir()
		write(t, dir, map[string]string{"compose.yaml": c.yaml})
		_, err := Load(context.Background(), Options{Files: []string{filepath.Join(dir, "compose.yaml")}})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), `service "mq": x-roster.slot_volumes`) {
			t.Errorf("err = %v, want %q", err, c.want)
		}
	}
}
