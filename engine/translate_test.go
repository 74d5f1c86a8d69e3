package engine

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/go-connections/nat"

	"github.com/roster-dev/roster/naming"
	"github.com/roster-dev/roster/reconciler"
)

// load reads a compose file with compose-go as roster does (project "proj").
func load(t *testing.T, yaml string) *types.Project {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions([]string{file}, cli.WithWorkingDirectory(dir), cli.WithName("proj"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("load compose file: %v", err)
	}
	return p
}

// translate loads yaml and translates slot 2 of service.
func translate(t *testing.T, yaml, service string, opt TranslateOptions) *Create {
	t.Helper()
	c, err := translateErr(t, yaml, service, opt)
	if err != nil {
		t.Fatalf("Translate: %v", err)
	}
	return c
}

func translateErr(t *testing.T, yaml, service string, opt TranslateOptions) (*Create, error) {
	t.Helper()
	p := load(t, yaml)
	s, ok := p.Services[service]
	if !ok {
		t.Fatalf("no service %s", service)
	}
	hostname := service + "_2"
	spec := reconciler.ContainerSpec{
		Project:  p,
		Service:  s,
		Name:     naming.ContainerName(p.Name, service, 2),
		Hostname: hostname,
		Slot:     2,
		Image:    "img:" + service,
		Labels:   naming.ContainerLabels(p.Name, service, 2, hostname, "hash", p.WorkingDir, p.ComposeFiles),
		DNS:      []string{"172.30.0.53"},
	}
	return Translate(spec, opt)
}

func eq(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got  %#v\n want %#v", what, got, want)
	}
}

func port(s string) nat.Port { return nat.Port(s) }

func TestTranslateBasics(t *testing.T) {
	c := translate(t, `
services:
  web:
    image: nginx
    command: ["nginx", "-g", "daemon off;"]
    entrypoint: /docker-entrypoint.sh
    environment:
      A: "1"
      B: ""
      UNSET:
    labels: {team: web, com.docker.compose.service: wrong}
    hostname: ignored
    domainname: example.org
    user: "101:101"
    working_dir: /srv
    cap_add: [NET_ADMIN]
    cap_drop: [ALL]
    privileged: true
    read_only: true
    extra_hosts: ["db.local:10.0.0.5", "other=10.0.0.6"]
    dns: [1.1.1.1]
    dns_search: [example.org]
    dns_opt: [ndots:2]
    sysctls: {net.core.somaxconn: "1024"}
    shm_size: 64m
    init: true
    tty: true
    stdin_open: true
    stop_signal: SIGQUIT
    stop_grace_period: 1m30s
    logging:
      driver: json-file
      options: {max-size: 10m}
    security_opt: [no-new-privileges:true]
    group_add: [audio]
    pid: host
    ipc: shareable
    devices: ["/dev/fuse:/dev/fuse"]
    runtime: runc
    oom_score_adj: 100
    mac_address: "02:42:ac:11:00:02"
    platform: linux/amd64
`, "web", TranslateOptions{APIVersion: "1.41"})
	cfg, hc := c.Config, c.HostConfig
	eq(t, "name", c.Name, "proj-web-2")
	eq(t, "image", cfg.Image, "img:web")
	eq(t, "cmd", []string(cfg.Cmd), []string{"nginx", "-g", "daemon off;"})
	eq(t, "entrypoint", []string(cfg.Entrypoint), []string{"/docker-entrypoint.sh"})
	eq(t, "env", cfg.Env, []string{"A=1", "B="})
	eq(t, "label team", cfg.Labels["team"], "web")
	eq(t, "spec label wins", cfg.Labels[naming.LabelService], "web")
	eq(t, "hostname label", cfg.Labels[naming.LabelHostname], "web_2")
	eq(t, "hostname", cfg.Hostname, "web_2")
	eq(t, "domainname", cfg.Domainname, "example.org")
	eq(t, "user", cfg.User, "101:101")
	eq(t, "workdir", cfg.WorkingDir, "/srv")
	eq(t, "cap_add", []string(hc.CapAdd), []string{"NET_ADMIN"})
	eq(t, "cap_drop", []string(hc.CapDrop), []string{"ALL"})
	eq(t, "privileged", hc.Privileged, true)
	eq(t, "read_only", hc.ReadonlyRootfs, true)
	eq(t, "extra_hosts", hc.ExtraHosts, []string{"db.local:10.0.0.5", "other:10.0.0.6"})
	eq(t, "dns", hc.DNS, []string{"172.30.0.53", "1.1.1.1"})
	eq(t, "dns_search", hc.DNSSearch, []string{"example.org"})
	eq(t, "dns_opt", hc.DNSOptions, []string{"ndots:2"})
	eq(t, "sysctls", hc.Sysctls, map[string]string{"net.core.somaxconn": "1024"})
	eq(t, "shm", hc.ShmSize, int64(64<<20))
	eq(t, "init", *hc.Init, true)
	eq(t, "tty", cfg.Tty, true)
	eq(t, "stdin_open", cfg.OpenStdin, true)
	eq(t, "stop_signal", cfg.StopSignal, "SIGQUIT")
	eq(t, "stop_grace_period", *cfg.StopTimeout, 90)
	eq(t, "logging", hc.LogConfig, container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "10m"}})
	eq(t, "security_opt", hc.SecurityOpt, []string{"no-new-privileges:true"})
	eq(t, "group_add", hc.GroupAdd, []string{"audio"})
	eq(t, "pid", hc.PidMode, container.PidMode("host"))
	eq(t, "ipc", hc.IpcMode, container.IpcMode("shareable"))
	eq(t, "devices", hc.Devices, []container.DeviceMapping{{PathOnHost: "/dev/fuse", PathInContainer: "/dev/fuse", CgroupPermissions: "rwm"}})
	eq(t, "runtime", hc.Runtime, "runc")
	eq(t, "oom_score_adj", hc.OomScoreAdj, 100)
	eq(t, "mac (API 1.41: container-wide)", cfg.MacAddress, "02:42:ac:11:00:02") //nolint:staticcheck
	eq(t, "restart default", hc.RestartPolicy, container.RestartPolicy{Name: "no"})
	eq(t, "no ports", len(hc.PortBindings), 0)
}

