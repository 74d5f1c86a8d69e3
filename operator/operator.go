// Package operator runs a project's operator: the reconcile loop, roster's
// DNS server fed from every complete observation, and the resolv.conf files
// that point the project's containers at it. The foreground `roster up`
// and the background agent both run it; only one at a time per project
// (the operator lock).
package operator

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/roster-dev/roster/compose"
	"github.com/roster-dev/roster/dns"
	"github.com/roster-dev/roster/naming"
	"github.com/roster-dev/roster/reconciler"
)

// DNSPort is where roster's DNS listens on every project network's gateway:
// containers can only use port 53.
const DNSPort = 53

// DNS serves the project's records and follows its networks.
type DNS struct {
	Log *slog.Logger

	mu      sync.Mutex
	ctx     context.Context
	srv     *dns.Server
	addrs   []string
	table   *dns.Table
	project *compose.Project
	failed  string // last listen error, logged once
}

// SetProject sets the desired model the next observation is read against.
func (d *DNS) SetProject(p *compose.Project) {
	d.mu.Lock()
	d.project = p
	d.mu.Unlock()
}

// Start makes the server listen from the next observation on, until ctx ends.
func (d *DNS) Start(ctx context.Context) {
	d.mu.Lock()
	d.ctx = ctx
	d.mu.Unlock()
}

// Servers returns the addresses DNS is served on for a project observation:
// the gateway of every project network, port 53.
func Servers(p *compose.Project, o *reconciler.Observed) []string {
	var out []string
	for _, n := range projectNetworks(p, o) {
		for _, gw := range n.Gateways {
			if ip, err := netip.ParseAddr(gw); err == nil && ip.Is4() {
				out = append(out, net.JoinHostPort(gw, fmt.Sprint(DNSPort)))
			}
		}
	}
	sort.Strings(out)
	return out
}

// projectNetworks are the observed networks roster created for p.
func projectNetworks(p *compose.Project, o *reconciler.Observed) []reconciler.Network {
	var out []reconciler.Network
	for _, n := range o.Networks {
		if n.Labels[naming.LabelProject] == p.Name {
			out = append(out, n)
		}
	}
	return out
}

// Table builds the DNS table of an observation.
func Table(p *compose.Project, o *reconciler.Observed) *dns.Table {
	return dns.NewTable(p.Roster.Zone, p.Roster.DNS.TTLDuration(), reconciler.DNSReplicas(p, o))
}

// Observed is the reconciler's hook: build the table outside the lock,
// swap it in, and (re)bind when the project's networks changed.
func (d *DNS) Observed(o *reconciler.Observed) {
	d.mu.Lock()
	p := d.project
	d.mu.Unlock()
	if p == nil || p.Roster.DNS.Disable {
		return
	}
	t := Table(p, o)
	addrs := Servers(p, o)
	var allowed []netip.Prefix
	for _, n := range projectNetworks(p, o) {
		for _, s := range n.Subnets {
			if pfx, err := netip.ParsePrefix(s); err == nil {
				allowed = append(allowed, pfx)
			}
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.table = t
	if d.srv != nil {
		d.srv.Swap(t)
	}
	if d.ctx == nil || d.ctx.Err() != nil || len(addrs) == 0 || slices.Equal(addrs, d.addrs) {
		return
	}
	// The set of networks changed (first observation, or a network was
	// added): serve on the new set.
	srv := dns.NewServer(dns.Config{Zone: p.Roster.Zone, Allowed: allowed, Logger: d.Log})
	srv.Swap(t)
	if err := srv.Listen(d.ctx, addrs); err != nil {
		if msg := err.Error(); msg != d.failed {
			d.failed = msg
			d.Log.Error("dns: cannot serve; containers fall back to Docker's embedded DNS", "err", err,
				"hint", "port 53 needs root or CAP_NET_BIND_SERVICE (the agent of `roster up -d` has it)")
		}
		return
	}
	if d.srv != nil {
		_ = d.srv.Close()
	}
	d.srv, d.addrs, d.failed = srv, addrs, ""
}

// Close stops serving.
func (d *DNS) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.srv != nil {
		_ = d.srv.Close()
		d.srv, d.addrs = nil, nil
	}
}

// ResolvConfDir is where the generated resolv.conf files live.
func ResolvConfDir(p *compose.Project) string {
	return filepath.Join(p.Dir, ".roster", p.Name)
}

// ResolvConf renders the resolv.conf of containers whose primary network
// has gateway gw: roster's DNS first; Docker's embedded DNS second, so that
// names still resolve (without roster's extras) when no operator runs.
func ResolvConf(p *compose.Project, gw string) []byte {
	zone := p.Roster.Zone
	if len(zone) > 1 {
		zone = zone[:len(zone)-1]
	}
	return []byte(fmt.Sprintf(`# Written by roster for project %s: roster's DNS on the network gateway
# first, Docker's embedded DNS as the fallback when no roster operator runs.
nameserver %s
nameserver 127.0.0.11
search %s
options ndots:1 timeout:1 attempts:2
`, p.Name, gw, zone))
}

// Prepare is the reconciler's hook: write the resolv.conf of every project
// network that has a gateway (only when its bytes change) and put them in
// the desired model.
func Prepare(ctx context.Context, d reconciler.Desired, o *reconciler.Observed) (reconciler.Desired, error) {
	p := d.Project
	if p.Roster.DNS.Disable {
		return d, nil
	}
	files := map[string]string{}
	for _, n := range projectNetworks(p, o) {
		if len(n.Gateways) == 0 {
			continue
		}
		path := filepath.Join(ResolvConfDir(p), "resolv."+n.Name+".conf")
		if err := writeIfChanged(path, ResolvConf(p, n.Gateways[0])); err != nil {
			return d, err
		}
		files[n.Name] = path
	}
	d.ResolvConf = files
	return d, nil
}

// writeIfChanged writes data atomically unless the file already holds it.
func writeIfChanged(path string, data []byte) error {
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, data) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := fmt.Sprintf("%s.tmp%d", path, time.Now().UnixNano())
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
