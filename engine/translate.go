package engine

import (
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/strslice"
	"github.com/docker/docker/api/types/versions"
	"github.com/docker/go-connections/nat"

	"github.com/roster-dev/roster/naming"
	"github.com/roster-dev/roster/reconciler"
)

// Create is everything CreateContainer sends to the engine for one replica.
type Create struct {
	Name       string
	Config     *container.Config
	HostConfig *container.HostConfig
	Networking *network.NetworkingConfig
	// Connect lists the networks to join after the create, in order:
	// engines before API 1.44 take only one endpoint at create.
	Connect []Endpoint
}

// Endpoint is one network to connect a container to.
type Endpoint struct {
	Network  string
	Settings *network.EndpointSettings
}

// TranslateOptions are the engine facts the pure translation needs.
type TranslateOptions struct {
	// APIVersion is the negotiated engine API version; "" means current.
	APIVersion string
	// Inherited maps a mount destination to the anonymous volume mounted
	// there in the container being replaced; those volumes are reused.
	Inherited map[string]string
}

// Translate turns one replica of a compose service into the engine's
// container create request. It is pure: no engine or file-system calls.
func Translate(spec reconciler.ContainerSpec, opt TranslateOptions) (*Create, error) {
	s := spec.Service
	old := opt.APIVersion != "" && versions.LessThan(opt.APIVersion, "1.44")
	cfg := &container.Config{
		Hostname:     spec.Hostname,
		Domainname:   s.DomainName,
		User:         s.User,
		Tty:          s.Tty,
		OpenStdin:    s.StdinOpen,
		Env:          environment(s.Environment),
		Cmd:          strslice.StrSlice(s.Command),
		Entrypoint:   strslice.StrSlice(s.Entrypoint),
		Image:        spec.Image,
		WorkingDir:   s.WorkingDir,
		Labels:       merge(s.Labels, spec.Labels),
		StopSignal:   s.StopSignal,
		ExposedPorts: nat.PortSet{},
	}
	if s.StopGracePeriod != nil {
		sec := int(time.Duration(*s.StopGracePeriod) / time.Second)
		cfg.StopTimeout = &sec
	}
	var err error
	if cfg.Healthcheck, err = healthcheck(s.HealthCheck, old); err != nil {
		return nil, fmt.Errorf("service %s: healthcheck: %w", s.Name, err)
	}

	hc := &container.HostConfig{
		CapAdd:         s.CapAdd,
		CapDrop:        s.CapDrop,
		DNS:            append(append([]string{}, spec.DNS...), s.DNS...),
		DNSOptions:     s.DNSOpts,
		DNSSearch:      s.DNSSearch,
		GroupAdd:       s.GroupAdd,
		Privileged:     s.Privileged,
		ReadonlyRootfs: s.ReadOnly,
		SecurityOpt:    s.SecurityOpt,
		ShmSize:        int64(s.ShmSize),
		Sysctls:        s.Sysctls,
		Runtime:        s.Runtime,
		OomScoreAdj:    int(s.OomScoreAdj),
		Init:           s.Init,
		StorageOpt:     s.StorageOpt,
		VolumeDriver:   s.VolumeDriver,
		CgroupnsMode:   container.CgroupnsMode(s.Cgroup),
		UTSMode:        container.UTSMode(s.Uts),
		UsernsMode:     container.UsernsMode(s.UserNSMode),
		Isolation:      container.Isolation(s.Isolation),
		PidMode:        container.PidMode(serviceRef(spec, s.Pid)),
		IpcMode:        container.IpcMode(serviceRef(spec, s.Ipc)),
		PortBindings:   nat.PortMap{},
	}
	if len(hc.DNS) == 0 {
		hc.DNS = nil
	}
	if len(s.ExtraHosts) > 0 {
		hc.ExtraHosts = s.ExtraHosts.AsList(":")
		sort.Strings(hc.ExtraHosts)
	}
	hc.LogConfig = container.LogConfig{Type: s.LogDriver, Config: s.LogOpt}
	if s.Logging != nil {
		hc.LogConfig = container.LogConfig{Type: s.Logging.Driver, Config: s.Logging.Options}
	}
	if hc.RestartPolicy, err = restartPolicy(s); err != nil {
		return nil, fmt.Errorf("service %s: %w", s.Name, err)
	}
	resources(&hc.Resources, s)
	for _, v := range s.VolumesFrom {
		hc.VolumesFrom = append(hc.VolumesFrom, volumesFrom(spec, v))
	}

	if err := ports(cfg, hc, s); err != nil {
		return nil, fmt.Errorf("service %s: %w", s.Name, err)
	}
	if err := volumes(hc, spec, opt.Inherited); err != nil {
		return nil, fmt.Errorf("service %s: %w", s.Name, err)
	}
	c := &Create{Name: spec.Name, Config: cfg, HostConfig: hc}
	if err := networks(c, spec, old); err != nil {
		return nil, fmt.Errorf("service %s: %w", s.Name, err)
	}
	return c, nil
}