func TestTranslateCommandReset(t *testing.T) {
	c := translate(t, `
services:
  a:
    image: x
    entrypoint: []
  b:
    image: x
`, "a", TranslateOptions{})
	if c.Config.Entrypoint == nil || len(c.Config.Entrypoint) != 0 {
		t.Errorf("entrypoint: [] must clear the image's entrypoint, got %#v", c.Config.Entrypoint)
	}
	if c.Config.Cmd != nil {
		t.Errorf("no command must keep the image's, got %#v", c.Config.Cmd)
	}
}

func TestTranslatePorts(t *testing.T) {
	c := translate(t, `
services:
  web:
    image: x
    ports:
      - "8080:80"
      - "127.0.0.1:9000-9001:9000-9001"
      - "53:53/udp"
      - "3000"
      - target: 443
        published: "8443"
        host_ip: "::1"
        protocol: tcp
    expose:
      - "7000"
      - "8000-8002"
      - "5353/udp"
`, "web", TranslateOptions{})
	wantExposed := nat.PortSet{}
	for _, p := range []string{"80/tcp", "9000/tcp", "9001/tcp", "53/udp", "3000/tcp", "443/tcp", "7000/tcp", "8000/tcp", "8001/tcp", "8002/tcp", "5353/udp"} {
		wantExposed[port(p)] = struct{}{}
	}
	eq(t, "exposed", c.Config.ExposedPorts, wantExposed)
	eq(t, "bindings", c.HostConfig.PortBindings, nat.PortMap{
		"80/tcp":   {{HostPort: "8080"}},
		"9000/tcp": {{HostIP: "127.0.0.1", HostPort: "9000"}},
		"9001/tcp": {{HostIP: "127.0.0.1", HostPort: "9001"}},
		"53/udp":   {{HostPort: "53"}},
		"3000/tcp": {{}},
		"443/tcp":  {{HostIP: "::1", HostPort: "8443"}},
	})
}

