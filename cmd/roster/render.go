package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/roster-dev/roster/compose"
	"github.com/roster-dev/roster/operator"
	"github.com/roster-dev/roster/reconciler"
)

func newRenderCmd(g *globals) *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "render",
		Short: "Render the x-roster templates once (--dry-run: print a unified diff, write nothing)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			p, eng, o, err := g.observe(ctx, false)
			if err != nil {
				return err
			}
			defer eng.Close()
			errw := cmd.ErrOrStderr()
			r, err := operator.LoadTemplates(p, eng, g.logger(errw))
			if err != nil {
				return fmt.Errorf("%w\nnothing was changed", err)
			}
			if r == nil {
				fmt.Fprintln(errw, "no templates: the compose file has no x-roster.templates")
				return nil
			}
			data := reconciler.TemplateData(p, o, operator.DesiredReplicas(p))
			if dryRun {
				diff, err := r.DryRun(data)
				if err != nil {
					return err
				}
				fmt.Fprint(cmd.OutOrStdout(), diff)
				return nil
			}
			rep, err := r.Render(ctx, data)
			if err != nil {
				return err
			}
			for _, t := range rep.Templates {
				state := "unchanged"
				switch {
				case t.Err != nil:
					state = "FAILED: " + t.Err.Error()
				case t.Changed && t.Reloaded:
					state = "written, reloaded"
				case t.Changed:
					state = "written"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s -> %s: %s\n", t.Name, p.Compose.RelativePath(t.Target), state)
			}
			if err := rep.Err(); err != nil {
				return fmt.Errorf("%w\nthe last good files were kept", err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print a unified diff of what would change; write nothing")
	return cmd
}

// templateStatus prints the operator's last template report, if any.
func templateStatus(w io.Writer, p *compose.Project) {
	b, err := os.ReadFile(operator.StatusPath(p))
	if err != nil {
		return
	}
	var st struct {
		Time   time.Time `json:"time"`
		Report struct {
			Templates []struct {
				Name     string `json:"name"`
				Target   string `json:"target"`
				Reloaded bool   `json:"reloaded"`
				Error    string `json:"error"`
			} `json:"templates"`
		} `json:"report"`
	}
	if json.Unmarshal(b, &st) != nil {
		return
	}
	for _, t := range st.Report.Templates {
		state := "ok"
		if t.Error != "" {
			state = "FAILED (last good file kept): " + t.Error
		}
		fmt.Fprintf(w, "template %s -> %s: %s (rendered %s)\n", t.Name, p.Compose.RelativePath(t.Target), state, st.Time.Local().Format(time.TimeOnly))
	}
}
