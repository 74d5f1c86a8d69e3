package reconciler

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/roster-dev/roster/compose"
	"github.com/roster-dev/roster/naming"
)

func netLabels(project, key string) map[string]string { return naming.NetworkLabels(project, key) }
func volLabels(project, key string) map[string]string { return naming.VolumeLabels(project, key) }

func (pl *planner) replicas(svc compose.Service) int {
	if n, ok := pl.d.Replicas[svc.Name]; ok {
		return n
	}
	return svc.Replicas
}

// canonicalName is the name slot n's container must have.
func canonicalName(project string, svc *compose.Service, n int) string {
	if svc.Config.ContainerName != "" {
		return svc.Config.ContainerName
	}
	return naming.ContainerName(project, svc.Name, n)
}

// service plans one service's slots and returns its start steps.
func (pl *planner) service(svc *compose.Service, after []int) []int {
	project := pl.d.Project.Name
	bySlot := map[int][]Container{}
	for _, c := range pl.o.Containers {
		if c.Service == svc.Name && !c.OneOff {
			bySlot[c.Slot] = append(bySlot[c.Slot], c)
		}
	}
	var existing []int
	for n := range bySlot {
		existing = append(existing, n)
	}
	want := pl.replicas(*svc)
	ch := naming.Slots(existing, want)
	var starts []int

	image := compose.ImageName(project, svc.Config)
	imageID := pl.o.Images[image]
	pl.drifted = nil
	for n := 1; n <= want; n++ {
		starts = append(starts, pl.slot(svc, n, bySlot[n], image, imageID, append(pl.slotVolumes(svc, n), after...))...)
	}
	if len(pl.drifted) > 0 {
		starts = append(starts, pl.rollout(svc, image, pl.drifted, after)...)
	}
	for _, n := range ch.Remove {
		for _, c := range bySlot[n] {
			pl.removeContainer(c, fmt.Sprintf("scale down to %d replicas", want), nil, false)
		}
	}
	if cs := bySlot[0]; len(cs) > 0 {
		for _, c := range cs {
			pl.warn("container %s of service %s has no valid slot label (%s); roster leaves it alone", c.Name, svc.Name, naming.LabelNumber)
		}
	}
	return starts
}

// slot plans slot n of a service given the containers that carry its
// label, and returns the start steps it adds.
func (pl *planner) slot(svc *compose.Service, n int, cs []Container, image, imageID string, after []int) []int {
	name := canonicalName(pl.d.Project.Name, svc, n)
	var primary *Container
	var extras []Container
	for i := range cs {
		if cs[i].Name == name && primary == nil {
			primary = &cs[i]
		} else {
			extras = append(extras, cs[i])
		}
	}
	// Newest first, so that an interrupted recreate resumes from the
	// most recent container of the slot.
	sort.Slice(extras, func(i, j int) bool { return extras[i].Created.After(extras[j].Created) })

	if primary == nil {
		var inherit *Container
		cause := fmt.Sprintf("slot %d missing", n)
		if len(extras) > 0 {
			inherit = &extras[0]
			cause = fmt.Sprintf("slot %d: finishing an interrupted recreate of %s", n, inherit.Name)
		}
		var stopOld []int
		for _, e := range extras {
			if e.Running() {
				stopOld = append(stopOld, pl.stop(e, cause, nil))
			}
		}
		start := pl.createAndStart(svc, n, name, image, inherit, cause, append(append([]int{}, after...), stopOld...))
		for _, e := range extras {
			pl.add(Step{Action: ActRemoveContainer, Target: e.Name, Service: svc.Name, Slot: n, ContainerID: e.ID,
				Cause: fmt.Sprintf("slot %d: replaced by %s", n, name), After: []int{start}})
		}
		return []int{start}
	}

	if !pl.paused(svc) {
		for _, e := range extras {
			pl.removeContainer(e, fmt.Sprintf("slot %d: leftover of an interrupted recreate (%s holds the slot)", n, name), nil, false)
		}
	}
	c := *primary
	if c.State == "dead" || c.State == "removing" {
		rm := pl.add(Step{Action: ActRemoveContainer, Target: c.Name, Service: svc.Name, Slot: n, ContainerID: c.ID,
			Cause: fmt.Sprintf("slot %d: container is %s", n, c.State)})
		return []int{pl.createAndStart(svc, n, name, image, nil, fmt.Sprintf("slot %d: replacing %s container", n, c.State), append(append([]int{}, after...), rm))}
	}
	if svc.Ext.RestartUnhealthy && c.Running() && c.Health == "unhealthy" && !pl.paused(svc) {
		k, _ := strconv.Atoi(c.Labels[naming.LabelUnhealthyRestarts])
		if wait := UnhealthyBackoff(k); pl.d.Now.Sub(c.Created) >= wait {
			pl.drifted = append(pl.drifted, rollSlot{n: n, old: c, name: name, restarts: k + 1,
				cause: fmt.Sprintf("slot %d: unhealthy (x-roster.restart_unhealthy; replacement %d)", n, k+1)})
		} else {
			pl.warn("%s is unhealthy; it is replaced once it is %s old (restart_unhealthy backoff)", c.Name, wait)
			left := wait - pl.d.Now.Sub(c.Created) + 100*time.Millisecond
			if pl.plan.RequeueAfter == 0 || left < pl.plan.RequeueAfter {
				pl.plan.RequeueAfter = left
			}
		}
		return nil
	}
	if drift := pl.drift(svc, c, imageID); drift != "" && !pl.d.NoRecreate {
		if pl.paused(svc) {
			return nil
		}
		pl.drifted = append(pl.drifted, rollSlot{n: n, old: c, name: name, cause: fmt.Sprintf("slot %d: %s", n, drift)})
		return nil
	}
	switch {
	case c.Running(), c.State == "paused":
		return nil
	case c.State == "created" || pl.d.StartStopped:
		return []int{pl.add(Step{Action: ActStartContainer, Target: c.Name, Service: svc.Name, Slot: n, ContainerID: c.ID,
			Cause: fmt.Sprintf("slot %d is %s", n, c.State), After: after})}
	}
	return nil
}

