// Package fake is an in-memory reconciler.Engine for planner and executor
// unit tests. It is not a substitute for the real engine in e2e tests.
package fake

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/roster-dev/roster/naming"
	"github.com/roster-dev/roster/reconciler"
)

// Engine keeps containers, networks, volumes and images in maps and records
// every call.
type Engine struct {
	mu         sync.Mutex
	Containers map[string]*reconciler.Container // by ID
	Networks   map[string]reconciler.Network
	Volumes    map[string]reconciler.Volume
	Images     map[string]string
	Calls      []string
	// Fail makes the named call fail: key "start P-web-2" etc.
	Fail map[string]error
	// Crash, when set, is called before each write call; returning an
	// error stops the call (simulates the process dying mid-plan).
	Crash func(call string) error
	// AfterStart, when set, may change a container right after it started
	// (e.g. make a one-shot job exit).
	AfterStart func(c *reconciler.Container)
	nextID     int
	clock      time.Time
}

// New returns an empty fake engine that has the given images.
func New(images ...string) *Engine {
	e := &Engine{Containers: map[string]*reconciler.Container{}, Networks: map[string]reconciler.Network{},
		Volumes: map[string]reconciler.Volume{}, Images: map[string]string{}, Fail: map[string]error{},
		clock: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	for _, im := range images {
		e.Images[im] = "sha256:" + im
	}
	return e
}

var _ reconciler.Engine = (*Engine)(nil)

func (e *Engine) call(name string) error {
	e.Calls = append(e.Calls, name)
	if e.Crash != nil {
		if err := e.Crash(name); err != nil {
			return err
		}
	}
	if err := e.Fail[name]; err != nil {
		return err
	}
	return nil
}

// Writes returns the calls that change something.
func (e *Engine) Writes() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, c := range e.Calls {
		if c != "observe" {
			out = append(out, c)
		}
	}
	return out
}

// Observe returns copies of everything labelled with the project.
func (e *Engine) Observe(ctx context.Context, project string, images []string) (*reconciler.Observed, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.Calls = append(e.Calls, "observe")
	o := &reconciler.Observed{Images: map[string]string{}}
	for _, c := range e.Containers {
		if c.Labels[naming.LabelProject] == project {
			cc := *c
			o.Containers = append(o.Containers, cc)
		}
	}
	sort.Slice(o.Containers, func(i, j int) bool { return o.Containers[i].Name < o.Containers[j].Name })
	for _, n := range e.Networks {
		o.Networks = append(o.Networks, n)
	}
	for _, v := range e.Volumes {
		o.Volumes = append(o.Volumes, v)
	}
	for _, im := range images {
		if id, ok := e.Images[im]; ok {
			o.Images[im] = id
		}
	}
	return o, nil
}

func (e *Engine) CreateNetwork(ctx context.Context, s reconciler.NetworkSpec) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.call("create network " + s.Name); err != nil {
		return err
	}
	e.Networks[s.Name] = reconciler.Network{ID: s.Name, Name: s.Name, Labels: s.Labels}
	return nil
}

func (e *Engine) RemoveNetwork(ctx context.Context, name string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.call("remove network " + name); err != nil {
		return err
	}
	delete(e.Networks, name)
	return nil
}

func (e *Engine) CreateVolume(ctx context.Context, s reconciler.VolumeSpec) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.call("create volume " + s.Name); err != nil {
		return err
	}
	e.Volumes[s.Name] = reconciler.Volume{Name: s.Name, Labels: s.Labels}
	return nil
}

func (e *Engine) RemoveVolume(ctx context.Context, name string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.call("remove volume " + name); err != nil {
		return err
	}
	delete(e.Volumes, name)
	return nil
}

func (e *Engine) BuildImage(ctx context.Context, s reconciler.BuildSpec) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.call("build " + s.Image); err != nil {
		return err
	}
	e.nextID++
	e.Images[s.Image] = fmt.Sprintf("sha256:built%d", e.nextID)
	return nil
}

func (e *Engine) PullImage(ctx context.Context, image string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.call("pull " + image); err != nil {
		return err
	}
	return fmt.Errorf("pull image %q: no registry", image)
}

func (e *Engine) byName(name string) *reconciler.Container {
	for _, c := range e.Containers {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (e *Engine) CreateContainer(ctx context.Context, s reconciler.ContainerSpec) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.call("create " + s.Name); err != nil {
		return "", err
	}
	if e.byName(s.Name) != nil {
		return "", fmt.Errorf("create container %s: name already in use", s.Name)
	}
	e.nextID++
	e.clock = e.clock.Add(time.Second)
	id := fmt.Sprintf("%064d", e.nextID)
	e.Containers[id] = &reconciler.Container{ID: id, Name: s.Name, Service: s.Labels[naming.LabelService], Slot: s.Slot,
		ConfigHash: s.Labels[naming.LabelConfigHash], Image: s.Image, ImageID: e.Images[s.Image], State: "created",
		Created: e.clock, Labels: s.Labels, Hostname: s.Hostname, IPs: map[string]string{}}
	return id, nil
}

func (e *Engine) get(id string) (*reconciler.Container, error) {
	c, ok := e.Containers[id]
	if !ok {
		return nil, fmt.Errorf("no such container %s", id)
	}
	return c, nil
}

func (e *Engine) StartContainer(ctx context.Context, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.get(id)
	if err != nil {
		return err
	}
	if err := e.call("start " + c.Name); err != nil {
		return err
	}
	c.State = "running"
	if e.AfterStart != nil {
		e.AfterStart(c)
	}
	return nil
}

func (e *Engine) StopContainer(ctx context.Context, id string, _ *time.Duration) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.get(id)
	if err != nil {
		return err
	}
	if err := e.call("stop " + c.Name); err != nil {
		return err
	}
	c.State = "exited"
	return nil
}

func (e *Engine) RenameContainer(ctx context.Context, id, newName string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.get(id)
	if err != nil {
		return err
	}
	if err := e.call("rename " + c.Name + " " + newName); err != nil {
		return err
	}
	c.Name = newName
	return nil
}

func (e *Engine) RemoveContainer(ctx context.Context, id string, volumes bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.get(id)
	if err != nil {
		return err
	}
	if err := e.call("remove " + c.Name); err != nil {
		return err
	}
	delete(e.Containers, id)
	return nil
}

func (e *Engine) Events(ctx context.Context, project string) (<-chan reconciler.Event, <-chan error) {
	ch := make(chan reconciler.Event)
	go func() { <-ctx.Done(); close(ch) }()
	return ch, make(chan error)
}

// Slots returns "name/hostname/state" of the project's containers, sorted.
func (e *Engine) Slots() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, c := range e.Containers {
		out = append(out, c.Name+"/"+c.Hostname+"/"+c.State)
	}
	sort.Strings(out)
	return out
}
