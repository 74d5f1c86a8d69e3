package operator

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/roster-dev/roster/compose"
	"github.com/roster-dev/roster/reconciler"
	"github.com/roster-dev/roster/render"
)

// LoadTemplates parses the project's x-roster.templates into a renderer;
// nil when the project has none.
func LoadTemplates(p *compose.Project, runner render.Runner, log *slog.Logger) (*render.Renderer, error) {
	if len(p.Roster.Templates) == 0 {
		return nil, nil
	}
	ts, err := render.ParseTemplates(p.Roster.Templates, p.Dir)
	if err != nil {
		return nil, err
	}
	render.MarkFileMounts(ts, bindSources(p))
	return render.New(ts, runner, log), nil
}

// bindSources are the host paths the project's services bind-mount.
func bindSources(p *compose.Project) []string {
	var out []string
	for _, s := range p.Services {
		for _, v := range s.Config.Volumes {
			if v.Type == types.VolumeTypeBind {
				out = append(out, v.Source)
			}
		}
	}
	return out
}

// Templates feeds the renderer from the reconciler's observations (only
// complete ones, never at start-up before the first) and persists each
// render's report for `roster ps`.
type Templates struct {
	r       *render.Renderer
	updates chan render.Data
	mu      sync.Mutex
	project *compose.Project
	log     *slog.Logger
}

// NewTemplates wraps a renderer (nil: a no-op).
func NewTemplates(p *compose.Project, r *render.Renderer, log *slog.Logger) *Templates {
	t := &Templates{r: r, updates: make(chan render.Data, 1), project: p, log: log}
	if r != nil {
		r.OnRendered(func(_ render.Data, rep render.Report) { t.persist(rep) })
	}
	return t
}

// SetProject sets the model the next observation is read against.
func (t *Templates) SetProject(p *compose.Project) {
	t.mu.Lock()
	t.project = p
	t.mu.Unlock()
}

// Run renders until ctx ends.
func (t *Templates) Run(ctx context.Context) {
	if t.r != nil {
		_ = t.r.Run(ctx, t.updates)
	}
}

// Observed hands the latest observation to the renderer, replacing one it
// has not taken yet.
func (t *Templates) Observed(o *reconciler.Observed) {
	if t.r == nil {
		return
	}
	t.mu.Lock()
	d := reconciler.TemplateData(t.project, o, DesiredReplicas(t.project))
	t.mu.Unlock()
	for {
		select {
		case t.updates <- d:
			return
		default:
			select {
			case <-t.updates:
			default:
			}
		}
	}
}

// TemplateStatus is what the operator last reported, read by `roster ps`.
type TemplateStatus struct {
	Time   time.Time       `json:"time"`
	Report render.Report   `json:"report"`
	Raw    json.RawMessage `json:"-"`
}

// StatusPath is where the operator persists the templates' last report.
func StatusPath(p *compose.Project) string {
	return filepath.Join(p.Dir, ".roster", p.Name+".templates.json")
}

func (t *Templates) persist(rep render.Report) {
	t.mu.Lock()
	p := t.project
	t.mu.Unlock()
	b, err := json.MarshalIndent(TemplateStatus{Time: time.Now().UTC(), Report: rep}, "", "  ")
	if err == nil {
		err = writeIfChanged(StatusPath(p), append(b, '\n'))
	}
	if err != nil {
		t.log.Warn("templates: cannot persist the report", "err", fmt.Errorf("write %s: %w", StatusPath(p), err))
	}
}

// DesiredReplicas is the project's desired replicas per service: the
// compose file's, with the `roster scale` overrides that still apply.
func DesiredReplicas(p *compose.Project) map[string]int {
	st, _ := compose.ReadState(p)
	r, _ := p.Replicas(st)
	return r
}
