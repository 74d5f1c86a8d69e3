package compose

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
)

// ExtensionKey is the compose extension roster reads, at the top level and
// per service.
const ExtensionKey = "x-roster"

// ProjectExt is the top-level x-roster block.
type ProjectExt struct {
	// Zone is the DNS zone of the project; default "{project}.internal.".
	Zone string `json:"zone,omitempty"`
	// DNS configures roster's DNS server.
	DNS DNSExt `json:"dns,omitempty"`
	// Templates are dependent config files (see the templates issue).
	Templates []json.RawMessage `json:"templates,omitempty"`
}

// DNSExt configures the DNS server.
type DNSExt struct {
	TTL     string `json:"ttl,omitempty"`     // positive TTL, e.g. "5s" (the default)
	Disable bool   `json:"disable,omitempty"` // no DNS server, no resolv.conf in containers
	ttl     time.Duration
}

// TTLDuration is the parsed TTL (0: the DNS server's default).
func (d DNSExt) TTLDuration() time.Duration { return d.ttl }

// ServiceExt is a service's x-roster block.
type ServiceExt struct {
	// Hostname is the hostname template, e.g. "{service}-{n}".
	Hostname string `json:"hostname,omitempty"`
	// RestartUnhealthy replaces a replica that stays unhealthy.
	RestartUnhealthy bool `json:"restart_unhealthy,omitempty"`
	// SlotVolumes are keys of top-level named volumes the service mounts
	// that each slot gets its own copy of: slot n mounts
	// "<volume name>-<n>" (like a StatefulSet's volume claim template).
	// A slot's volume survives scale down and recreate and is reused when
	// the slot comes back; `roster down -v` removes it.
	SlotVolumes []string `json:"slot_volumes,omitempty"`
}

// SlotVolumeName is the volume slot n of a service mounts for a
// slot_volumes entry whose project volume is named name.
func SlotVolumeName(name string, n int) string { return fmt.Sprintf("%s-%d", name, n) }

func parseProjectExt(cp *types.Project) (ProjectExt, error) {
	var e ProjectExt
	if err := decodeExt(cp.Extensions, &e); err != nil {
		return e, fmt.Errorf("top-level %s: %w", ExtensionKey, err)
	}
	if e.Zone == "" {
		e.Zone = cp.Name + ".internal."
	}
	if e.DNS.TTL != "" {
		d, err := time.ParseDuration(e.DNS.TTL)
		if err != nil || d < time.Second {
			return e, fmt.Errorf("top-level %s: dns.ttl: %q is not a duration of at least 1s", ExtensionKey, e.DNS.TTL)
		}
		e.DNS.ttl = d
	}
	if !strings.HasSuffix(e.Zone, ".") {
		e.Zone += "."
	}
	return e, nil
}

func parseServiceExt(cp *types.Project, name string, sc types.ServiceConfig) (ServiceExt, error) {
	var e ServiceExt
	if err := decodeExt(sc.Extensions, &e); err != nil {
		return e, fmt.Errorf("service %q: %s: %w", name, ExtensionKey, err)
	}
	for _, key := range e.SlotVolumes {
		v, ok := cp.Volumes[key]
		if !ok || bool(v.External) {
			return e, fmt.Errorf("service %q: %s.slot_volumes: %q must be a volume declared in the top-level volumes (not external)", name, ExtensionKey, key)
		}
		used := false
		for _, m := range sc.Volumes {
			used = used || (m.Type == types.VolumeTypeVolume && m.Source == key)
		}
		if !used {
			return e, fmt.Errorf("service %q: %s.slot_volumes: the service does not mount volume %q", name, ExtensionKey, key)
		}
	}
	return e, nil
}

// decodeExt decodes the x-roster entry of exts into v, rejecting unknown
// fields so that a typo is an error rather than a silent default.
func decodeExt(exts types.Extensions, v any) error {
	raw, ok := exts[ExtensionKey]
	if !ok || raw == nil {
		return nil
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w", err)
	}
	return nil
}