// drift says why container c no longer matches its service, or "".
func (pl *planner) drift(svc *compose.Service, c Container, imageID string) string {
	switch {
	case pl.d.ForceRecreate:
		return "--force-recreate"
	case c.ConfigHash != svc.Hash:
		return "config changed"
	case imageID != "" && c.ImageID != "" && c.ImageID != imageID:
		return "image changed"
	}
	hostname, err := naming.Hostname(svc.HostnameTemplate, pl.d.Project.Name, svc.Name, c.Slot)
	if err == nil && c.Hostname != "" && c.Hostname != hostname {
		return "hostname template changed"
	}
	return ""
}

// slotVolumes plans the missing per-slot volumes of slot n
// (x-roster.slot_volumes) and returns their create steps.
func (pl *planner) slotVolumes(svc *compose.Service, n int) []int {
	var ids []int
	have := map[string]bool{}
	for _, v := range pl.o.Volumes {
		have[v.Name] = true
	}
	for _, key := range svc.Ext.SlotVolumes {
		vc := pl.d.Project.Compose.Volumes[key]
		name := compose.SlotVolumeName(vc.Name, n)
		if have[name] {
			continue
		}
		labels := naming.VolumeLabels(pl.d.Project.Name, key)
		labels[naming.LabelSlot] = fmt.Sprint(n)
		labels[naming.LabelService] = svc.Name
		vc.Name = name
		ids = append(ids, pl.add(Step{Action: ActCreateVolume, Target: name, Service: svc.Name, Slot: n,
			Cause: fmt.Sprintf("slot %d's own volume %q missing", n, key), Volume: &VolumeSpec{Name: name, Key: key, Config: vc, Labels: labels}}))
	}
	return ids
}

// slotVolumeNames maps the service's slot_volumes keys to slot n's volumes.
func slotVolumeNames(p *compose.Project, svc *compose.Service, n int) map[string]string {
	if len(svc.Ext.SlotVolumes) == 0 {
		return nil
	}
	m := map[string]string{}
	for _, key := range svc.Ext.SlotVolumes {
		m[key] = compose.SlotVolumeName(p.Compose.Volumes[key].Name, n)
	}
	return m
}

// resolvConf is the resolv.conf to mount in the service's containers: the
// one of its primary network, unless the service manages DNS itself
// (network_mode, dns, dns_search, dns_opt, or its own /etc/resolv.conf).
func (pl *planner) resolvConf(svc *compose.Service) string {
	c := svc.Config
	if len(pl.d.ResolvConf) == 0 || c.NetworkMode != "" || len(c.DNS) > 0 || len(c.DNSSearch) > 0 || len(c.DNSOpts) > 0 {
		return ""
	}
	for _, v := range c.Volumes {
		if v.Target == "/etc/resolv.conf" {
			return ""
		}
	}
	nets := c.NetworksByPriority()
	if len(nets) == 0 {
		return ""
	}
	n, ok := pl.d.Project.Compose.Networks[nets[0]]
	if !ok {
		return ""
	}
	return pl.d.ResolvConf[n.Name]
}

// agent plans the background operator container.
func (pl *planner) agent() {
	a := pl.d.Agent
	if a == nil {
		return
	}
	var cur []Container
	for _, c := range pl.o.Containers {
		if c.Labels[naming.LabelRole] == "agent" {
			cur = append(cur, c)
		}
	}
	create := func(cause string, after []int) {
		p := pl.d.Project
		labels := naming.ContainerLabels(p.Name, a.Service.Name, 1, "", a.Service.Hash, p.Dir, p.Files)
		labels[naming.LabelOneOff] = "True" // not a service replica: compose tools skip it
		labels[naming.LabelRole] = "agent"
		spec := &ContainerSpec{Project: p.Compose, Service: a.Service.Config, Name: a.Name, Slot: 1, Image: a.Image, Labels: labels}
		cr := pl.add(Step{Action: ActCreateContainer, Target: a.Name, Service: a.Service.Name, Slot: 1, Cause: cause, After: after, Container: spec})
		pl.add(Step{Action: ActStartContainer, Target: a.Name, Service: a.Service.Name, Slot: 1, Ref: cr, After: []int{cr}, Cause: "agent created"})
	}
	switch {
	case len(cur) == 0:
		create("agent missing", nil)
	case len(cur) > 1 || cur[0].Name != a.Name || cur[0].ConfigHash != a.Service.Hash:
		var removed []int
		for _, c := range cur {
			removed = append(removed, pl.removeContainer(c, "agent config changed (service containers are not touched)", nil, false))
		}
		create("agent config changed", removed)
	case !cur[0].Running() && cur[0].State != "paused":
		pl.add(Step{Action: ActStartContainer, Target: a.Name, ContainerID: cur[0].ID, Cause: "agent is " + cur[0].State})
	}
}

