package reconciler

import (
	"context"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
)

// Engine is the few container-engine calls the reconciler needs. The Docker
// adapter (package engine) implements it; planner tests use an in-memory
// fake. Every method is one engine API call (ListX may page internally).
type Engine interface {
	// Observe lists every object labelled with the project: containers
	// (all states), networks, volumes, and the images the services name.
	Observe(ctx context.Context, project string, images []string) (*Observed, error)

	CreateNetwork(ctx context.Context, spec NetworkSpec) error
	RemoveNetwork(ctx context.Context, name string) error
	CreateVolume(ctx context.Context, spec VolumeSpec) error
	RemoveVolume(ctx context.Context, name string) error

	// BuildImage builds with the engine's classic builder (context,
	// dockerfile, args, target) and tags the result spec.Image.
	BuildImage(ctx context.Context, spec BuildSpec) error
	// PullImage pulls an image; on a machine with no registry it fails
	// with an error that says so.
	PullImage(ctx context.Context, image string) error

	// CreateContainer translates the compose service into the engine's
	// container config and creates it; returns the new container's ID.
	CreateContainer(ctx context.Context, spec ContainerSpec) (string, error)
	StartContainer(ctx context.Context, id string) error
	StopContainer(ctx context.Context, id string, timeout *time.Duration) error
	RenameContainer(ctx context.Context, id, newName string) error
	// RemoveContainer force-removes; anonymous volumes only when volumes.
	RemoveContainer(ctx context.Context, id string, volumes bool) error

	// Events streams the project's container events until ctx ends or the
	// stream fails (the error channel then yields one error).
	Events(ctx context.Context, project string) (<-chan Event, <-chan error)
}

// Observed is everything the engine holds for one project, read at once.
type Observed struct {
	Containers []Container
	Networks   []Network
	Volumes    []Volume
	// Images maps an image reference (as the services name it) to its ID;
	// a missing key means the engine does not have the image.
	Images map[string]string
}

// Container is one observed container.
type Container struct {
	ID         string
	Name       string // without the leading '/'
	Service    string // compose service label
	Slot       int    // container-number label; 0 when absent or invalid
	ConfigHash string
	Image      string // image reference from the config
	ImageID    string // image ID the container runs
	State      string // created, running, paused, restarting, removing, exited, dead
	Health     string // "", starting, healthy, unhealthy
	ExitCode   int
	OneOff     bool
	Created    time.Time
	Labels     map[string]string
	Hostname   string            // from the dev.roster.hostname label
	IPs        map[string]string // network name -> IPv4 address
	IPv6       map[string]string // network name -> IPv6 address
	Ports      []PortBinding
}

// PortBinding is one published or exposed port of a container.
type PortBinding struct {
	Private uint16
	Public  uint16 // 0 when only exposed
	Type    string // tcp, udp, sctp
	HostIP  string
}

// Running reports whether the container is running (or restarting, which
// the engine will bring back by itself).
func (c Container) Running() bool { return c.State == "running" || c.State == "restarting" }

// Network is one observed network.
type Network struct {
	ID     string
	Name   string
	Labels map[string]string
	// Gateways are the network's gateway addresses (IPAM config).
	Gateways []string
	Subnets  []string // CIDR
}

// Volume is one observed volume.
type Volume struct {
	Name   string
	Labels map[string]string
}

// NetworkSpec is a network to create; Config is the compose definition.
type NetworkSpec struct {
	Name   string
	Key    string // key in the compose file
	Config types.NetworkConfig
	Labels map[string]string
}

// VolumeSpec is a volume to create.
type VolumeSpec struct {
	Name   string
	Key    string
	Config types.VolumeConfig
	Labels map[string]string
}

// BuildSpec is an image to build.
type BuildSpec struct {
	Service string
	Image   string // tag to give the result
	Build   types.BuildConfig
	Dir     string // project directory; Build.Context is relative to it
}

// ContainerSpec is everything the adapter needs to create one replica.
type ContainerSpec struct {
	Project  *types.Project // for networks, volumes, working dir
	Service  types.ServiceConfig
	Name     string // {project}-{service}-{n}
	Hostname string
	Slot     int
	Image    string            // resolved image reference
	Labels   map[string]string // naming.ContainerLabels plus the service's own
	// Inherit is the ID of the container this one replaces: its
	// anonymous volumes are mounted again at the same paths.
	Inherit string
	// DNS servers to give the container, prepended to the service's own.
	DNS []string
	// SlotVolumes maps a compose volume key to this slot's own volume
	// (x-roster.slot_volumes).
	SlotVolumes map[string]string
	// ResolvConf is a host file bind-mounted read-only at
	// /etc/resolv.conf: how containers reach roster's DNS (see README).
	ResolvConf string
}

// Event is one engine event for a project container.
type Event struct {
	Time      time.Time
	Action    string // create, start, die, destroy, health_status, ...
	Container string // ID
	Name      string
	Service   string
	Slot      int
}
