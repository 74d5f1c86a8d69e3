package main

import (
	"github.com/spf13/cobra"

	"github.com/roster-dev/roster/operator"
)

// newAgentCmd is what the agent container runs: wait for the operator lock,
// then reconcile and serve DNS until stopped.
func newAgentCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    "agent",
		Short:  "Run the project's operator (what `roster up -d` starts in a container)",
		Hidden: true,
		Args:   noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			errw := cmd.ErrOrStderr()
			log := g.logger(errw)
			p, err := g.load(ctx)
			if err != nil {
				return err
			}
			unlock, err := operator.LockOperator(ctx, p, func() {
				log.Info("another roster operator acts on this project; waiting for it to stop", "project", p.Name)
			})
			if err != nil {
				return err
			}
			defer unlock()
			eng, err := connect(ctx)
			if err != nil {
				return err
			}
			defer eng.Close()
			return runOperator(ctx, g, eng, nil, false, false, log, errw)
		},
	}
}
