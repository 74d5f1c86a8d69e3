// Package engine is the Docker adapter of roster: it implements
// reconciler.Engine on the Docker Engine API (client from the environment,
// API version negotiated, classic builder).
package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"github.com/roster-dev/roster/naming"
	"github.com/roster-dev/roster/reconciler"
)

// Docker implements reconciler.Engine on a Docker engine.
type Docker struct {
	cli *client.Client
}

var _ reconciler.Engine = (*Docker)(nil)

// New connects to the engine named by the environment (DOCKER_HOST & co.),
// negotiates the API version and checks the engine answers.
func New(ctx context.Context) (*Docker, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w (is DOCKER_HOST right?)", err)
	}
	if _, err := cli.Ping(ctx); err != nil {
		host := cli.DaemonHost()
		cli.Close()
		cause := err.Error()
		if strings.HasPrefix(cause, "Cannot connect to the Docker daemon") {
			cause = "nothing answers there" // the client's own text repeats host and hint
		}
		return nil, &wrapped{fmt.Sprintf("cannot reach the Docker engine at %s: %s (is the daemon running? is DOCKER_HOST right?)", host, cause), err}
	}
	return &Docker{cli: cli}, nil
}

// wrapped is an error with its own text that still unwraps to its cause.
type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg }
func (w *wrapped) Unwrap() error { return w.err }

// Client is the underlying Docker client, for callers that need more
// (exec, logs).
func (d *Docker) Client() *client.Client { return d.cli }

// APIVersion is the negotiated engine API version.
func (d *Docker) APIVersion() string { return d.cli.ClientVersion() }

// ServerVersion is the engine's version (e.g. "20.10.24").
func (d *Docker) ServerVersion(ctx context.Context) (string, error) {
	v, err := d.cli.ServerVersion(ctx)
	if err != nil {
		return "", fmt.Errorf("engine version: %w", err)
	}
	return v.Version, nil
}

// Close releases the client's connections.
func (d *Docker) Close() error { return d.cli.Close() }

func projectFilter(project string) filters.Args {
	return filters.NewArgs(filters.Arg("label", naming.LabelProject+"="+project))
}

// Observe reads the project's containers, networks and volumes with one
// list call each (no per-container inspect), and inspects each image.
func (d *Docker) Observe(ctx context.Context, project string, images []string) (*reconciler.Observed, error) {
	f := projectFilter(project)
	cs, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list containers of project %s: %w", project, err)
	}
	obs := &reconciler.Observed{Images: map[string]string{}}
	for _, c := range cs {
		obs.Containers = append(obs.Containers, observeContainer(c))
	}
	ns, err := d.cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list networks of project %s: %w", project, err)
	}
	for _, n := range ns {
		on := reconciler.Network{ID: n.ID, Name: n.Name, Labels: n.Labels}
		for _, c := range n.IPAM.Config {
			if c.Gateway != "" {
				on.Gateways = append(on.Gateways, c.Gateway)
			}
			if c.Subnet != "" {
				on.Subnets = append(on.Subnets, c.Subnet)
			}
		}
		obs.Networks = append(obs.Networks, on)
	}
	vs, err := d.cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list volumes of project %s: %w", project, err)
	}
	for _, v := range vs.Volumes {
		obs.Volumes = append(obs.Volumes, reconciler.Volume{Name: v.Name, Labels: v.Labels})
	}
	for _, ref := range images {
		if _, done := obs.Images[ref]; done || ref == "" {
			continue
		}
		img, err := d.cli.ImageInspect(ctx, ref)
		if cerrdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("inspect image %s: %w", ref, err)
		}
		obs.Images[ref] = img.ID
	}
	slices.SortFunc(obs.Containers, func(a, b reconciler.Container) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(obs.Networks, func(a, b reconciler.Network) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(obs.Volumes, func(a, b reconciler.Volume) int { return cmp.Compare(a.Name, b.Name) })
	return obs, nil
}

var exitRe = regexp.MustCompile(`^(?:Exited|Restarting) \((-?\d+)\)`)

func observeContainer(c container.Summary) reconciler.Container {
	oc := reconciler.Container{
		ID:         c.ID,
		Service:    c.Labels[naming.LabelService],
		ConfigHash: c.Labels[naming.LabelConfigHash],
		Image:      c.Image,
		ImageID:    c.ImageID,
		State:      string(c.State),
		OneOff:     c.Labels[naming.LabelOneOff] == "True",
		Created:    time.Unix(c.Created, 0),
		Labels:     c.Labels,
		Hostname:   c.Labels[naming.LabelHostname],
		IPs:        map[string]string{},
		IPv6:       map[string]string{},
	}
	if len(c.Names) > 0 {
		oc.Name = strings.TrimPrefix(c.Names[0], "/")
	}
	oc.Slot, _ = naming.ParseSlot(c.Labels[naming.LabelNumber])
	switch {
	case strings.Contains(c.Status, "(healthy)"):
		oc.Health = "healthy"
	case strings.Contains(c.Status, "(unhealthy)"):
		oc.Health = "unhealthy"
	case strings.Contains(c.Status, "(health: starting)"):
		oc.Health = "starting"
	}
	if m := exitRe.FindStringSubmatch(c.Status); m != nil {
		oc.ExitCode, _ = strconv.Atoi(m[1])
	}
	if c.NetworkSettings != nil {
		for name, ep := range c.NetworkSettings.Networks {
			if ep == nil {
				continue
			}
			if ep.IPAddress != "" {
				oc.IPs[name] = ep.IPAddress
			}
			if ep.GlobalIPv6Address != "" {
				oc.IPv6[name] = ep.GlobalIPv6Address
			}
		}
	}
	for _, p := range c.Ports {
		oc.Ports = append(oc.Ports, reconciler.PortBinding{Private: p.PrivatePort, Public: p.PublicPort, Type: p.Type, HostIP: p.IP})
	}
	slices.SortFunc(oc.Ports, func(a, b reconciler.PortBinding) int {
		return cmp.Or(cmp.Compare(a.Private, b.Private), cmp.Compare(a.Type, b.Type), cmp.Compare(a.HostIP, b.HostIP))
	})
	return oc
}

// CreateNetwork creates a project network from its compose definition.
func (d *Docker) CreateNetwork(ctx context.Context, spec reconciler.NetworkSpec) error {
	c := spec.Config
	opts := network.CreateOptions{
		Driver:     c.Driver,
		Options:    c.DriverOpts,
		Internal:   c.Internal,
		Attachable: c.Attachable,
		EnableIPv4: c.EnableIPv4,
		EnableIPv6: c.EnableIPv6,
		Labels:     merge(c.Labels, spec.Labels),
	}
	if c.Ipam.Driver != "" || len(c.Ipam.Config) > 0 || len(c.Ipam.Options) > 0 {
		opts.IPAM = &network.IPAM{Driver: c.Ipam.Driver, Options: c.Ipam.Options}
		for _, p := range c.Ipam.Config {
			if p != nil {
				opts.IPAM.Config = append(opts.IPAM.Config, network.IPAMConfig{Subnet: p.Subnet, Gateway: p.Gateway, IPRange: p.IPRange, AuxAddress: p.AuxiliaryAddresses})
			}
		}
	}
	if _, err := d.cli.NetworkCreate(ctx, spec.Name, opts); err != nil {
		return fmt.Errorf("create network %s: %w", spec.Name, err)
	}
	return nil
}

// RemoveNetwork removes a network; a missing one is not an error.
func (d *Docker) RemoveNetwork(ctx context.Context, name string) error {
	if err := d.cli.NetworkRemove(ctx, name); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove network %s: %w", name, err)
	}
	return nil
}

