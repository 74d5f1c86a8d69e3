package render

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func raws(t *testing.T, js ...string) []json.RawMessage {
	t.Helper()
	out := make([]json.RawMessage, len(js))
	for i, s := range js {
		if !json.Valid([]byte(s)) {
			t.Fatalf("invalid JSON in test: %s", s)
		}
		out[i] = json.RawMessage(s)
	}
	return out
}

func TestParseTemplates(t *testing.T) {
	dir := t.TempDir()
	got, err := ParseTemplates(raws(t,
		`{"source":"nginx/up.tmpl","target":"nginx/conf.d/up.conf",
		  "check":{"service":"nginx","exec":["nginx","-t"]},
		  "reload":{"service":"nginx","signal":"hup"},
		  "wait":{"min":"100ms","max":"1s"},"mode":"0640"}`,
		`{"source":"/abs/peers.tmpl","target":"peers.conf","mode":420,
		  "check":{"command":"test -s {{.src}}","timeout":"5s"},
		  "reload":{"command":["make","reload"]}}`,
		`{"source":"x.tmpl","target":"x.conf","mode":644,"wait":{"min":"3s"}}`,
	), dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Template{
		{Name: "nginx/up.tmpl", Source: filepath.Join(dir, "nginx/up.tmpl"), Target: filepath.Join(dir, "nginx/conf.d/up.conf"),
			Dir: dir, Mode: 0o640,
			Check:  &Action{Service: "nginx", Exec: []string{"nginx", "-t"}, Timeout: DefaultActionTimeout},
			Reload: &Action{Service: "nginx", Signal: "SIGHUP", Timeout: DefaultActionTimeout},
			Wait:   Wait{100 * time.Millisecond, time.Second}},
		{Name: "/abs/peers.tmpl", Source: "/abs/peers.tmpl", Target: filepath.Join(dir, "peers.conf"), Dir: dir, Mode: 0o644,
			Check:  &Action{Command: []string{"/bin/sh", "-c", "test -s {{.src}}"}, Timeout: 5 * time.Second},
			Reload: &Action{Command: []string{"make", "reload"}, Timeout: DefaultActionTimeout},
			Wait:   Wait{DefaultWaitMin, DefaultWaitMax}},
		// max defaults to at least min
		{Name: "x.tmpl", Source: filepath.Join(dir, "x.tmpl"), Target: filepath.Join(dir, "x.conf"), Dir: dir, Mode: 0o644,
			Wait: Wait{3 * time.Second, 3 * time.Second}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%#v\nwant\n%#v", got, want)
	}

	// two templates from one source are named by their targets too
	got, err = ParseTemplates(raws(t, `{"source":"a.tmpl","target":"one.conf"}`, `{"source":"a.tmpl","target":"sub/two.conf"}`), dir)
	if err != nil || got[0].Name != "a.tmpl -> one.conf" || got[1].Name != "a.tmpl -> sub/two.conf" {
		t.Errorf("shared source: %v %v", got, err)
	}
	if got, err := ParseTemplates(nil, dir); err != nil || len(got) != 0 {
		t.Errorf("no templates: %v %v", got, err)
	}
}

func TestParseTemplatesErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		js   []string
		want string
	}{
		{"reload with two kinds", []string{`{"source":"a.tmpl","target":"a"}`, `{"source":"nginx/up.tmpl","target":"b","reload":{"service":"nginx","signal":"HUP","exec":["x"]}}`},
			"x-roster.templates[1] (nginx/up.tmpl): reload: exactly one of command, exec, signal"},
		{"reload with none", []string{`{"source":"a.tmpl","target":"a","reload":{"service":"nginx"}}`},
			"x-roster.templates[0] (a.tmpl): reload: exactly one of command, exec, signal"},
		{"unknown field", []string{`{"source":"a.tmpl","target":"a","relaod":{}}`},
			`x-roster.templates[0] (a.tmpl): unknown field "relaod"`},
		{"unknown action field", []string{`{"source":"a.tmpl","target":"a","check":{"service":"n","exec":["x"],"user":"root"}}`},
			`x-roster.templates[0] (a.tmpl): check: unknown field "user"`},
		{"unknown wait field", []string{`{"source":"a.tmpl","target":"a","wait":{"minimum":"1s"}}`},
			`x-roster.templates[0] (a.tmpl): wait: unknown field "minimum"`},
		{"missing source", []string{`{"target":"a"}`}, "x-roster.templates[0]: source: required"},
		{"missing target", []string{`{"source":"a.tmpl"}`}, "x-roster.templates[0] (a.tmpl): target: required"},
		{"source is not a string", []string{`{"source":5,"target":"a"}`}, "x-roster.templates[0]: source: must be a string, not number"},
		{"not a mapping", []string{`"a.tmpl"`}, "x-roster.templates[0]: must be a mapping, not string"},
		{"target is source", []string{`{"source":"a","target":"./a"}`}, "x-roster.templates[0] (a): target: must differ from source"},
		{"same target twice", []string{`{"source":"a","target":"t"}`, `{"source":"b","target":"t"}`},
			"x-roster.templates[1] (b): target: "},
		{"bad mode", []string{`{"source":"a","target":"t","mode":"rw-r--r--"}`},
			`x-roster.templates[0] (a): mode: "rw-r--r--" is not an octal file mode such as "0644"`},
		{"mode too big", []string{`{"source":"a","target":"t","mode":"1777"}`}, "x-roster.templates[0] (a): mode: "},
		{"bad duration", []string{`{"source":"a","target":"t","wait":{"min":"200"}}`},
			`x-roster.templates[0] (a): wait: min: "200" is not a duration such as 200ms or 2s`},
		{"max below min", []string{`{"source":"a","target":"t","wait":{"min":"2s","max":"1s"}}`},
			"x-roster.templates[0] (a): wait: max (1s) is shorter than min (2s)"},
		{"exec without service", []string{`{"source":"a","target":"t","check":{"exec":["nginx","-t"]}}`},
			"x-roster.templates[0] (a): check: service: required with exec"},
		{"signal without service", []string{`{"source":"a","target":"t","reload":{"signal":"SIGHUP"}}`},
			"x-roster.templates[0] (a): reload: service: required with signal"},
		{"command with service", []string{`{"source":"a","target":"t","reload":{"service":"x","command":["true"]}}`},
			"x-roster.templates[0] (a): reload: service: only with exec or signal"},
		{"unknown signal", []string{`{"source":"a","target":"t","reload":{"service":"x","signal":"SIGFOO"}}`},
			`x-roster.templates[0] (a): reload: signal: unknown signal "SIGFOO"`},
		{"empty exec", []string{`{"source":"a","target":"t","reload":{"service":"x","exec":[]}}`},
			"x-roster.templates[0] (a): reload: exec: empty command"},
		{"exec of numbers", []string{`{"source":"a","target":"t","reload":{"service":"x","exec":[1]}}`},
			"x-roster.templates[0] (a): reload: exec: must be a list of strings or a string"},
		{"bad timeout", []string{`{"source":"a","target":"t","check":{"command":"true","timeout":"-1s"}}`},
			`x-roster.templates[0] (a): check: timeout: "-1s" is not a positive duration`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTemplates(raws(t, tc.js...), t.TempDir())
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error\n got: %v\nwant: %s...", err, tc.want)
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]os.FileMode{
		`"0644"`: 0o644, `"644"`: 0o644, `"0o600"`: 0o600, `"0"`: 0, `420`: 0o644, `644`: 0o644, `384`: 0o600, `600`: 0o600,
	} {
		got, err := parseMode(json.RawMessage(in))
		if err != nil || got != want {
			t.Errorf("parseMode(%s) = %o, %v; want %o", in, got, err, want)
		}
	}
	for _, in := range []string{`"0x1"`, `"888"`, `999`, `-1`, `true`, `"07777"`} {
		if m, err := parseMode(json.RawMessage(in)); err == nil {
			t.Errorf("parseMode(%s) = %o, want an error", in, m)
		}
	}
}