func TestTranslateVolumes(t *testing.T) {
	c := translate(t, `
services:
  db:
    image: x
    volumes:
      - ./data:/data
      - /etc/ssl:/etc/ssl:ro
      - type: bind
        source: /srv/strict
        target: /strict
        bind: {create_host_path: false, propagation: rslave}
      - dbdata:/var/lib/db
      - type: volume
        source: dbdata
        target: /nocopy
        volume: {nocopy: true}
      - /anon
      - /kept
      - type: tmpfs
        target: /scratch
        tmpfs: {size: 10m}
    tmpfs:
      - /run
      - /tmp:size=1m,mode=1777
volumes:
  dbdata: {}
`, "db", TranslateOptions{Inherited: map[string]string{
		"/kept":       "a1b2",
		"/image-vol":  "c3d4",
		"/var/lib/db": "should-not-be-used",
		"/run":        "tmpfs-now",
	}})
	hc := c.HostConfig
	if len(hc.Binds) != 2 || !strings.HasSuffix(hc.Binds[0], "/data:/data") || !filepath.IsAbs(hc.Binds[0]) {
		t.Errorf("binds: %#v (want an absolute ./data and /etc/ssl)", hc.Binds)
	}
	if len(hc.Binds) == 2 {
		eq(t, "read-only bind", hc.Binds[1], "/etc/ssl:/etc/ssl:ro")
	}
	eq(t, "mounts", hc.Mounts, []mount.Mount{
		{Type: mount.TypeBind, Source: "/srv/strict", Target: "/strict", BindOptions: &mount.BindOptions{Propagation: mount.PropagationRSlave}},
		{Type: mount.TypeVolume, Source: "proj_dbdata", Target: "/var/lib/db", VolumeOptions: &mount.VolumeOptions{}},
		{Type: mount.TypeVolume, Source: "proj_dbdata", Target: "/nocopy", VolumeOptions: &mount.VolumeOptions{NoCopy: true}},
		{Type: mount.TypeVolume, Target: "/anon", VolumeOptions: &mount.VolumeOptions{}},
		{Type: mount.TypeVolume, Source: "a1b2", Target: "/kept", VolumeOptions: &mount.VolumeOptions{}},
		{Type: mount.TypeTmpfs, Target: "/scratch", TmpfsOptions: &mount.TmpfsOptions{SizeBytes: 10 << 20}},
		{Type: mount.TypeVolume, Source: "c3d4", Target: "/image-vol"},
	})
	eq(t, "tmpfs", hc.Tmpfs, map[string]string{"/run": "", "/tmp": "size=1m,mode=1777"})
}

func TestTranslateVolumeMountsNormalised(t *testing.T) {
	// compose-go may or may not fill VolumeOptions for short syntax; the
	// test above pins today's behaviour, this one the essentials only.
	c := translate(t, `
services:
  s:
    image: x
    volumes: ["/anon"]
`, "s", TranslateOptions{})
	if len(c.HostConfig.Mounts) != 1 || c.HostConfig.Mounts[0].Source != "" || c.HostConfig.Mounts[0].Type != mount.TypeVolume {
		t.Errorf("anonymous volume: %#v", c.HostConfig.Mounts)
	}
}

func TestTranslateSecretsAndConfigs(t *testing.T) {
	c := translate(t, `
services:
  s:
    image: x
    secrets: [token]
    configs:
      - source: conf
        target: /etc/app.conf
secrets:
  token: {file: ./token.txt}
configs:
  conf: {file: ./app.conf}
`, "s", TranslateOptions{})
	m := c.HostConfig.Mounts
	if len(m) != 2 || m[0].Target != "/run/secrets/token" || !m[0].ReadOnly || !strings.HasSuffix(m[0].Source, "/token.txt") ||
		m[1].Target != "/etc/app.conf" || !strings.HasSuffix(m[1].Source, "/app.conf") {
		t.Errorf("secret and config mounts: %#v", m)
	}
	_, err := translateErr(t, `
services:
  s:
    image: x
    secrets: [env]
secrets:
  env: {environment: HOME}
`, "s", TranslateOptions{})
	if err == nil || !strings.Contains(err.Error(), "file-based") {
		t.Errorf("environment secret: want an error, got %v", err)
	}
}

const netYAML = `
services:
  mq:
    image: x
    networks:
      front:
        aliases: [rabbit]
        ipv4_address: 172.28.0.10
      back:
        priority: 100
        ipv6_address: "fd00::10"
      default: {}
networks:
  front:
    ipam: {config: [{subnet: 172.28.0.0/16}]}
  back:
    name: custom-back
`

func TestTranslateNetworksOldAPI(t *testing.T) {
	c := translate(t, netYAML, "mq", TranslateOptions{APIVersion: "1.41"})
	// back (priority 100) first, then default and front by name
	eq(t, "network mode", c.HostConfig.NetworkMode, container.NetworkMode("custom-back"))
	eq(t, "create endpoint", c.Networking.EndpointsConfig, map[string]*network.EndpointSettings{
		"custom-back": {Aliases: []string{"mq", "mq_2"}, IPAMConfig: &network.EndpointIPAMConfig{IPv6Address: "fd00::10"}},
	})
	eq(t, "connect", c.Connect, []Endpoint{
		{Network: "proj_default", Settings: &network.EndpointSettings{Aliases: []string{"mq", "mq_2"}}},
		{Network: "proj_front", Settings: &network.EndpointSettings{Aliases: []string{"mq", "mq_2", "rabbit"}, IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: "172.28.0.10"}}},
	})
}

