package operator

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/roster-dev/roster/compose"
	"github.com/roster-dev/roster/reconciler"
)

// AgentName is the agent container's name.
func AgentName(project string) string { return project + "-roster-agent" }

// AgentArgs are the command-line flags the agent is started with: the same
// project as the CLI that started it.
type AgentArgs struct {
	Files    []string
	EnvFiles []string
	Profiles []string
}

// agentImageRepo is the local image the agent runs; its tag is the digest
// of roster's own binary, so a new roster build gets a new agent.
const agentImageRepo = "roster-agent"

// EnsureAgentImage builds the agent image from the running roster binary
// (FROM scratch, no registry) unless the engine has it; returns its tag.
func EnsureAgentImage(ctx context.Context, eng reconciler.Engine, project string) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("agent image: find roster's binary: %w", err)
	}
	if err := checkStatic(exe); err != nil {
		return "", err
	}
	f, err := os.Open(exe)
	if err != nil {
		return "", fmt.Errorf("agent image: %w", err)
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		return "", fmt.Errorf("agent image: %w", err)
	}
	tag := agentImageRepo + ":" + hex.EncodeToString(h.Sum(nil))[:16]
	o, err := eng.Observe(ctx, project, []string{tag})
	if err != nil {
		return "", err
	}
	if _, ok := o.Images[tag]; ok {
		return tag, nil
	}
	dir, err := os.MkdirTemp("", "roster-agent-image-")
	if err != nil {
		return "", fmt.Errorf("agent image: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := copyFile(exe, filepath.Join(dir, "roster"), 0o755); err != nil {
		return "", fmt.Errorf("agent image: %w", err)
	}
	df := "FROM scratch\nCOPY roster /roster\nENTRYPOINT [\"/roster\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		return "", fmt.Errorf("agent image: %w", err)
	}
	err = eng.BuildImage(ctx, reconciler.BuildSpec{Service: "roster-agent", Image: tag, Dir: dir,
		Build: types.BuildConfig{Context: dir, Dockerfile: "Dockerfile"}})
	if err != nil {
		return "", fmt.Errorf("agent image: %w", err)
	}
	return tag, nil
}

// checkStatic refuses a dynamically linked roster: the agent image has
// nothing but the binary.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return nil // not ELF (tests, other OS): let the build tell
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("the agent image is FROM scratch, but %s is dynamically linked: build roster with CGO_ENABLED=0 (`make build` does)", path)
		}
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// AgentSpec synthesizes the agent's container: roster's image running
// `roster agent` for this project, on the host network (it serves DNS on
// the networks' gateways), with the engine's socket and the project
// directory mounted at the same paths (so paths, labels, the state file
// and the locks are shared with the CLI), restarted by the engine.
func AgentSpec(p *compose.Project, image string, args AgentArgs, environ []string) (*reconciler.AgentSpec, error) {
	cmd := []string{"agent", "-p", p.Name, "--project-directory", p.Dir}
	mounts := map[string]bool{p.Dir: true}
	for _, f := range args.Files {
		cmd = append(cmd, "-f", f)
		mounts[filepath.Dir(f)] = true
	}
	for _, f := range args.EnvFiles {
		cmd = append(cmd, "--env-file", f)
		mounts[filepath.Dir(f)] = true
	}
	for _, pr := range args.Profiles {
		cmd = append(cmd, "--profile", pr)
	}
	sock := "/var/run/docker.sock"
	if h := os.Getenv("DOCKER_HOST"); strings.HasPrefix(h, "unix://") {
		sock = strings.TrimPrefix(h, "unix://")
	}
	vols := []types.ServiceVolumeConfig{{Type: types.VolumeTypeBind, Source: sock, Target: "/var/run/docker.sock"}}
	dirs := make([]string, 0, len(mounts))
	for d := range mounts {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	for _, d := range dirs {
		vols = append(vols, types.ServiceVolumeConfig{Type: types.VolumeTypeBind, Source: d, Target: d})
	}
	grace := types.Duration(10 * time.Second)
	sc := types.ServiceConfig{Name: "roster-agent", Restart: types.RestartPolicyUnlessStopped}
	sc.Image = image
	sc.Command = cmd
	sc.Environment = agentEnv(p, environ)
	sc.NetworkMode = "host"
	sc.Volumes = vols
	sc.WorkingDir = p.Dir
	sc.StopGracePeriod = &grace
	hash, err := compose.ServiceHash(sc)
	if err != nil {
		return nil, err
	}
	return &reconciler.AgentSpec{Name: AgentName(p.Name), Image: image,
		Service: compose.Service{Name: sc.Name, Config: sc, Replicas: 1, Hash: hash}}, nil
}

// agentEnv passes the agent the environment variables the compose files
// refer to (interpolation happens again in the agent) and COMPOSE_*: not
// the whole environment of the shell that ran `roster up -d`.
func agentEnv(p *compose.Project, environ []string) types.MappingWithEquals {
	var text strings.Builder
	for _, f := range p.Files {
		if b, err := os.ReadFile(f); err == nil {
			text.Write(b)
		}
	}
	all := text.String()
	env := types.MappingWithEquals{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			continue
		}
		if strings.HasPrefix(k, "COMPOSE_") || strings.Contains(all, "$"+k) || strings.Contains(all, "${"+k) {
			v := v
			env[k] = &v
		}
	}
	return env
}
