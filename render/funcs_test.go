package render

import (
	"strings"
	"testing"
	"text/template"
)

func TestHelpers(t *testing.T) {
	d := webData(3, 1, 3)
	d.Services[0].Replicas[0].Ports = []Port{{Private: 9090, Proto: "udp", Public: 9999}, {Private: 8080, Public: 18080}, {Private: 8080, Proto: "udp"}}
	for _, tc := range []struct{ src, want string }{
		{`{{join ", " (readyReplicas "web")}}`, "web_1, web_3"},
		{`{{join "," (replicas "web")}}`, "web_1,web_2,web_3"},
		{`{{range ready (service "web")}}{{.Slot}}{{end}}`, "13"},
		{`{{range (service "web").Ready}}{{.Slot}}{{end}}`, "13"},
		{`{{range running (replicas "nginx")}}{{.Name}}{{end}}`, "p-nginx-1"},
		{`{{range .Services}}{{.Name}} {{end}}`, "nginx web "},
		{`{{(service "nope").Name}} {{len (replicas "nope")}} {{len (readyReplicas "nope")}}`, "nope 0 0"},
		{`{{range sortBySlot (replicas "web")}}{{.Slot}}{{end}}`, "123"},
		{`{{with index (replicas "web") 2}}{{.IP}} {{index .IPs "p_default"}} {{.Name}} {{.ID}} {{.State}} {{.Ready}}{{end}}`, "10.0.0.4 10.0.0.4 p-web-3 id-web-3 running true"},
		{`{{with index (replicas "web") 2}}{{(port . 8080).Public}} {{(port . 8080).Private}} {{(port . 9090 "udp").Public}} {{port . 8080}}{{end}}`, "18080 8080 9999 18080:8080/tcp"},
		{`{{with index (replicas "web") 0}}{{(port . 8080).Public}}{{end}}`, "0"},
		{`{{join " " (list)}}`, ""},
		{`{{"" | default "x"}} {{"y" | default "x"}} {{0 | default 5}}`, "x y 5"},
		{`{{.Project}} {{.Zone}}`, "p p.internal."},
		{`{{len (ready (index (replicas "web") 0))}}`, "1"},
	} {
		tmpl := template.Must(template.New("t").Funcs(funcs(d.Normalize())).Funcs(template.FuncMap{"list": func() []string { return nil }}).Parse(tc.src))
		var b strings.Builder
		if err := tmpl.Execute(&b, d.Normalize()); err != nil {
			t.Errorf("%s: %v", tc.src, err)
			continue
		}
		if b.String() != tc.want {
			t.Errorf("%s = %q, want %q", tc.src, b.String(), tc.want)
		}
	}
	for _, src := range []string{`{{ready "web"}}`, `{{join "," 3}}`, `{{port (index (replicas "web") 0) 70000}}`} {
		tmpl := template.Must(template.New("t").Funcs(funcs(d)).Parse(src))
		if err := tmpl.Execute(&strings.Builder{}, d); err == nil {
			t.Errorf("%s: want an error", src)
		}
	}
}

func TestNormalizeIsStable(t *testing.T) {
	d := Data{Services: []Service{
		{Name: "web", Replicas: []Replica{
			{Slot: 2, IPs: map[string]string{"p_b": "10.1.0.2", "p_a": "10.0.0.2"}},
			{Slot: 1, IPs: map[string]string{"p_b": "10.1.0.1", "p_a": ""}, Ports: []Port{{Private: 90}, {Private: 80, Proto: "udp"}, {Private: 80}}},
		}},
		{Name: "db"},
	}}
	n := d.Normalize()
	if n.Services[0].Name != "db" || n.Services[1].Replicas[0].Slot != 1 {
		t.Fatalf("order: %+v", n)
	}
	r1, r2 := n.Services[1].Replicas[0], n.Services[1].Replicas[1]
	if r1.IP != "10.1.0.1" || r2.IP != "10.0.0.2" || r1.Service != "web" {
		t.Errorf("IPs: %+v %+v", r1, r2)
	}
	if got := r1.Ports; got[0] != (Port{Private: 80, Proto: "tcp"}) || got[1] != (Port{Private: 80, Proto: "udp"}) || got[2].Private != 90 {
		t.Errorf("ports %v", got)
	}
	if d.Services[0].Replicas[0].Slot != 2 || d.Services[0].Replicas[1].Ports[0].Private != 90 {
		t.Errorf("Normalize modified its receiver")
	}
}
