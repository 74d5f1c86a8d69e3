package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/roster-dev/roster/compose"
	"github.com/roster-dev/roster/operator"
	"github.com/roster-dev/roster/reconciler"
)

func newDownCmd(g *globals) *cobra.Command {
	var opt reconciler.DownOptions
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Remove the project's containers, networks and agent; named volumes only with -v",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			p, eng, o, err := g.observe(ctx, false)
			if err != nil {
				return err
			}
			defer eng.Close()
			errw := cmd.ErrOrStderr()
			plan := reconciler.MakeDownPlan(p, o, opt)
			if dryRun {
				fmt.Fprint(cmd.OutOrStdout(), plan.String())
				return nil
			}
			warnAll(errw, plan.Warnings)
			unlock, err := operator.LockChanges(ctx, p, errw)
			if err != nil {
				return err
			}
			defer unlock()
			prog := newProgress(errw, g.progress)
			err = reconciler.Execute(ctx, eng, plan, 8, prog.event)
			prog.done()
			if err != nil {
				return upError(err)
			}
			// A later `up` starts again from the compose file.
			os.RemoveAll(operator.ResolvConfDir(p))
			return compose.RemoveState(p)
		},
	}
	cmd.Flags().BoolVarP(&opt.Volumes, "volumes", "v", false, "also remove named volumes and anonymous volumes")
	cmd.Flags().BoolVar(&opt.RemoveOrphans, "remove-orphans", false, "also remove containers of services not in the compose file")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan, change nothing")
	return cmd
}
