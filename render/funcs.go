package render

import (
	"fmt"
	"reflect"
	"strings"
	"text/template"
)

// funcs is the template FuncMap for one render of d (see README.md).
func funcs(d Data) template.FuncMap {
	return template.FuncMap{
		// service "web" -> Service (empty when absent)
		"service": d.Service,
		// replicas "web" -> all replicas of web, by slot
		"replicas": func(name string) []Replica { return d.Service(name).Replicas },
		// slots "web" -> 1..the desired replicas of web (the slots that
		// should exist, whether or not their container exists right now)
		"slots": func(name string) []int {
			out := make([]int, d.Service(name).Desired)
			for i := range out {
				out[i] = i + 1
			}
			return out
		},
		// readyReplicas "web" -> the ready replicas of web, by slot
		"readyReplicas": func(name string) []Replica { return ready(d.Service(name).Replicas) },
		// ready X -> the ready replicas of X (a Service or a list of replicas)
		"ready": func(v any) ([]Replica, error) {
			rs, err := replicaList("ready", v)
			return ready(rs), err
		},
		// running X -> the running replicas of X
		"running": func(v any) ([]Replica, error) {
			rs, err := replicaList("running", v)
			return running(rs), err
		},
		// sortBySlot X -> a copy of X sorted by slot
		"sortBySlot": func(v any) ([]Replica, error) {
			rs, err := replicaList("sortBySlot", v)
			return sortBySlot(rs), err
		},
		// port REPLICA 8080 ["udp"] -> Port{Private: 8080, Public: N (0 when not published)}
		"port": portOf,
		// join ", " LIST -> the items (replicas: hostnames) joined
		"join": join,
		// default DEF X -> X unless empty, else DEF (pipeline: X | default DEF)
		"default": func(def, v any) any {
			if empty(v) {
				return def
			}
			return v
		},
	}
}

// replicaList accepts a Service, a []Replica or a single Replica.
func replicaList(fn string, v any) ([]Replica, error) {
	switch x := v.(type) {
	case Service:
		return x.Replicas, nil
	case *Service:
		return x.Replicas, nil
	case []Replica:
		return x, nil
	case Replica:
		return []Replica{x}, nil
	case nil:
		return nil, nil
	}
	return nil, fmt.Errorf("%s: want a service or a list of replicas, got %T", fn, v)
}

func portOf(r Replica, private int, proto ...string) (Port, error) {
	p := "tcp"
	if len(proto) > 0 {
		p = strings.ToLower(proto[0])
	}
	if private < 1 || private > 65535 {
		return Port{}, fmt.Errorf("port: %d is not a port number", private)
	}
	for _, x := range r.Ports {
		if int(x.Private) == private && (x.Proto == p || x.Proto == "" && p == "tcp") && x.Public != 0 {
			return x, nil
		}
	}
	return Port{Private: uint16(private), Proto: p}, nil
}

// join joins the items of a list (strings, replicas as hostnames, anything
// else with fmt.Sprint).
func join(sep string, v any) (string, error) {
	if v == nil {
		return "", nil
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
		return "", fmt.Errorf("join: want a list, got %T", v)
	}
	parts := make([]string, rv.Len())
	for i := range parts {
		parts[i] = fmt.Sprint(rv.Index(i).Interface())
	}
	return strings.Join(parts, sep), nil
}

func empty(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Map, reflect.String, reflect.Array:
		return rv.Len() == 0
	case reflect.Pointer, reflect.Interface:
		return rv.IsNil()
	}
	return rv.IsZero()
}
