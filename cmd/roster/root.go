package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/roster-dev/roster/compose"
	"github.com/roster-dev/roster/engine"
	"github.com/roster-dev/roster/reconciler"
)

// Build information, set with -ldflags "-X main.version=...".
var (
	version = "dev"
	commit  = "unknown"
)

// usageError is a bad command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument", "invalid argument", "accepts ", "requires at least", "bad flag syntax"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// globals are the flags shared with docker compose.
type globals struct {
	files      []string
	project    string
	projectDir string
	envFiles   []string
	profiles   []string
	progress   string
	logLevel   string
}

func (g *globals) options() compose.Options {
	return compose.Options{Files: g.files, ProjectName: g.project, ProjectDirectory: g.projectDir, EnvFiles: g.envFiles, Profiles: g.profiles}
}

// load reads the compose project.
func (g *globals) load(ctx context.Context) (*compose.Project, error) {
	p, err := compose.Load(ctx, g.options())
	if err != nil {
		return nil, fmt.Errorf("%w\nnothing was changed", err)
	}
	return p, nil
}

func (g *globals) logger(w io.Writer) *slog.Logger {
	lvl := slog.LevelInfo
	_ = lvl.UnmarshalText([]byte(g.logLevel))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl}))
}

// observe loads the project, connects to the engine and observes the
// project once (with the services' images when images is true). The
// caller closes the engine.
func (g *globals) observe(ctx context.Context, images bool) (*compose.Project, *engine.Docker, *reconciler.Observed, error) {
	p, err := g.load(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	eng, err := connect(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	var refs []string
	if images {
		for _, s := range p.Services {
			refs = append(refs, compose.ImageName(p.Name, s.Config))
		}
	}
	o, err := eng.Observe(ctx, p.Name, refs)
	if err != nil {
		eng.Close()
		return nil, nil, nil, fmt.Errorf("observe project %s: %w\nnothing was changed", p.Name, err)
	}
	return p, eng, o, nil
}

// recordPaused persists a failed rollout (reconciler.OnRolloutFailed).
func recordPaused(p *compose.Project, log *slog.Logger) func(service, hash string) {
	return func(service, hash string) {
		err := compose.UpdateState(p, func(st *compose.State) {
			if st.Paused == nil {
				st.Paused = map[string]string{}
			}
			st.Paused[service] = hash
		})
		if err != nil {
			log.Error("cannot record the failed rollout", "service", service, "err", err)
		}
	}
}

// connect opens the engine.
func connect(ctx context.Context) (*engine.Docker, error) {
	d, err := engine.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w\nnothing was changed", err)
	}
	return d, nil
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "roster",
		Short:         "Run a compose project's replicas with stable identities, DNS and rendered configs",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &usageError{msg: err.Error()} })
	f := root.PersistentFlags()
	f.StringArrayVarP(&g.files, "file", "f", nil, "compose file (repeatable; default: COMPOSE_FILE, then compose.yaml & co.)")
	f.StringVarP(&g.project, "project-name", "p", "", "project name (default: COMPOSE_PROJECT_NAME, the file's name:, the directory)")
	f.StringVar(&g.projectDir, "project-directory", "", "project directory (default: the first compose file's directory)")
	f.StringArrayVar(&g.envFiles, "env-file", nil, "environment file (repeatable; default: .env in the project directory)")
	f.StringArrayVar(&g.profiles, "profile", nil, "profile to enable (repeatable; default: COMPOSE_PROFILES)")
	f.StringVar(&g.progress, "progress", "auto", "progress output: auto, tty, plain, quiet")
	f.StringVar(&g.logLevel, "log-level", "info", "log level of the reconcile loop: debug, info, warn, error")
	root.AddCommand(newUpCmd(g), newAgentCmd(g), newDNSCmd(g), newRenderCmd(g), newPlanCmd(g), newScaleCmd(g), newDownCmd(g), newPsCmd(g), newConfigCmd(g), newVersionCmd())
	return root
}

// noArgs rejects positional arguments with a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments (got %q)", cmd.CommandPath(), args)
	}
	return nil
}

// desired builds the desired model of a command run.
func desired(p *compose.Project, services []string) (reconciler.Desired, []string, error) {
	st, err := compose.ReadState(p)
	if err != nil {
		return reconciler.Desired{}, nil, err
	}
	replicas, notes := p.Replicas(st)
	for _, s := range services {
		if _, ok := p.Service(s); !ok {
			return reconciler.Desired{}, nil, usagef("no such service: %q (services: %s)", s, strings.Join(p.ServiceNames(), ", "))
		}
	}
	for svc, hash := range st.Paused {
		if s, ok := p.Service(svc); ok && s.Hash == hash {
			notes = append(notes, fmt.Sprintf("service %q: the rollout of its current config failed earlier and is paused; `roster up` retries it", svc))
		}
	}
	return reconciler.Desired{Project: p, Replicas: replicas, Services: services, Paused: st.Paused}, notes, nil
}

func warnAll(w io.Writer, lines []string) {
	for _, l := range lines {
		fmt.Fprintln(w, "warning:", l)
	}
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print version, commit, Go version and engine API version",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "roster %s\ncommit: %s\ngo: %s\n", version, commit, goVersion())
			d, err := engine.New(cmd.Context())
			if err != nil {
				fmt.Fprintf(out, "engine: unreachable (%v)\n", err)
				return nil
			}
			defer d.Close()
			sv, _ := d.ServerVersion(cmd.Context())
			fmt.Fprintf(out, "engine: %s, API %s\n", sv, d.APIVersion())
			return nil
		},
	}
}
