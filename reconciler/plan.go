// Package reconciler converges a compose project on an engine: observe
// every labelled object once, compute a plan with a pure function, execute
// the plan with a bounded, decision-free executor. See README.md.
package reconciler

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/roster-dev/roster/compose"
)

// Action is the engine call a step makes.
type Action string

// The actions; each is exactly one Engine method.
const (
	ActBuildImage      Action = "build image"
	ActPullImage       Action = "pull image"
	ActCreateNetwork   Action = "create network"
	ActCreateVolume    Action = "create volume"
	ActCreateContainer Action = "create container"
	ActStartContainer  Action = "start container"
	ActStopContainer   Action = "stop container"
	ActRenameContainer Action = "rename container"
	ActRemoveContainer Action = "remove container"
	ActRemoveNetwork   Action = "remove network"
	ActRemoveVolume    Action = "remove volume"
	// Not engine writes: the publisher's drain and undrain, and waits that
	// observe the engine until a condition holds.
	ActDrain       Action = "drain"
	ActUndrain     Action = "undrain"
	ActWaitReady   Action = "wait ready"
	ActWaitService Action = "wait for service"
)

// Step is one engine call with its cause.
type Step struct {
	ID      int // 1-based position in the plan
	Action  Action
	Target  string // object name the step acts on (for a rename: the old name)
	Service string
	Slot    int
	Cause   string
	After   []int // steps that must succeed first
	// AfterDone are steps that must have finished, whatever their outcome
	// (failure_action: continue).
	AfterDone []int
	// Delay is waited before the call (update_config.delay).
	Delay time.Duration
	// Rollout marks the steps of a rolling update of Service.
	Rollout bool
	// Condition of a wait-for-service step: service_healthy or
	// service_completed_successfully; Monitor of a wait-ready step: how
	// long the container must stay ready.
	Condition string
	Monitor   time.Duration

	// Payloads, by action.
	Network   *NetworkSpec
	Volume    *VolumeSpec
	Build     *BuildSpec
	Image     string         // pull
	Container *ContainerSpec // create
	// ContainerID is the container a start/stop/rename/remove acts on;
	// when it is empty, Ref names the create step whose result it is.
	ContainerID   string
	Ref           int
	NewName       string // rename
	RemoveVolumes bool   // remove container: also its anonymous volumes
	Timeout       *time.Duration
}

// IsImage reports whether the step builds or pulls an image.
func (s Step) IsImage() bool { return s.Action == ActBuildImage || s.Action == ActPullImage }

// Line is the step as one line of text.
func (s Step) Line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%3d. %s %s", s.ID, s.Action, s.Target)
	if s.Action == ActRenameContainer {
		fmt.Fprintf(&b, " -> %s", s.NewName)
	}
	if s.Action == ActCreateContainer && s.Container != nil {
		fmt.Fprintf(&b, " (hostname %s)", s.Container.Hostname)
	}
	if s.Delay > 0 {
		fmt.Fprintf(&b, " after a delay of %s", s.Delay)
	}
	fmt.Fprintf(&b, ": %s", s.Cause)
	if len(s.After) > 0 {
		fmt.Fprintf(&b, " [after %s]", joinIDs(s.After))
	}
	if len(s.AfterDone) > 0 {
		fmt.Fprintf(&b, " [after %s finished]", joinIDs(s.AfterDone))
	}
	return b.String()
}

func joinIDs(list []int) string {
	ids := make([]string, len(list))
	for i, a := range list {
		ids[i] = strconv.Itoa(a)
	}
	return strings.Join(ids, ",")
}

// Plan is an ordered list of steps.
type Plan struct {
	Project  string
	Steps    []Step
	Warnings []string
	// RequeueAfter asks the loop to look again this soon even without an
	// event (a restart_unhealthy backoff that has not run out yet).
	RequeueAfter time.Duration
}

// Empty reports whether the plan makes no engine call.
func (p *Plan) Empty() bool { return len(p.Steps) == 0 }