// serviceRef turns "service:NAME[:opts]" into "container:P-NAME-1[:opts]"
// (pid, ipc, network_mode, volumes_from); anything else is kept.
func serviceRef(spec reconciler.ContainerSpec, v string) string {
	rest, ok := strings.CutPrefix(v, types.ServicePrefix)
	if !ok {
		return v
	}
	name, opts, _ := strings.Cut(rest, ":")
	project := ""
	if spec.Project != nil {
		project = spec.Project.Name
	}
	out := "container:" + naming.ContainerName(project, name, 1)
	if opts != "" {
		out += ":" + opts
	}
	return out
}

// volumesFrom turns "SERVICE[:ro]" and "container:NAME[:ro]" into the
// engine's "CONTAINER[:ro]".
func volumesFrom(spec reconciler.ContainerSpec, v string) string {
	if rest, ok := strings.CutPrefix(v, "container:"); ok {
		return rest
	}
	return strings.TrimPrefix(serviceRef(spec, types.ServicePrefix+strings.TrimPrefix(v, types.ServicePrefix)), "container:")
}

func environment(env types.MappingWithEquals) []string {
	var out []string
	for k, v := range env {
		if v != nil {
			out = append(out, k+"="+*v)
		}
	}
	sort.Strings(out)
	return out
}

func healthcheck(h *types.HealthCheckConfig, old bool) (*container.HealthConfig, error) {
	if h == nil {
		return nil, nil
	}
	if h.Disable {
		return &container.HealthConfig{Test: []string{"NONE"}}, nil
	}
	out := &container.HealthConfig{Test: h.Test}
	d := func(p *types.Duration) time.Duration {
		if p == nil {
			return 0
		}
		return time.Duration(*p)
	}
	out.Interval, out.Timeout, out.StartPeriod = d(h.Interval), d(h.Timeout), d(h.StartPeriod)
	if !old { // start_interval needs API 1.44; older engines use the interval
		out.StartInterval = d(h.StartInterval)
	}
	if h.Retries != nil {
		out.Retries = int(*h.Retries)
	}
	if len(out.Test) > 0 {
		switch out.Test[0] {
		case "CMD", "CMD-SHELL", "NONE":
		default:
			return nil, fmt.Errorf("test must start with CMD, CMD-SHELL or NONE, got %q", out.Test[0])
		}
	}
	return out, nil
}

func restartPolicy(s types.ServiceConfig) (container.RestartPolicy, error) {
	if s.Restart != "" {
		name, n, _ := strings.Cut(s.Restart, ":")
		rp := container.RestartPolicy{Name: container.RestartPolicyMode(name)}
		switch rp.Name {
		case container.RestartPolicyDisabled, container.RestartPolicyAlways, container.RestartPolicyUnlessStopped:
		case container.RestartPolicyOnFailure:
			if n != "" {
				max, err := strconv.Atoi(n)
				if err != nil || max < 0 {
					return rp, fmt.Errorf("restart %q: the retry count must be a number", s.Restart)
				}
				rp.MaximumRetryCount = max
			}
		default:
			return rp, fmt.Errorf("restart %q: use no, always, on-failure[:N] or unless-stopped", s.Restart)
		}
		return rp, nil
	}
	if s.Deploy == nil || s.Deploy.RestartPolicy == nil {
		return container.RestartPolicy{Name: container.RestartPolicyDisabled}, nil
	}
	p := s.Deploy.RestartPolicy
	switch p.Condition {
	case "none":
		return container.RestartPolicy{Name: container.RestartPolicyDisabled}, nil
	case "on-failure":
		rp := container.RestartPolicy{Name: container.RestartPolicyOnFailure}
		if p.MaxAttempts != nil {
			rp.MaximumRetryCount = int(*p.MaxAttempts)
		}
		return rp, nil
	case "any", "":
		return container.RestartPolicy{Name: container.RestartPolicyAlways}, nil
	}
	return container.RestartPolicy{}, fmt.Errorf("deploy.restart_policy.condition %q: use none, on-failure or any", p.Condition)
}