// CreateVolume creates a project volume from its compose definition.
func (d *Docker) CreateVolume(ctx context.Context, spec reconciler.VolumeSpec) error {
	c := spec.Config
	_, err := d.cli.VolumeCreate(ctx, volume.CreateOptions{Name: spec.Name, Driver: c.Driver, DriverOpts: c.DriverOpts, Labels: merge(c.Labels, spec.Labels)})
	if err != nil {
		return fmt.Errorf("create volume %s: %w", spec.Name, err)
	}
	return nil
}

// RemoveVolume removes a volume; a missing one is not an error.
func (d *Docker) RemoveVolume(ctx context.Context, name string) error {
	if err := d.cli.VolumeRemove(ctx, name, false); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	return nil
}

func merge(a, b map[string]string) map[string]string {
	out := make(map[string]string, len(a)+len(b))
	maps.Copy(out, a)
	maps.Copy(out, b)
	return out
}

// CreateContainer creates one replica: one ContainerInspect of
// spec.Inherit (when set) for its anonymous volumes, ContainerCreate, then
// NetworkConnect for each further network on engines before API 1.44. A
// failed connect removes the new container again.
func (d *Docker) CreateContainer(ctx context.Context, spec reconciler.ContainerSpec) (string, error) {
	opt := TranslateOptions{APIVersion: d.APIVersion()}
	if spec.Inherit != "" {
		old, err := d.cli.ContainerInspect(ctx, spec.Inherit)
		if err != nil && !cerrdefs.IsNotFound(err) {
			return "", fmt.Errorf("create container %s: inspect replaced container %s: %w", spec.Name, spec.Inherit, err)
		}
		opt.Inherited = anonymousVolumes(old.Mounts)
	}
	c, err := Translate(spec, opt)
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", spec.Name, err)
	}
	resp, err := d.cli.ContainerCreate(ctx, c.Config, c.HostConfig, c.Networking, nil, c.Name)
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", spec.Name, err)
	}
	for _, ep := range c.Connect {
		if err := d.cli.NetworkConnect(ctx, ep.Network, resp.ID, ep.Settings); err != nil {
			_ = d.cli.ContainerRemove(context.WithoutCancel(ctx), resp.ID, container.RemoveOptions{Force: true, RemoveVolumes: spec.Inherit == ""})
			return "", fmt.Errorf("create container %s: connect to network %s: %w", spec.Name, ep.Network, err)
		}
	}
	return resp.ID, nil
}

