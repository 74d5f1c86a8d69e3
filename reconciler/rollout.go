package reconciler

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/roster-dev/roster/compose"
	"github.com/roster-dev/roster/naming"
)

// rollSlot is a slot whose container must be replaced.
type rollSlot struct {
	n        int
	old      Container
	name     string // canonical name
	cause    string
	restarts int // restart_unhealthy: the replacement's count
}

// UnhealthyBackoff is how old an unhealthy container that already
// replaced k unhealthy ones must be before it is replaced in turn:
// 10s, 20s, 40s... up to 5 minutes.
func UnhealthyBackoff(k int) time.Duration {
	d := 10 * time.Second
	for i := 0; i < k && d < 5*time.Minute; i++ {
		d *= 2
	}
	return min(d, 5*time.Minute)
}

// labelRestarts sets the restart_unhealthy count on a create step.
func (pl *planner) labelRestarts(create int, k int) {
	if k > 0 {
		pl.plan.Steps[create-1].Container.Labels[naming.LabelUnhealthyRestarts] = fmt.Sprint(k)
	}
}

// updateConfig is a service's deploy.update_config with the defaults.
type updateConfig struct {
	parallelism   int
	delay         time.Duration
	order         string // stop-first | start-first
	failureAction string // pause | rollback | continue
	monitor       time.Duration
}

func updateConfigOf(svc *compose.Service) updateConfig {
	u := updateConfig{parallelism: 1, order: "stop-first", failureAction: "pause"}
	if svc.Config.Deploy == nil || svc.Config.Deploy.UpdateConfig == nil {
		return u
	}
	c := svc.Config.Deploy.UpdateConfig
	if c.Parallelism != nil {
		u.parallelism = int(*c.Parallelism) // 0: all at once
	}
	u.delay, u.monitor = time.Duration(c.Delay), time.Duration(c.Monitor)
	if c.Order != "" {
		u.order = c.Order
	}
	if c.FailureAction != "" {
		u.failureAction = c.FailureAction
	}
	return u
}

func (pl *planner) paused(svc *compose.Service) bool {
	h, ok := pl.d.Paused[svc.Name]
	return ok && h == svc.Hash
}

func (pl *planner) waitTimeout() *time.Duration {
	t := pl.d.WaitTimeout
	if t <= 0 {
		t = 5 * time.Minute
	}
	return &t
}

func asideName(c Container, canonical string) string {
	id := c.ID
	if len(id) > 12 {
		id = id[:12]
	}
	return id + "_" + canonical
}

// rollout plans the replacement of the drifted slots of a service, batch
// by batch (update_config.parallelism slots at a time, update_config.delay
// between batches). Each slot is drained from DNS and templates (the
// consumers reloaded) before its container stops, and put back once its
// replacement is ready (and stayed ready for update_config.monitor). Old
// containers are kept aside, stopped, until every batch succeeded, so that
// a failed rollout can be rolled back (MakeRollbackPlan). Returns the
// replacements' start steps.
func (pl *planner) rollout(svc *compose.Service, image string, slots []rollSlot, after []int) []int {
	u := updateConfigOf(svc)
	size := u.parallelism
	if size <= 0 || size > len(slots) {
		size = len(slots)
	}
	var starts, prev, all []int
	for b := 0; b*size < len(slots); b++ {
		batch := slots[b*size : min((b+1)*size, len(slots))]
		var end []int
		for _, rs := range batch {
			// An unhealthy replacement is not a rollout: its failure
			// neither pauses nor rolls back anything.
			s := Step{Service: svc.Name, Slot: rs.n, Rollout: rs.restarts == 0, After: append([]int{}, after...)}
			if u.failureAction == "continue" {
				s.AfterDone = prev
			} else {
				s.After = append(s.After, prev...)
			}
			if b > 0 {
				s.Delay = u.delay
			}
			var start, undrain int
			if u.order == "start-first" {
				start, undrain = pl.rollStartFirst(svc, image, rs, s, u)
			} else {
				start, undrain = pl.rollStopFirst(svc, image, rs, s, u)
			}
			starts = append(starts, start)
			end = append(end, undrain)
		}
		prev = end
		all = append(all, end...)
	}
	for _, rs := range slots {
		pl.add(Step{Action: ActRemoveContainer, Target: asideName(rs.old, rs.name), Service: svc.Name, Slot: rs.n, ContainerID: rs.old.ID,
			Rollout: rs.restarts == 0, After: all, Cause: fmt.Sprintf("slot %d: rollout of %s done, the old container is no longer needed", rs.n, svc.Name)})
	}
	if pl.rolled == nil {
		pl.rolled = map[string][]int{}
	}
	pl.rolled[svc.Name] = all
	return starts
}

// step adds a rollout step built from the template t.
func (pl *planner) step(t Step, a Action, target string, after []int, cause string) Step {
	t.Action, t.Target, t.Cause = a, target, cause
	if after != nil {
		t.After, t.AfterDone, t.Delay = after, nil, 0
	}
	return t
}

