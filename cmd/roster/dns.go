package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/roster-dev/roster/compose"
	"github.com/roster-dev/roster/dns"
	"github.com/roster-dev/roster/naming"
	"github.com/roster-dev/roster/operator"
	"github.com/roster-dev/roster/reconciler"
)

// dnsView is `roster dns --format json`.
type dnsView struct {
	Zone    string       `json:"zone"`
	Servers []string     `json:"servers"`
	Records []dns.Record `json:"records"`
}

func newDNSCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "dns",
		Short: "List the DNS records roster serves for the project, and where the host can query them",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "table" && format != "json" {
				return usagef("--format must be table or json (got %q)", format)
			}
			ctx := cmd.Context()
			p, eng, o, err := g.observe(ctx, false)
			if err != nil {
				return err
			}
			defer eng.Close()
			v := dnsView{Zone: p.Roster.Zone, Servers: operator.Servers(p, o), Records: operator.Table(p, o).Records()}
			if v.Servers == nil {
				v.Servers = []string{}
			}
			if v.Records == nil {
				v.Records = []dns.Record{}
			}
			out := cmd.OutOrStdout()
			if format == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			}
			fmt.Fprintln(out, dnsSummary(p, o))
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tTYPE\tTTL\tVALUE")
			for _, r := range v.Records {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", r.Name, r.Type, r.TTL, r.Value)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	return cmd
}

// dnsSummary says where DNS is served and by whom.
func dnsSummary(p *compose.Project, o *reconciler.Observed) string {
	if p.Roster.DNS.Disable {
		return "DNS: disabled (x-roster.dns.disable)"
	}
	servers := operator.Servers(p, o)
	where := strings.Join(servers, ", ")
	if where == "" {
		where = "(no project network yet)"
	}
	by := "no operator is running: run `roster up -d` (agent) or `roster up`"
	for _, c := range o.Containers {
		if c.Labels[naming.LabelRole] == "agent" && c.Running() {
			by = "served by the agent " + c.Name
		}
	}
	if strings.HasPrefix(by, "no operator") && operator.OperatorRunning(p) {
		by = "served by a foreground `roster up`"
	}
	return fmt.Sprintf("DNS: zone %s on %s (%s); from the host: dig @%s web_1.%s", p.Roster.Zone, where, by, hostOf(servers), p.Roster.Zone)
}

func hostOf(servers []string) string {
	if len(servers) == 0 {
		return "GATEWAY"
	}
	h, _, _ := strings.Cut(servers[0], ":")
	return h
}