// nanoCPUs converts a compose CPU count (float32) to nano CPUs without
// float32 noise (0.1 -> 100000000).
func nanoCPUs(v float32) int64 {
	f, _ := strconv.ParseFloat(strconv.FormatFloat(float64(v), 'f', -1, 32), 64)
	return int64(f*1e9 + 0.5)
}

func resources(r *container.Resources, s types.ServiceConfig) {
	r.Memory = int64(s.MemLimit)
	r.MemoryReservation = int64(s.MemReservation)
	r.MemorySwap = int64(s.MemSwapLimit)
	r.NanoCPUs = nanoCPUs(s.CPUS)
	r.CPUShares = s.CPUShares
	r.CPUPeriod, r.CPUQuota = s.CPUPeriod, s.CPUQuota
	r.CPURealtimePeriod, r.CPURealtimeRuntime = s.CPURTPeriod, s.CPURTRuntime
	r.CpusetCpus = s.CPUSet
	r.CgroupParent = s.CgroupParent
	r.DeviceCgroupRules = s.DeviceCgroupRules
	if s.PidsLimit != 0 {
		p := s.PidsLimit
		r.PidsLimit = &p
	}
	if s.OomKillDisable {
		t := true
		r.OomKillDisable = &t
	}
	if s.MemSwappiness != 0 {
		v := int64(s.MemSwappiness)
		r.MemorySwappiness = &v
	}
	requests := s.Gpus
	if d := s.Deploy; d != nil {
		if l := d.Resources.Limits; l != nil {
			if r.Memory == 0 {
				r.Memory = int64(l.MemoryBytes)
			}
			if r.NanoCPUs == 0 {
				r.NanoCPUs = nanoCPUs(float32(l.NanoCPUs))
			}
			if r.PidsLimit == nil && l.Pids != 0 {
				p := l.Pids
				r.PidsLimit = &p
			}
		}
		if rs := d.Resources.Reservations; rs != nil {
			if r.MemoryReservation == 0 {
				r.MemoryReservation = int64(rs.MemoryBytes)
			}
			requests = append(requests, rs.Devices...)
		}
	}
	for _, d := range requests {
		dr := container.DeviceRequest{Driver: d.Driver, Count: int(d.Count), DeviceIDs: d.IDs, Options: d.Options}
		if len(d.Capabilities) > 0 {
			dr.Capabilities = [][]string{d.Capabilities}
		}
		r.DeviceRequests = append(r.DeviceRequests, dr)
	}
	for _, d := range s.Devices {
		perm := d.Permissions
		if perm == "" {
			perm = "rwm"
		}
		r.Devices = append(r.Devices, container.DeviceMapping{PathOnHost: d.Source, PathInContainer: d.Target, CgroupPermissions: perm})
	}
	r.Ulimits = ulimits(s.Ulimits)
}

// ulimits converts compose ulimits (single or soft/hard), sorted by name.
func ulimits(in map[string]*types.UlimitsConfig) []*container.Ulimit {
	var out []*container.Ulimit
	for _, n := range slices.Sorted(maps.Keys(in)) {
		if u := in[n]; u != nil && u.Single != 0 {
			out = append(out, &container.Ulimit{Name: n, Soft: int64(u.Single), Hard: int64(u.Single)})
		} else if u != nil {
			out = append(out, &container.Ulimit{Name: n, Soft: int64(u.Soft), Hard: int64(u.Hard)})
		}
	}
	return out
}