// String prints the plan: the same text serves --dry-run, logs and tests.
func (p *Plan) String() string {
	var b strings.Builder
	for _, w := range p.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	if p.Empty() {
		fmt.Fprintf(&b, "project %s: nothing to do\n", p.Project)
		return b.String()
	}
	fmt.Fprintf(&b, "project %s: %d steps\n", p.Project, len(p.Steps))
	for _, s := range p.Steps {
		b.WriteString(s.Line())
		b.WriteByte('\n')
	}
	return b.String()
}

// Desired is what the project should look like.
type Desired struct {
	Project  *compose.Project
	Replicas map[string]int // effective replicas per service (after `roster scale`)
	// Services restricts the plan to these services (and what they
	// depend on); empty means all.
	Services      []string
	RemoveOrphans bool
	ForceRecreate bool
	NoRecreate    bool
	// StartStopped starts exited containers (what `up` does); the
	// foreground loop leaves containers the engine or the user stopped.
	StartStopped bool
	Build        bool     // build images of services with a build section
	DNS          []string // DNS servers given to new containers
	// ResolvConf maps a network name to the resolv.conf file that points
	// the containers whose primary network it is at roster's DNS.
	ResolvConf map[string]string
	// Agent, when set, is the project's background operator container.
	Agent *AgentSpec
	// Paused maps a service to the config hash whose rollout failed: no
	// further slot is rolled to it (and old containers kept aside are
	// left) until the config changes or the user runs `up` again.
	Paused map[string]string
	// WaitTimeout bounds each wait step (default 5 minutes).
	WaitTimeout time.Duration
	// Now is the planning time (restart_unhealthy backoff); Once sets it.
	Now time.Time
}

// AgentSpec is the background operator: a container of the project made
// from a synthesized service.
type AgentSpec struct {
	Name    string // {project}-roster-agent
	Image   string
	Service compose.Service // Config and Hash; Name "roster-agent"
}

// planner accumulates steps.
type planner struct {
	d       Desired
	o       *Observed
	plan    *Plan
	drifted []rollSlot       // the current service's slots to roll
	rolled  map[string][]int // service -> the last steps of its rollout
}

func (pl *planner) add(s Step) int {
	s.ID = len(pl.plan.Steps) + 1
	pl.plan.Steps = append(pl.plan.Steps, s)
	return s.ID
}

func (pl *planner) warn(format string, args ...any) {
	pl.plan.Warnings = append(pl.plan.Warnings, fmt.Sprintf(format, args...))
}