var anonymousName = regexp.MustCompile(`^[0-9a-f]{64}$`)

// anonymousVolumes maps destination to volume name for the anonymous
// volumes (engine-generated names) among mounts.
func anonymousVolumes(mounts []container.MountPoint) map[string]string {
	out := map[string]string{}
	for _, m := range mounts {
		if m.Type == mount.TypeVolume && anonymousName.MatchString(m.Name) {
			out[path.Clean(m.Destination)] = m.Name
		}
	}
	return out
}

// StartContainer starts a container; the engine's reason (e.g. "port is
// already allocated") is kept in the error.
func (d *Docker) StartContainer(ctx context.Context, id string) error {
	if err := d.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return fmt.Errorf("start container %s: %w", id, err)
	}
	return nil
}

// StopContainer stops a container; timeout nil means the container's own
// stop timeout, otherwise it is rounded up to whole seconds.
func (d *Docker) StopContainer(ctx context.Context, id string, timeout *time.Duration) error {
	var opts container.StopOptions
	if timeout != nil {
		s := int(math.Ceil(timeout.Seconds()))
		opts.Timeout = &s
	}
	if err := d.cli.ContainerStop(ctx, id, opts); err != nil {
		return fmt.Errorf("stop container %s: %w", id, err)
	}
	return nil
}

// RenameContainer renames a container.
func (d *Docker) RenameContainer(ctx context.Context, id, newName string) error {
	if err := d.cli.ContainerRename(ctx, id, newName); err != nil {
		return fmt.Errorf("rename container %s to %s: %w", id, newName, err)
	}
	return nil
}

// RemoveContainer force-removes a container, with its anonymous volumes
// when volumes is set; a missing container is not an error. The engine
// keeps anonymous volumes a recreate passed on by name, so with volumes
// the container is inspected first and those are removed after it
// (unless another container still uses them).
func (d *Docker) RemoveContainer(ctx context.Context, id string, volumes bool) error {
	var anon map[string]string
	if volumes {
		ins, err := d.cli.ContainerInspect(ctx, id)
		if cerrdefs.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("remove container %s: %w", id, err)
		}
		anon = anonymousVolumes(ins.Mounts)
	}
	err := d.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: volumes})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	for _, v := range anon {
		err := d.cli.VolumeRemove(ctx, v, false)
		if err != nil && !cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err) {
			return fmt.Errorf("remove container %s: remove its volume %s: %w", id, v, err)
		}
	}
	return nil
}

// eventActions are the container events that can change what the
// reconciler observes (exec_* events, one per healthcheck probe, are left out).
var eventActions = []string{"create", "start", "restart", "stop", "die", "kill", "oom", "pause", "unpause", "rename", "update", "destroy", "health_status"}

// Events streams the project's container events. The subscription is live
// when Events returns. The event channel is closed when ctx ends (no
// error) or the stream fails (one error on the error channel first).
func (d *Docker) Events(ctx context.Context, project string) (<-chan reconciler.Event, <-chan error) {
	f := projectFilter(project)
	f.Add("type", string(events.ContainerEventType))
	for _, a := range eventActions {
		f.Add("event", a)
	}
	msgs, errs := d.cli.Events(ctx, events.ListOptions{Filters: f})
	out := make(chan reconciler.Event, 64)
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		defer close(out)
		for {
			select {
			case m := <-msgs:
				select {
				case out <- toEvent(m):
				case <-ctx.Done():
					return
				}
			case err := <-errs:
				if ctx.Err() == nil && err != nil && !errors.Is(err, context.Canceled) {
					errc <- fmt.Errorf("engine events of project %s: %w", project, err)
				}
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, errc
}

func toEvent(m events.Message) reconciler.Event {
	a := m.Actor.Attributes
	action, _, _ := strings.Cut(string(m.Action), ":")
	ev := reconciler.Event{
		Time:      time.Unix(0, m.TimeNano),
		Action:    strings.TrimSpace(action),
		Container: m.Actor.ID,
		Name:      a["name"],
		Service:   a[naming.LabelService],
	}
	if m.TimeNano == 0 {
		ev.Time = time.Unix(m.Time, 0)
	}
	ev.Slot, _ = naming.ParseSlot(a[naming.LabelNumber])
	return ev
}

// HealthLog returns the output of the container's last healthcheck probe
// ("" without a healthcheck or before the first probe).
func (d *Docker) HealthLog(ctx context.Context, id string) (string, error) {
	j, err := d.cli.ContainerInspect(ctx, id)
	if err != nil {
		return "", fmt.Errorf("inspect container %s: %w", id, err)
	}
	if j.State == nil || j.State.Health == nil || len(j.State.Health.Log) == 0 {
		return "", nil
	}
	last := j.State.Health.Log[len(j.State.Health.Log)-1]
	return fmt.Sprintf("exit %d: %s", last.ExitCode, strings.TrimSpace(last.Output)), nil
}