func ports(cfg *container.Config, hc *container.HostConfig, s types.ServiceConfig) error {
	for _, p := range s.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = "tcp"
		}
		port, err := nat.NewPort(proto, strconv.Itoa(int(p.Target)))
		if err != nil {
			return fmt.Errorf("port %d/%s: %w", p.Target, proto, err)
		}
		cfg.ExposedPorts[port] = struct{}{}
		hc.PortBindings[port] = append(hc.PortBindings[port], nat.PortBinding{HostIP: p.HostIP, HostPort: p.Published})
	}
	for _, e := range s.Expose {
		spec, proto, _ := strings.Cut(e, "/")
		if proto == "" {
			proto = "tcp"
		}
		lo, hi, err := nat.ParsePortRangeToInt(spec)
		if err != nil {
			return fmt.Errorf("expose %q: %w", e, err)
		}
		for n := lo; n <= hi; n++ {
			port, err := nat.NewPort(proto, strconv.Itoa(n))
			if err != nil {
				return fmt.Errorf("expose %q: %w", e, err)
			}
			cfg.ExposedPorts[port] = struct{}{}
		}
	}
	return nil
}

var propagations = map[string]bool{"rprivate": true, "private": true, "rshared": true, "shared": true, "rslave": true, "slave": true}

// volumes fills Binds (bind mounts the engine may create on the host),
// Mounts and Tmpfs.
func volumes(hc *container.HostConfig, spec reconciler.ContainerSpec, inherited map[string]string) error {
	s := spec.Service
	used := map[string]bool{}
	if spec.ResolvConf != "" {
		// roster's DNS: a resolv.conf written by the operator.
		hc.Binds = append(hc.Binds, spec.ResolvConf+":/etc/resolv.conf:ro")
		used["/etc/resolv.conf"] = true
	}
	for _, t := range s.Tmpfs {
		dst, opts, _ := strings.Cut(t, ":")
		if hc.Tmpfs == nil {
			hc.Tmpfs = map[string]string{}
		}
		hc.Tmpfs[dst] = opts
		used[path.Clean(dst)] = true
	}
	for _, v := range s.Volumes {
		used[path.Clean(v.Target)] = true
		switch v.Type {
		case types.VolumeTypeBind:
			if !filepath.IsAbs(v.Source) {
				return fmt.Errorf("bind mount %q: the source must be an absolute path", v.Source)
			}
			b := v.Bind
			if b == nil {
				b = &types.ServiceVolumeBind{CreateHostPath: true}
			}
			if b.Propagation != "" && !propagations[b.Propagation] {
				return fmt.Errorf("bind mount %s: unknown propagation %q", v.Target, b.Propagation)
			}
			if bool(b.CreateHostPath) && b.Recursive == "" && !strings.Contains(v.Source, ":") {
				// Binds: the engine creates a missing source directory.
				opts := []string{}
				if v.ReadOnly {
					opts = append(opts, "ro")
				}
				if b.Propagation != "" {
					opts = append(opts, b.Propagation)
				}
				if b.SELinux != "" {
					opts = append(opts, b.SELinux)
				}
				bind := v.Source + ":" + v.Target
				if len(opts) > 0 {
					bind += ":" + strings.Join(opts, ",")
				}
				hc.Binds = append(hc.Binds, bind)
				continue
			}
			m := mount.Mount{Type: mount.TypeBind, Source: v.Source, Target: v.Target, ReadOnly: v.ReadOnly,
				BindOptions: &mount.BindOptions{Propagation: mount.Propagation(b.Propagation), NonRecursive: b.Recursive == "disabled"}}
			hc.Mounts = append(hc.Mounts, m)
		case types.VolumeTypeVolume:
			m := mount.Mount{Type: mount.TypeVolume, Target: v.Target, ReadOnly: v.ReadOnly}
			if v.Source != "" {
				m.Source = v.Source
				if spec.Project != nil {
					if pv, ok := spec.Project.Volumes[v.Source]; ok && pv.Name != "" {
						m.Source = pv.Name
					}
				}
				if name, ok := spec.SlotVolumes[v.Source]; ok {
					m.Source = name
				}
			} else if name, ok := inherited[path.Clean(v.Target)]; ok {
				m.Source = name
			}
			if v.Volume != nil {
				m.VolumeOptions = &mount.VolumeOptions{NoCopy: v.Volume.NoCopy, Subpath: v.Volume.Subpath}
			}
			hc.Mounts = append(hc.Mounts, m)
		case types.VolumeTypeTmpfs:
			m := mount.Mount{Type: mount.TypeTmpfs, Target: v.Target, ReadOnly: v.ReadOnly}
			if v.Tmpfs != nil {
				m.TmpfsOptions = &mount.TmpfsOptions{SizeBytes: int64(v.Tmpfs.Size), Mode: os.FileMode(v.Tmpfs.Mode)}
			}
			hc.Mounts = append(hc.Mounts, m)
		default:
			return fmt.Errorf("volume %s: type %q is not supported", v.Target, v.Type)
		}
	}
	if err := fileObjects(hc, spec, used); err != nil {
		return err
	}
	// Anonymous volumes of the replaced container the service does not
	// name (e.g. the image's VOLUMEs) are kept too.
	for _, d := range slices.Sorted(maps.Keys(inherited)) {
		if !used[path.Clean(d)] {
			hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeVolume, Source: inherited[d], Target: d})
		}
	}
	return nil
}

