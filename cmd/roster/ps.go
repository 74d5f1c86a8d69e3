package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/roster-dev/roster/compose"
	"github.com/roster-dev/roster/naming"
	"github.com/roster-dev/roster/reconciler"
)

// psRow is one line of `roster ps`; its JSON form is the documented,
// stable schema of `roster ps --format json`.
type psRow struct {
	Service  string            `json:"service"`
	Slot     int               `json:"slot"`
	Name     string            `json:"name"`
	ID       string            `json:"id"`
	Hostname string            `json:"hostname"`
	State    string            `json:"state"`
	Health   string            `json:"health"`
	Ready    bool              `json:"ready"`
	Drift    bool              `json:"drift"`
	IPs      map[string]string `json:"ips"`
}

func psRows(p *compose.Project, o *reconciler.Observed, services []string) []psRow {
	want := map[string]bool{}
	for _, s := range services {
		want[s] = true
	}
	rows := []psRow{}
	for _, c := range o.Containers {
		if c.OneOff || c.Labels[naming.LabelRole] == "agent" || (len(want) > 0 && !want[c.Service]) {
			continue
		}
		drift := false
		if s, ok := p.Service(c.Service); ok {
			drift = c.ConfigHash != s.Hash
			if id, ok := o.Images[compose.ImageName(p.Name, s.Config)]; ok && c.ImageID != "" && id != c.ImageID {
				drift = true
			}
		}
		id := c.ID
		if len(id) > 12 {
			id = id[:12]
		}
		ips := c.IPs
		if ips == nil {
			ips = map[string]string{}
		}
		rows = append(rows, psRow{Service: c.Service, Slot: c.Slot, Name: c.Name, ID: id, Hostname: c.Hostname,
			State: c.State, Health: c.Health, Ready: reconciler.Ready(c), Drift: drift, IPs: ips})
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Service != rows[j].Service {
			return rows[i].Service < rows[j].Service
		}
		if rows[i].Slot != rows[j].Slot {
			return rows[i].Slot < rows[j].Slot
		}
		return rows[i].Name < rows[j].Name
	})
	return rows
}

func newPsCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "ps [SERVICE...]",
		Short: "List replicas: service, slot, container, hostname, IPs, state, health, ready, drift",
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "table" && format != "json" {
				return usagef("--format must be table or json (got %q)", format)
			}
			ctx := cmd.Context()
			p, eng, o, err := g.observe(ctx, true)
			if err != nil {
				return err
			}
			defer eng.Close()
			for _, s := range args {
				if _, ok := p.Service(s); !ok {
					return usagef("no such service: %q", s)
				}
			}
			rows := psRows(p, o, args)
			out := cmd.OutOrStdout()
			if format == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SERVICE\tSLOT\tNAME\tHOSTNAME\tSTATE\tHEALTH\tREADY\tDRIFT\tIPS")
			for _, r := range rows {
				var ips []string
				for n, ip := range r.IPs {
					ips = append(ips, n+"="+ip)
				}
				sort.Strings(ips)
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%v\t%v\t%s\n", r.Service, r.Slot, r.Name, r.Hostname, r.State, dash(r.Health), r.Ready, r.Drift, strings.Join(ips, ","))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(out, dnsSummary(p, o))
			templateStatus(out, p)
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newConfigCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Print the normalized project, as compose would",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := g.load(cmd.Context())
			if err != nil {
				return err
			}
			var b []byte
			switch format {
			case "yaml":
				b, err = p.Compose.MarshalYAML()
			case "json":
				b, err = p.Compose.MarshalJSON()
			default:
				return usagef("--format must be yaml or json (got %q)", format)
			}
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	cmd.Flags().StringVar(&format, "format", "yaml", "yaml or json")
	return cmd
}