func (pl *planner) stop(c Container, cause string, after []int) int {
	return pl.add(Step{Action: ActStopContainer, Target: c.Name, Service: c.Service, Slot: c.Slot, ContainerID: c.ID,
		Cause: cause, After: after, Timeout: pl.stopTimeout(c.Service)})
}

func (pl *planner) stopTimeout(service string) *time.Duration {
	if s, ok := pl.d.Project.Service(service); ok && s.Config.StopGracePeriod != nil {
		d := time.Duration(*s.Config.StopGracePeriod)
		return &d
	}
	return nil
}

// removeContainer stops (when running) then removes c.
func (pl *planner) removeContainer(c Container, cause string, after []int, volumes bool) int {
	if c.Running() {
		after = []int{pl.stop(c, cause, after)}
	}
	return pl.add(Step{Action: ActRemoveContainer, Target: c.Name, Service: c.Service, Slot: c.Slot, ContainerID: c.ID,
		Cause: cause, After: after, RemoveVolumes: volumes})
}

// createAndStart adds the create and start steps of slot n; returns the
// start step.
func (pl *planner) createAndStart(svc *compose.Service, n int, name, image string, inherit *Container, cause string, after []int) int {
	p := pl.d.Project
	hostname, _ := naming.Hostname(svc.HostnameTemplate, p.Name, svc.Name, n) // validated at load
	labels := naming.ContainerLabels(p.Name, svc.Name, n, hostname, svc.Hash, p.Dir, p.Files)
	spec := &ContainerSpec{Project: p.Compose, Service: svc.Config, Name: name, Hostname: hostname, Slot: n,
		Image: image, Labels: labels, DNS: pl.d.DNS, ResolvConf: pl.resolvConf(svc), SlotVolumes: slotVolumeNames(p, svc, n)}
	if inherit != nil {
		spec.Inherit = inherit.ID
	}
	cr := pl.add(Step{Action: ActCreateContainer, Target: name, Service: svc.Name, Slot: n, Cause: cause, After: after, Container: spec})
	return pl.add(Step{Action: ActStartContainer, Target: name, Service: svc.Name, Slot: n, Ref: cr, After: []int{cr},
		Cause: fmt.Sprintf("slot %d created", n)})
}

// orphans warns about (or removes) containers of services that are no
// longer in the compose file.
func (pl *planner) orphans() {
	p := pl.d.Project
	known := map[string]bool{}
	for _, s := range p.Services {
		known[s.Name] = true
	}
	for name := range p.Compose.DisabledServices {
		known[name] = true
	}
	var names []string
	for _, c := range pl.o.Containers {
		if c.OneOff || known[c.Service] || c.Labels[naming.LabelRole] == "agent" {
			continue
		}
		if pl.d.RemoveOrphans {
			pl.removeContainer(c, fmt.Sprintf("orphan: service %q is not in the compose file (--remove-orphans)", c.Service), nil, false)
		} else {
			names = append(names, c.Name)
		}
	}
	if len(names) > 0 {
		sort.Strings(names)
		pl.warn("found orphan containers %v for project %s: their services are not in the compose file; run with --remove-orphans to remove them", names, p.Name)
	}
}

// dependencyOrder sorts the selected services so that every service comes
// after what it depends on; a cycle is an error naming the services.
func dependencyOrder(p *compose.Project, sel map[string]bool) ([]string, error) {
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, path []string) error
	visit = func(name string, path []string) error {
		switch state[name] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("dependency cycle: %v", append(path, name))
		}
		state[name] = 1
		svc, ok := p.Service(name)
		if ok {
			deps := make([]string, 0, len(svc.Config.DependsOn))
			for d := range svc.Config.DependsOn {
				deps = append(deps, d)
			}
			sort.Strings(deps)
			for _, d := range deps {
				if !sel[d] {
					continue
				}
				if err := visit(d, append(path, name)); err != nil {
					return err
				}
			}
		}
		state[name] = 2
		order = append(order, name)
		return nil
	}
	for _, s := range p.Services {
		if sel[s.Name] {
			if err := visit(s.Name, nil); err != nil {
				return nil, err
			}
		}
	}
	return order, nil
}

func imageRef(d Desired, service string) string {
	s, _ := d.Project.Service(service)
	return compose.ImageName(d.Project.Name, s.Config)
}