func (pl *planner) rollStopFirst(svc *compose.Service, image string, rs rollSlot, t Step, u updateConfig) (start, undrain int) {
	old := rs.old
	drain := pl.add(pl.step(t, ActDrain, rs.name, nil, rs.cause+": take the slot out of DNS and templates first"))
	ren := pl.add(pl.step(t, ActRenameContainer, old.Name, []int{drain}, rs.cause+" (keep the old container aside until the rollout is done)"))
	pl.plan.Steps[ren-1].ContainerID, pl.plan.Steps[ren-1].NewName = old.ID, asideName(old, rs.name)
	prev := ren
	if old.Running() {
		st := pl.step(t, ActStopContainer, asideName(old, rs.name), []int{ren}, rs.cause)
		st.ContainerID, st.Timeout = old.ID, pl.stopTimeout(svc.Name)
		prev = pl.add(st)
	}
	start = pl.createAndStart(svc, rs.n, rs.name, image, &old, rs.cause, []int{prev})
	pl.plan.Steps[start-1].Rollout, pl.plan.Steps[start-2].Rollout = t.Rollout, t.Rollout
	pl.labelRestarts(start-1, rs.restarts)
	wait := pl.step(t, ActWaitReady, rs.name, []int{start}, fmt.Sprintf("slot %d: the new container must be ready before the next slot", rs.n))
	wait.Ref, wait.Timeout, wait.Monitor = start-1, pl.waitTimeout(), u.monitor
	w := pl.add(wait)
	undrain = pl.add(pl.step(t, ActUndrain, rs.name, []int{w}, fmt.Sprintf("slot %d is ready: put it back into DNS and templates", rs.n)))
	return start, undrain
}

func (pl *planner) rollStartFirst(svc *compose.Service, image string, rs rollSlot, t Step, u updateConfig) (start, undrain int) {
	old := rs.old
	next := rs.name + "-next"
	start = pl.createAndStart(svc, rs.n, next, image, &old, rs.cause+" (start-first: the new container starts beside the old one)", t.After)
	for _, i := range []int{start - 1, start - 2} {
		pl.plan.Steps[i].Rollout, pl.plan.Steps[i].AfterDone, pl.plan.Steps[i].Delay = t.Rollout, t.AfterDone, t.Delay
	}
	pl.labelRestarts(start-1, rs.restarts)
	wait := pl.step(t, ActWaitReady, next, []int{start}, fmt.Sprintf("slot %d: the new container must be ready before it takes over", rs.n))
	wait.Ref, wait.Timeout, wait.Monitor = start-1, pl.waitTimeout(), u.monitor
	w := pl.add(wait)
	drain := pl.add(pl.step(t, ActDrain, rs.name, []int{w}, rs.cause+": take the old container out of DNS and templates"))
	prev := drain
	if old.Running() {
		st := pl.step(t, ActStopContainer, old.Name, []int{drain}, rs.cause)
		st.ContainerID, st.Timeout = old.ID, pl.stopTimeout(svc.Name)
		prev = pl.add(st)
	}
	ren := pl.step(t, ActRenameContainer, old.Name, []int{prev}, rs.cause+" (keep the old container aside until the rollout is done)")
	ren.ContainerID, ren.NewName = old.ID, asideName(old, rs.name)
	r1 := pl.add(ren)
	take := pl.step(t, ActRenameContainer, next, []int{r1}, fmt.Sprintf("slot %d: the new container takes the slot's name", rs.n))
	take.Ref, take.NewName = start-1, rs.name
	r2 := pl.add(take)
	undrain = pl.add(pl.step(t, ActUndrain, rs.name, []int{r2}, fmt.Sprintf("slot %d: put it back into DNS and templates", rs.n)))
	return start, undrain
}

// MakeRollbackPlan plans the rollback of a failed rollout of service: in
// every slot whose canonical container runs the new config while the old
// container is still kept aside, the new one is removed and the old one
// takes its name back and starts (drained from DNS and templates meanwhile).
// A start-first replacement ("-next") that did not take over is removed.
func MakeRollbackPlan(d Desired, o *Observed, service string) (*Plan, error) {
	p := d.Project
	svc, ok := p.Service(service)
	if !ok {
		return nil, fmt.Errorf("no such service: %q", service)
	}
	pl := &planner{d: d, o: o, plan: &Plan{Project: p.Name}}
	bySlot := map[int][]Container{}
	for _, c := range o.Containers {
		if c.Service == svc.Name && !c.OneOff && c.Slot > 0 {
			bySlot[c.Slot] = append(bySlot[c.Slot], c)
		}
	}
	for _, n := range slices.Sorted(maps.Keys(bySlot)) {
		name := canonicalName(p.Name, svc, n)
		var cur, old *Container
		var next []Container
		for i := range bySlot[n] {
			c := &bySlot[n][i]
			switch {
			case c.Name == name:
				cur = c
			case c.Name == name+"-next":
				next = append(next, *c)
			case c.ConfigHash != svc.Hash && (old == nil || c.Created.After(old.Created)):
				old = c
			}
		}
		for _, c := range next {
			pl.removeContainer(c, fmt.Sprintf("slot %d: rollback: the start-first replacement is not kept", n), nil, false)
		}
		if old == nil || (cur != nil && cur.ConfigHash != svc.Hash) {
			continue // untouched slot
		}
		cause := fmt.Sprintf("slot %d: rollback of %s to its previous config", n, svc.Name)
		prev := pl.add(Step{Action: ActDrain, Target: name, Service: svc.Name, Slot: n, Cause: cause})
		if cur != nil {
			prev = pl.removeContainer(*cur, cause+": remove the failed replacement", []int{prev}, false)
		}
		ren := pl.add(Step{Action: ActRenameContainer, Target: old.Name, Service: svc.Name, Slot: n, ContainerID: old.ID, NewName: name,
			After: []int{prev}, Cause: cause + ": the old container takes its name back"})
		start := pl.add(Step{Action: ActStartContainer, Target: name, Service: svc.Name, Slot: n, ContainerID: old.ID, After: []int{ren}, Cause: cause})
		wait := pl.add(Step{Action: ActWaitReady, Target: name, Service: svc.Name, Slot: n, ContainerID: old.ID, After: []int{start},
			Timeout: pl.waitTimeout(), Cause: cause})
		pl.add(Step{Action: ActUndrain, Target: name, Service: svc.Name, Slot: n, After: []int{wait}, Cause: cause})
	}
	return pl.plan, nil
}
