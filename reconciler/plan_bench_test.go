package reconciler_test

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/roster-dev/roster/naming"
	"github.com/roster-dev/roster/reconciler"
)

// BenchmarkPlan plans a converged project of 10 services with 100
// replicas each: 1,000 observed containers.
func BenchmarkPlan(b *testing.B) {
	y := "services:\n"
	for i := 0; i < 10; i++ {
		y += fmt.Sprintf("  s%d:\n    image: fixture:1\n    deploy: {replicas: 100}\n", i)
	}
	p := load(b, y)
	o := &reconciler.Observed{Images: map[string]string{"fixture:1": "sha256:x"},
		Networks: []reconciler.Network{{Name: "demo_default"}}}
	for _, s := range p.Services {
		for n := 1; n <= 100; n++ {
			h, _ := naming.Hostname(s.HostnameTemplate, p.Name, s.Name, n)
			o.Containers = append(o.Containers, reconciler.Container{
				ID: fmt.Sprintf("%s-%d", s.Name, n), Name: naming.ContainerName(p.Name, s.Name, n), Service: s.Name, Slot: n,
				ConfigHash: s.Hash, ImageID: "sha256:x", State: "running", Hostname: h,
				Labels: map[string]string{naming.LabelProject: p.Name, naming.LabelService: s.Name, naming.LabelNumber: strconv.Itoa(n)}})
		}
	}
	d := desired(p, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		plan, err := reconciler.MakePlan(d, o)
		if err != nil || !plan.Empty() {
			b.Fatalf("plan: %v\n%s", err, plan)
		}
	}
}