func TestTranslateNetworksNewAPI(t *testing.T) {
	c := translate(t, netYAML, "mq", TranslateOptions{APIVersion: "1.47"})
	if len(c.Connect) != 0 || len(c.Networking.EndpointsConfig) != 3 {
		t.Errorf("API 1.44+: every endpoint at create, got %d at create and %d to connect", len(c.Networking.EndpointsConfig), len(c.Connect))
	}
}

func TestTranslateDefaultNetwork(t *testing.T) {
	c := translate(t, "services:\n  web:\n    image: x\n", "web", TranslateOptions{APIVersion: "1.41"})
	eq(t, "network mode", c.HostConfig.NetworkMode, container.NetworkMode("proj_default"))
	eq(t, "endpoints", c.Networking.EndpointsConfig, map[string]*network.EndpointSettings{"proj_default": {Aliases: []string{"web", "web_2"}}})
	eq(t, "connect", len(c.Connect), 0)
}

func TestTranslateNetworkMode(t *testing.T) {
	c := translate(t, `
services:
  app:
    image: x
  side:
    image: x
    network_mode: service:app
    volumes_from: ["app:ro"]
`, "side", TranslateOptions{})
	eq(t, "network mode", c.HostConfig.NetworkMode, container.NetworkMode("container:proj-app-1"))
	eq(t, "no hostname with a container's network", c.Config.Hostname, "")
	eq(t, "no endpoints", c.Networking, (*network.NetworkingConfig)(nil))
	eq(t, "volumes_from", c.HostConfig.VolumesFrom, []string{"proj-app-1:ro"})

	c = translate(t, "services:\n  h:\n    image: x\n    network_mode: host\n", "h", TranslateOptions{})
	eq(t, "host mode", c.HostConfig.NetworkMode, container.NetworkMode("host"))
	eq(t, "hostname kept", c.Config.Hostname, "h_2")
}

func TestTranslateHealthcheck(t *testing.T) {
	yaml := `
services:
  a:
    image: x
    healthcheck:
      test: ["CMD", "curl", "-f", "http://localhost"]
      interval: 5s
      timeout: 2s
      retries: 4
      start_period: 30s
      start_interval: 1s
  b:
    image: x
    healthcheck:
      test: curl -f http://localhost
  c:
    image: x
    healthcheck:
      disable: true
  d:
    image: x
`
	c := translate(t, yaml, "a", TranslateOptions{APIVersion: "1.44"})
	eq(t, "healthcheck", c.Config.Healthcheck, &container.HealthConfig{
		Test: []string{"CMD", "curl", "-f", "http://localhost"}, Interval: 5 * time.Second, Timeout: 2 * time.Second,
		Retries: 4, StartPeriod: 30 * time.Second, StartInterval: time.Second,
	})
	c = translate(t, yaml, "a", TranslateOptions{APIVersion: "1.41"})
	eq(t, "start_interval dropped before API 1.44", c.Config.Healthcheck.StartInterval, time.Duration(0))
	c = translate(t, yaml, "b", TranslateOptions{})
	eq(t, "shell test", []string(c.Config.Healthcheck.Test), []string{"CMD-SHELL", "curl -f http://localhost"})
	c = translate(t, yaml, "c", TranslateOptions{})
	eq(t, "disable", []string(c.Config.Healthcheck.Test), []string{"NONE"})
	c = translate(t, yaml, "d", TranslateOptions{})
	eq(t, "none", c.Config.Healthcheck, (*container.HealthConfig)(nil))
}

func TestTranslateRestart(t *testing.T) {
	yaml := `
services:
  plain: {image: x, restart: unless-stopped}
  limited: {image: x, restart: "on-failure:3"}
  any: {image: x, deploy: {restart_policy: {condition: any}}}
  fail: {image: x, deploy: {restart_policy: {condition: on-failure, max_attempts: 5}}}
  none: {image: x, deploy: {restart_policy: {condition: none}}}
  both: {image: x, restart: always, deploy: {restart_policy: {condition: none}}}
`
	for svc, want := range map[string]container.RestartPolicy{
		"plain":   {Name: "unless-stopped"},
		"limited": {Name: "on-failure", MaximumRetryCount: 3},
		"any":     {Name: "always"},
		"fail":    {Name: "on-failure", MaximumRetryCount: 5},
		"none":    {Name: "no"},
		"both":    {Name: "always"},
	} {
		eq(t, svc, translate(t, yaml, svc, TranslateOptions{}).HostConfig.RestartPolicy, want)
	}
}

