// Package compose loads an ordinary compose file with compose-go v2 and
// normalises it into roster's desired model: the services with their
// desired replica counts, hostname templates and config hashes, plus the
// x-roster extensions. It never talks to an engine.
package compose

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/roster-dev/roster/naming"
)

// Options are the global flags shared with docker compose.
type Options struct {
	Files            []string // -f, repeatable; COMPOSE_FILE when empty
	ProjectName      string   // -p; COMPOSE_PROJECT_NAME, then the `name:` key, then the directory
	ProjectDirectory string   // --project-directory
	EnvFiles         []string // --env-file; .env in the project directory when empty
	Profiles         []string // --profile; COMPOSE_PROFILES when empty
	WorkDir          string   // where relative -f paths start; the process's cwd when empty
}

// Project is the desired model of one compose project.
type Project struct {
	Name     string
	Dir      string // project directory (absolute)
	Files    []string
	Compose  *types.Project // normalised compose-go project (only enabled services)
	Services []Service      // sorted by name
	Roster   ProjectExt     // top-level x-roster
	Warnings []string       // unsupported fields etc.: each names service and field
}

// Service is one service of the desired model.
type Service struct {
	Name             string
	Config           types.ServiceConfig
	Replicas         int    // from deploy.replicas / scale (before `roster scale` overrides)
	HostnameTemplate string // x-roster.hostname or naming.DefaultHostnameTemplate
	Hash             string // config hash: changes exactly when the container must be recreated
	Ext              ServiceExt
}

// Service returns the named service.
func (p *Project) Service(name string) (*Service, bool) {
	for i := range p.Services {
		if p.Services[i].Name == name {
			return &p.Services[i], true
		}
	}
	return nil, false
}

// ServiceNames lists the services, sorted.
func (p *Project) ServiceNames() []string {
	out := make([]string, len(p.Services))
	for i, s := range p.Services {
		out[i] = s.Name
	}
	return out
}

// Load reads, interpolates, merges and validates the compose files. An
// invalid file gives compose-go's error, which names file and field.
func Load(ctx context.Context, o Options) (*Project, error) {
	wd := o.WorkDir
	if wd == "" {
		var err error
		if wd, err = os.Getwd(); err != nil {
			return nil, err
		}
	}
	files := make([]string, 0, len(o.Files))
	for _, f := range o.Files {
		if f != "-" && !filepath.IsAbs(f) {
			f = filepath.Join(wd, f)
		}
		files = append(files, f)
	}
	projDir := o.ProjectDirectory
	if projDir != "" && !filepath.IsAbs(projDir) {
		projDir = filepath.Join(wd, projDir)
	}
	fns := []cli.ProjectOptionsFn{
		cli.WithWorkingDirectory(projDir),
		cli.WithOsEnv,
		cli.WithEnvFiles(o.EnvFiles...),
		cli.WithDotEnv,
		cli.WithConfigFileEnv,
		cli.WithName(o.ProjectName),
	}
	if len(files) == 0 {
		// compose-go looks for compose.yaml & co. from the working
		// directory (and its parents).
		if projDir == "" {
			fns = append([]cli.ProjectOptionsFn{cli.WithWorkingDirectory(wd)}, fns...)
		}
		fns = append(fns, withDefaultConfigPathFrom(wd))
	}
	opts, err := cli.NewProjectOptions(files, fns...)
	if err != nil {
		return nil, err
	}
	profiles := o.Profiles
	if len(profiles) == 0 {
		if env := opts.Environment["COMPOSE_PROFILES"]; env != "" {
			profiles = strings.Split(env, ",")
		}
	}
	if err := cli.WithProfiles(profiles)(opts); err != nil {
		return nil, err
	}
	cp, err := opts.LoadProject(ctx)
	if err != nil {
		return nil, loadError(opts.ConfigPaths, err)
	}
	return fromCompose(cp)
}

var containerNameErr = regexp.MustCompile(`can't set container_name and (\S+) as container name must be unique`)

// loadError names the compose files in a loader error (compose-go names
// the field, not always the file) and rewrites compose-go's container_name
// message into one that names the service.
func loadError(files []string, err error) error {
	if m := containerNameErr.FindStringSubmatch(err.Error()); m != nil {
		err = fmt.Errorf("service %q: container_name can only be used with one replica (remove container_name or set replicas to 1)", m[1])
	}
	msg := err.Error()
	for _, f := range files {
		if strings.Contains(msg, f) || strings.Contains(msg, filepath.Base(f)) {
			return err
		}
	}
	return fmt.Errorf("compose file %s: %w", strings.Join(files, ", "), err)
}