// selected returns the services to reconcile: the requested ones and,
// transitively, what they depend on; all when none was requested.
func selected(d Desired) (map[string]bool, error) {
	p := d.Project
	out := map[string]bool{}
	if len(d.Services) == 0 {
		for _, s := range p.Services {
			out[s.Name] = true
		}
		return out, nil
	}
	var visit func(name, from string) error
	visit = func(name, from string) error {
		if out[name] {
			return nil
		}
		s, ok := p.Service(name)
		if !ok {
			if from != "" {
				return fmt.Errorf("service %q depends on %q, which is not in the project (or its profile is not enabled)", from, name)
			}
			return fmt.Errorf("no such service: %q (services: %s)", name, strings.Join(p.ServiceNames(), ", "))
		}
		out[name] = true
		for dep, cond := range s.Config.DependsOn {
			if _, ok := p.Service(dep); !ok && !cond.Required {
				continue // required: false
			}
			if err := visit(dep, name); err != nil {
				return err
			}
		}
		return nil
	}
	for _, n := range d.Services {
		if err := visit(n, ""); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// MakePlan is the pure planning function: from the desired model and one
// observation it returns every engine call needed, each with its cause. It
// makes no call itself, so the same inputs always give the same plan.
func MakePlan(d Desired, o *Observed) (*Plan, error) {
	if o == nil {
		o = &Observed{}
	}
	p := d.Project
	pl := &planner{d: d, o: o, plan: &Plan{Project: p.Name}}
	sel, err := selected(d)
	if err != nil {
		return nil, err
	}
	pl.plan.Warnings = append(pl.plan.Warnings, p.Warnings...)

	imageSteps, err := pl.images(sel)
	if err != nil {
		return nil, err
	}
	infra, err := pl.infra()
	if err != nil {
		return nil, err
	}
	// Nothing but images changes before every image is there: a
	// missing image stops the whole plan with nothing changed.
	infra = append(infra, imageSteps...)
	for i := range pl.plan.Steps {
		if !pl.plan.Steps[i].IsImage() {
			pl.plan.Steps[i].After = append(pl.plan.Steps[i].After, imageSteps...)
		}
	}

	// Services in dependency order, so that a dependency's start steps
	// exist before its dependents' create steps refer to them.
	order, err := dependencyOrder(p, sel)
	if err != nil {
		return nil, err
	}
	started := map[string][]int{} // service -> its start steps in this plan
	for _, name := range order {
		svc, _ := p.Service(name)
		var after []int
		after = append(after, infra...)
		deps := make([]string, 0, len(svc.Config.DependsOn))
		for dep := range svc.Config.DependsOn {
			deps = append(deps, dep)
		}
		sort.Strings(deps)
		var restartAfter []int
		for _, dep := range deps {
			cond := svc.Config.DependsOn[dep]
			if _, selectedDep := sel[dep]; !selectedDep {
				continue
			}
			after = append(after, started[dep]...)
			if w := pl.waitFor(svc.Name, dep, cond.Condition, started[dep]); w != 0 {
				after = append(after, w)
			}
			if cond.Restart {
				restartAfter = append(restartAfter, pl.rolled[dep]...)
			}
		}
		started[name] = pl.service(svc, after)
		if len(restartAfter) > 0 {
			pl.restartDependents(svc, restartAfter)
		}
	}
	pl.orphans()
	pl.agent()
	return pl.plan, nil
}

// waitFor adds, when needed, a step that waits until service dep meets a
// depends_on condition of service name: when dep has steps in this plan or
// does not meet it in the observation. Returns the step, or 0.
func (pl *planner) waitFor(name, dep, condition string, depSteps []int) int {
	if condition != "service_healthy" && condition != "service_completed_successfully" {
		return 0
	}
	if len(depSteps) == 0 && pl.observedMeets(dep, condition) {
		return 0
	}
	verb := map[string]string{"service_healthy": "healthy", "service_completed_successfully": "completed successfully"}[condition]
	return pl.add(Step{Action: ActWaitService, Target: dep, Service: name, Condition: condition, After: depSteps,
		Timeout: pl.waitTimeout(), Cause: fmt.Sprintf("service %s depends on %s being %s", name, dep, verb)})
}

// observedMeets reports whether every observed replica of dep meets the
// condition already.
func (pl *planner) observedMeets(dep, condition string) bool {
	n := 0
	for _, c := range pl.o.Containers {
		if c.Service != dep || c.OneOff || c.Slot < 1 {
			continue
		}
		n++
		switch condition {
		case "service_healthy":
			if !c.Running() || c.Health != "healthy" {
				return false
			}
		case "service_completed_successfully":
			if c.State != "exited" || c.ExitCode != 0 {
				return false
			}
		}
	}
	return n > 0
}

// restartDependents restarts the running containers of svc after a
// dependency with `restart: true` was rolled out.
func (pl *planner) restartDependents(svc *compose.Service, after []int) {
	if len(pl.rolled[svc.Name]) > 0 {
		return // its own containers are being replaced anyway
	}
	for _, c := range pl.o.Containers {
		if c.Service != svc.Name || c.OneOff || !c.Running() {
			continue
		}
		cause := fmt.Sprintf("a dependency of %s was updated (depends_on restart: true)", svc.Name)
		st := pl.stop(c, cause, after)
		pl.add(Step{Action: ActStartContainer, Target: c.Name, Service: c.Service, Slot: c.Slot, ContainerID: c.ID, After: []int{st}, Cause: cause})
	}
}

// InfraSteps returns the plan restricted to images, networks and volumes:
// what must exist before containers can be planned exactly.
func (p *Plan) InfraSteps() *Plan {
	out := &Plan{Project: p.Project}
	keep := map[int]bool{}
	for _, s := range p.Steps {
		switch s.Action {
		case ActBuildImage, ActPullImage, ActCreateNetwork, ActCreateVolume:
			keep[s.ID] = true
		}
	}
	for _, s := range p.Steps {
		if keep[s.ID] {
			var after []int
			for _, a := range s.After {
				if keep[a] {
					after = append(after, a)
				}
			}
			s.After = after
			out.Steps = append(out.Steps, s)
		}
	}
	return out
}

// images plans builds and pulls; an image that cannot be had is an error.
func (pl *planner) images(sel map[string]bool) ([]int, error) {
	var ids []int
	seen := map[string]bool{}
	p := pl.d.Project
	for _, svc := range p.Services {
		if !sel[svc.Name] || pl.replicas(svc) == 0 {
			continue
		}
		ref := compose.ImageName(p.Name, svc.Config)
		if seen[ref] {
			continue
		}
		seen[ref] = true
		_, have := pl.o.Images[ref]
		switch {
		case svc.Config.Build != nil && (!have || pl.d.Build):
			cause := "image missing"
			if have {
				cause = "--build"
			}
			ids = append(ids, pl.add(Step{Action: ActBuildImage, Target: ref, Service: svc.Name, Cause: cause,
				Build: &BuildSpec{Service: svc.Name, Image: ref, Build: *svc.Config.Build, Dir: p.Dir}}))
		case have:
		case svc.Config.PullPolicy == "never":
			return nil, fmt.Errorf("service %q: image %q is not present in the engine, has no build section, and pull_policy is never", svc.Name, ref)
		default:
			ids = append(ids, pl.add(Step{Action: ActPullImage, Target: ref, Service: svc.Name, Image: ref,
				Cause: fmt.Sprintf("image missing for service %s (it has no build section)", svc.Name)}))
		}
	}
	return ids, nil
}

// infra plans the project's networks and volumes.
func (pl *planner) infra() ([]int, error) {
	var ids []int
	p := pl.d.Project.Compose
	haveNet := map[string]bool{}
	for _, n := range pl.o.Networks {
		haveNet[n.Name] = true
	}
	for _, key := range sortedKeys(p.Networks) {
		n := p.Networks[key]
		if bool(n.External) {
			if !haveNet[n.Name] {
				return nil, fmt.Errorf("network %q is declared as external, but could not be found; create it with `docker network create %s`", key, n.Name)
			}
			continue
		}
		if !haveNet[n.Name] {
			ids = append(ids, pl.add(Step{Action: ActCreateNetwork, Target: n.Name, Cause: "network missing",
				Network: &NetworkSpec{Name: n.Name, Key: key, Config: n, Labels: netLabels(p.Name, key)}}))
		}
	}
	haveVol := map[string]bool{}
	for _, v := range pl.o.Volumes {
		haveVol[v.Name] = true
	}
	for _, key := range sortedKeys(p.Volumes) {
		v := p.Volumes[key]
		if pl.onlySlotVolume(key) {
			continue // each slot gets its own copy instead
		}
		if bool(v.External) {
			if !haveVol[v.Name] {
				pl.warn("volume %q is declared as external and was not found; the engine will create it on first use", v.Name)
			}
			continue
		}
		if !haveVol[v.Name] {
			ids = append(ids, pl.add(Step{Action: ActCreateVolume, Target: v.Name, Cause: "volume missing",
				Volume: &VolumeSpec{Name: v.Name, Key: key, Config: v, Labels: volLabels(p.Name, key)}}))
		}
	}
	return ids, nil
}

// onlySlotVolume reports whether every service that mounts volume key
// lists it in x-roster.slot_volumes (and at least one does).
func (pl *planner) onlySlotVolume(key string) bool {
	slot := false
	for _, s := range pl.d.Project.Services {
		mounts := false
		for _, v := range s.Config.Volumes {
			mounts = mounts || (v.Type == "volume" && v.Source == key)
		}
		if !mounts {
			continue
		}
		listed := false
		for _, k := range s.Ext.SlotVolumes {
			listed = listed || k == key
		}
		if !listed {
			return false
		}
		slot = true
	}
	return slot
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
