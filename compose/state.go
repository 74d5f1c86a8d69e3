package compose

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// State is what `roster scale` persists beside the compose file, in
// .roster/<project>.json under the project directory. It is the only
// state roster keeps outside the engine's labels.
//
// Each override remembers the replica count the compose file had when it
// was set: when the file's own count changes later, the file wins again
// (the user edited their intent), as `kubectl apply` does with a changed
// manifest.
type State struct {
	Scale map[string]ScaleOverride `json:"scale,omitempty"`
	// Paused maps a service to the config hash whose rollout failed
	// (failure_action pause or rollback): the operator does not retry it;
	// a new config or an explicit `roster up` does.
	Paused map[string]string `json:"paused,omitempty"`
}

// UpdateState reads the state, applies fn and writes it back.
func UpdateState(p *Project, fn func(*State)) error {
	st, err := ReadState(p)
	if err != nil {
		return err
	}
	fn(&st)
	return WriteState(p, st)
}

// ScaleOverride is one `roster scale` setting.
type ScaleOverride struct {
	Replicas     int `json:"replicas"`
	FileReplicas int `json:"file_replicas"` // the compose file's count when set
}

// StatePath is where the project's state file lives.
func StatePath(p *Project) string {
	return filepath.Join(p.Dir, ".roster", p.Name+".json")
}

// ReadState reads the project's state; a missing file is an empty state.
func ReadState(p *Project) (State, error) {
	var st State
	path := StatePath(p)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read state %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("read state %s: %w (delete the file to reset `roster scale` overrides)", path, err)
	}
	return st, nil
}

// WriteState writes the state atomically (temp file + rename).
func WriteState(p *Project, st State) error {
	path := StatePath(p)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write state %s: %w", path, err)
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".state-*")
	if err != nil {
		return fmt.Errorf("write state %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write state %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write state %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write state %s: %w", path, err)
	}
	return nil
}

// RemoveState deletes the state file (after `roster down`).
func RemoveState(p *Project) error {
	err := os.Remove(StatePath(p))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// Replicas returns the effective replica count of every service: the
// compose file's, unless a `roster scale` override still applies. notes
// explains overrides that no longer apply.
func (p *Project) Replicas(st State) (replicas map[string]int, notes []string) {
	replicas = map[string]int{}
	for _, s := range p.Services {
		replicas[s.Name] = s.Replicas
		o, ok := st.Scale[s.Name]
		if !ok {
			continue
		}
		if o.FileReplicas != s.Replicas {
			notes = append(notes, fmt.Sprintf("service %q: the compose file now asks for %d replicas (was %d when `roster scale` set %d); using the file", s.Name, s.Replicas, o.FileReplicas, o.Replicas))
			continue
		}
		replicas[s.Name] = o.Replicas
	}
	sort.Strings(notes)
	return replicas, notes
}

// SetScale records `roster scale` overrides in st.
func (p *Project) SetScale(st *State, want map[string]int) error {
	if st.Scale == nil {
		st.Scale = map[string]ScaleOverride{}
	}
	for name, n := range want {
		s, ok := p.Service(name)
		if !ok {
			return fmt.Errorf("no such service: %q (services: %v)", name, p.ServiceNames())
		}
		if n < 0 {
			return fmt.Errorf("service %q: replicas must not be negative (got %d)", name, n)
		}
		if s.Config.ContainerName != "" && n > 1 {
			return fmt.Errorf("service %q: container_name %q can only be used with one replica", name, s.Config.ContainerName)
		}
		st.Scale[name] = ScaleOverride{Replicas: n, FileReplicas: s.Replicas}
	}
	return nil
}