func TestTranslateResources(t *testing.T) {
	yaml := `
services:
  direct:
    image: x
    mem_limit: 512m
    mem_reservation: 128m
    memswap_limit: 1g
    cpus: 0.1
    cpu_shares: 512
    pids_limit: 100
    ulimits:
      nproc: 65535
      nofile: {soft: 1024, hard: 4096}
  deployed:
    image: x
    deploy:
      resources:
        limits: {cpus: "1.5", memory: 256m, pids: 50}
        reservations: {memory: 64m}
`
	r := translate(t, yaml, "direct", TranslateOptions{}).HostConfig.Resources
	eq(t, "memory", r.Memory, int64(512<<20))
	eq(t, "reservation", r.MemoryReservation, int64(128<<20))
	eq(t, "swap", r.MemorySwap, int64(1<<30))
	eq(t, "cpus", r.NanoCPUs, int64(100_000_000))
	eq(t, "shares", r.CPUShares, int64(512))
	eq(t, "pids", *r.PidsLimit, int64(100))
	eq(t, "ulimits", r.Ulimits, []*container.Ulimit{{Name: "nofile", Soft: 1024, Hard: 4096}, {Name: "nproc", Soft: 65535, Hard: 65535}})

	r = translate(t, yaml, "deployed", TranslateOptions{}).HostConfig.Resources
	eq(t, "deploy memory", r.Memory, int64(256<<20))
	eq(t, "deploy cpus", r.NanoCPUs, int64(1_500_000_000))
	eq(t, "deploy pids", *r.PidsLimit, int64(50))
	eq(t, "deploy reservation", r.MemoryReservation, int64(64<<20))
}

func TestTranslateErrors(t *testing.T) {
	_, err := translateErr(t, "services:\n  s:\n    image: x\n    restart: sometimes\n", "s", TranslateOptions{})
	if err == nil || !strings.Contains(err.Error(), "service s") {
		t.Errorf("bad restart: want an error naming the service, got %v", err)
	}
}

func TestNanoCPUs(t *testing.T) {
	for in, want := range map[float32]int64{0: 0, 0.1: 1e8, 0.5: 5e8, 1.5: 15e8, 2: 2e9, 0.01: 1e7} {
		if got := nanoCPUs(in); got != want {
			t.Errorf("nanoCPUs(%v) = %d, want %d", in, got, want)
		}
	}
}

func TestObserveContainer(t *testing.T) {
	c := container.Summary{
		ID: "abc", Names: []string{"/proj-web-2"}, Image: "nginx", ImageID: "sha256:1", Created: 1700000000,
		State: "running", Status: "Up 3 minutes (health: starting)",
		Labels: map[string]string{naming.LabelService: "web", naming.LabelNumber: "2", naming.LabelConfigHash: "h",
			naming.LabelOneOff: "False", naming.LabelHostname: "web_2"},
		Ports: []container.Port{{IP: "0.0.0.0", PrivatePort: 80, PublicPort: 8080, Type: "tcp"}, {PrivatePort: 53, Type: "udp"}},
		NetworkSettings: &container.NetworkSettingsSummary{Networks: map[string]*network.EndpointSettings{
			"proj_default": {IPAddress: "172.18.0.3", GlobalIPv6Address: "fd00::3"}}},
	}
	o := observeContainer(c)
	eq(t, "observed", o, reconciler.Container{
		ID: "abc", Name: "proj-web-2", Service: "web", Slot: 2, ConfigHash: "h", Image: "nginx", ImageID: "sha256:1",
		State: "running", Health: "starting", Created: time.Unix(1700000000, 0), Labels: c.Labels, Hostname: "web_2",
		IPs: map[string]string{"proj_default": "172.18.0.3"}, IPv6: map[string]string{"proj_default": "fd00::3"},
		Ports: []reconciler.PortBinding{{Private: 53, Type: "udp"}, {Private: 80, Public: 8080, Type: "tcp", HostIP: "0.0.0.0"}},
	})
	for status, want := range map[string][2]any{
		"Up 2 hours (healthy)":         {"healthy", 0},
		"Up 1 second (unhealthy)":      {"unhealthy", 0},
		"Exited (137) 5 seconds ago":   {"", 137},
		"Restarting (1) 2 seconds ago": {"", 1},
		"Created":                      {"", 0},
	} {
		c.Status = status
		o := observeContainer(c)
		if o.Health != want[0] || o.ExitCode != want[1] {
			t.Errorf("%q: health %q exit %d, want %v", status, o.Health, o.ExitCode, want)
		}
	}
}