// withDefaultConfigPathFrom finds compose.yaml, compose.yml,
// docker-compose.yaml or docker-compose.yml in dir or its parents, as
// compose does, when no -f or COMPOSE_FILE was given.
func withDefaultConfigPathFrom(dir string) cli.ProjectOptionsFn {
	return func(o *cli.ProjectOptions) error {
		if len(o.ConfigPaths) > 0 {
			return nil
		}
		for d := dir; ; d = filepath.Dir(d) {
			for _, n := range []string{"compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"} {
				p := filepath.Join(d, n)
				if st, err := os.Stat(p); err == nil && !st.IsDir() {
					o.ConfigPaths = []string{p}
					for _, ov := range []string{"compose.override.yaml", "compose.override.yml", "docker-compose.override.yaml", "docker-compose.override.yml"} {
						if st, err := os.Stat(filepath.Join(d, ov)); err == nil && !st.IsDir() {
							o.ConfigPaths = append(o.ConfigPaths, filepath.Join(d, ov))
							break
						}
					}
					if o.WorkingDir == "" || o.WorkingDir == dir {
						o.WorkingDir = d
					}
					return nil
				}
			}
			if filepath.Dir(d) == d {
				return fmt.Errorf("no compose file found in %s or its parents (looked for compose.yaml, compose.yml, docker-compose.yaml, docker-compose.yml); use -f", dir)
			}
		}
	}
}

// fromCompose turns a loaded compose-go project into the desired model.
func fromCompose(cp *types.Project) (*Project, error) {
	// Merge env_file and label_file into environment and labels, as
	// compose does before it creates containers.
	cp, err := cp.WithServicesEnvironmentResolved(true)
	if err != nil {
		return nil, err
	}
	if cp, err = cp.WithServicesLabelsResolved(true); err != nil {
		return nil, err
	}
	p := &Project{Name: cp.Name, Dir: cp.WorkingDir, Files: cp.ComposeFiles, Compose: cp}
	if p.Roster, err = parseProjectExt(cp); err != nil {
		return nil, err
	}
	if err := cp.CheckContainerNameUnicity(); err != nil {
		return nil, err
	}
	names := cp.ServiceNames()
	sort.Strings(names)
	for _, name := range names {
		sc := cp.Services[name]
		s := Service{Name: name, Config: sc, Replicas: sc.GetScale(), HostnameTemplate: naming.DefaultHostnameTemplate}
		if s.Replicas < 0 {
			return nil, fmt.Errorf("service %q: replicas must not be negative (got %d)", name, s.Replicas)
		}
		if s.Ext, err = parseServiceExt(cp, name, sc); err != nil {
			return nil, err
		}
		if s.Ext.Hostname != "" {
			s.HostnameTemplate = s.Ext.Hostname
		}
		if _, err := naming.Hostname(s.HostnameTemplate, p.Name, name, 1); err != nil {
			return nil, fmt.Errorf("service %q: x-roster.hostname: %w", name, err)
		}
		if sc.ContainerName != "" && s.Replicas > 1 {
			return nil, fmt.Errorf("service %q: container_name %q can only be used with one replica (replicas is %d)", name, sc.ContainerName, s.Replicas)
		}
		if s.Hash, err = ServiceHash(sc); err != nil {
			return nil, fmt.Errorf("service %q: config hash: %w", name, err)
		}
		p.Warnings = append(p.Warnings, unsupportedFields(sc)...)
		p.Services = append(p.Services, s)
	}
	return p, nil
}

// ServiceHash is the config hash of a service: the hash of its normalised
// config without the fields whose change must not recreate a container
// (replica count, build, pull policy, depends_on, profiles). Compose v2
// excludes the same set.
func ServiceHash(sc types.ServiceConfig) (string, error) {
	c := sc
	c.Scale = nil
	if c.Deploy != nil {
		d := *c.Deploy
		d.Replicas = nil
		c.Deploy = &d
	}
	c.Build = nil
	c.PullPolicy = ""
	c.DependsOn = nil
	c.Profiles = nil
	return naming.Hash(c)
}

// ImageName is the image a service runs: its `image`, or
// `{project}-{service}` for a service that only has a build section (the
// name compose v2 gives it).
func ImageName(project string, sc types.ServiceConfig) string {
	if sc.Image != "" {
		return sc.Image
	}
	return project + "-" + sc.Name
}