// fileObjects bind-mounts file-based secrets (at /run/secrets/NAME) and
// configs (at /NAME) read-only, as compose does.
func fileObjects(hc *container.HostConfig, spec reconciler.ContainerSpec, used map[string]bool) error {
	type ref struct {
		kind, source, target, dir string
	}
	var refs []ref
	for _, r := range spec.Service.Secrets {
		refs = append(refs, ref{"secret", r.Source, r.Target, "/run/secrets"})
	}
	for _, r := range spec.Service.Configs {
		refs = append(refs, ref{"config", r.Source, r.Target, "/"})
	}
	for _, r := range refs {
		var file string
		if spec.Project != nil {
			if r.kind == "secret" {
				file = spec.Project.Secrets[r.source].File
			} else {
				file = spec.Project.Configs[r.source].File
			}
		}
		if file == "" {
			return fmt.Errorf("%s %q: only file-based %ss are supported", r.kind, r.source, r.kind)
		}
		target := r.target
		if target == "" {
			target = r.source
		}
		if !path.IsAbs(target) {
			target = path.Join(r.dir, target)
		}
		used[path.Clean(target)] = true
		hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeBind, Source: file, Target: target, ReadOnly: true})
	}
	return nil
}

func networks(c *Create, spec reconciler.ContainerSpec, old bool) error {
	s := spec.Service
	if s.NetworkMode != "" {
		mode := serviceRef(spec, s.NetworkMode)
		c.HostConfig.NetworkMode = container.NetworkMode(mode)
		if strings.HasPrefix(mode, "container:") {
			c.Config.Hostname, c.Config.Domainname = "", "" // the engine refuses both
		}
		if old {
			c.Config.MacAddress = s.MacAddress //nolint:staticcheck // the only way before API 1.44
		}
		return nil
	}
	keys := s.NetworksByPriority()
	if len(keys) == 0 {
		keys = []string{"default"}
	}
	var eps []Endpoint
	for i, key := range keys {
		name := key
		if spec.Project != nil {
			if n, ok := spec.Project.Networks[key]; ok && n.Name != "" {
				name = n.Name
			} else {
				name = spec.Project.Name + "_" + key
			}
		}
		es := &network.EndpointSettings{Aliases: dedupe(s.Name, spec.Hostname)}
		if nc := s.Networks[key]; nc != nil {
			es.Aliases = dedupe(append(es.Aliases, nc.Aliases...)...)
			es.DriverOpts = nc.DriverOpts
			es.GwPriority = nc.GatewayPriority
			es.MacAddress = nc.MacAddress
			if nc.Ipv4Address != "" || nc.Ipv6Address != "" || len(nc.LinkLocalIPs) > 0 {
				es.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: nc.Ipv4Address, IPv6Address: nc.Ipv6Address, LinkLocalIPs: nc.LinkLocalIPs}
			}
		}
		if i == 0 && es.MacAddress == "" {
			es.MacAddress = s.MacAddress
		}
		if old && i == 0 {
			// per-endpoint MAC addresses need API 1.44: use the container's
			c.Config.MacAddress, es.MacAddress = es.MacAddress, "" //nolint:staticcheck
		}
		eps = append(eps, Endpoint{Network: name, Settings: es})
	}
	c.HostConfig.NetworkMode = container.NetworkMode(eps[0].Network)
	c.Networking = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{}}
	for i, ep := range eps {
		if i == 0 || !old {
			c.Networking.EndpointsConfig[ep.Network] = ep.Settings
		} else {
			c.Connect = append(c.Connect, ep)
		}
	}
	return nil
}

func dedupe(in ...string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range in {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
