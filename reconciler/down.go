package reconciler

import (
	"sort"

	"github.com/roster-dev/roster/compose"
	"github.com/roster-dev/roster/naming"
)

// DownOptions are `roster down`'s flags.
type DownOptions struct {
	Volumes       bool // -v: named volumes and anonymous volumes too
	RemoveOrphans bool
}

// MakeDownPlan plans `roster down`: stop and remove the project's
// containers (and its agent), then its networks, then with -v its
// volumes. Orphans are left (with a warning) unless RemoveOrphans.
func MakeDownPlan(p *compose.Project, o *Observed, opt DownOptions) *Plan {
	pl := &planner{d: Desired{Project: p}, o: o, plan: &Plan{Project: p.Name}}
	known := map[string]bool{}
	for _, s := range p.Services {
		known[s.Name] = true
	}
	for name := range p.Compose.DisabledServices {
		known[name] = true
	}
	cs := append([]Container(nil), o.Containers...)
	sort.Slice(cs, func(i, j int) bool { return cs[i].Name < cs[j].Name })
	var removed []int
	var orphans []string
	// The agent goes first, so that it cannot repair what down removes.
	var first []int
	for _, c := range cs {
		if c.Labels[naming.LabelRole] == "agent" {
			first = append(first, pl.removeContainer(c, "down: the project's agent", nil, false))
		}
	}
	removed = append(removed, first...)
	for _, c := range cs {
		agent := c.Labels[naming.LabelRole] == "agent"
		if agent {
			continue
		}
		if !known[c.Service] && !agent && !opt.RemoveOrphans && !c.OneOff {
			orphans = append(orphans, c.Name)
			continue
		}
		cause := "down"
		if !known[c.Service] && !agent {
			cause = "down --remove-orphans"
		}
		removed = append(removed, pl.removeContainer(c, cause, first, opt.Volumes))
	}
	if len(orphans) > 0 {
		pl.warn("orphan containers %v were left; run with --remove-orphans to remove them", orphans)
	}
	declaredNet := map[string]bool{}
	for _, n := range p.Compose.Networks {
		if !bool(n.External) {
			declaredNet[n.Name] = true
		}
	}
	for _, n := range o.Networks {
		if n.Labels[naming.LabelProject] != p.Name {
			continue
		}
		if !declaredNet[n.Name] && !opt.RemoveOrphans && len(orphans) > 0 {
			continue // may still be used by the orphans
		}
		pl.add(Step{Action: ActRemoveNetwork, Target: n.Name, Cause: "down", After: removed})
	}
	if opt.Volumes {
		for _, v := range o.Volumes {
			if v.Labels[naming.LabelProject] != p.Name {
				continue
			}
			pl.add(Step{Action: ActRemoveVolume, Target: v.Name, Cause: "down -v", After: removed})
		}
	}
	return pl.plan
}
