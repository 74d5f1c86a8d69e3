package compose

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// supported lists the ServiceConfig fields (by yaml key) that roster
// translates into the engine's container config, or uses itself. Any other
// field that is set produces one warning naming service and field: a field
// is never dropped silently.
var supported = map[string]bool{
	"name": true, "profiles": true, "deploy": true, "restart": true, "scale": true,
	"container_name": true, "build": true, "depends_on": true, "expose": true,
	"healthcheck": true, "ports": true, "stdin_open": true, "tty": true,
	"cap_add": true, "cap_drop": true, "command": true, "dns": true, "dns_search": true,
	"dns_opt": true, "domainname": true, "entrypoint": true, "environment": true,
	"env_file": true, "extra_hosts": true, "group_add": true, "hostname": true,
	"image": true, "init": true, "ipc": true, "labels": true, "label_file": true,
	"logging": true, "mem_limit": true, "mem_reservation": true, "cpus": true,
	"cpu_shares": true, "network_mode": true, "networks": true, "pid": true,
	"privileged": true, "pull_policy": true, "read_only": true, "security_opt": true,
	"shm_size": true, "stop_grace_period": true, "stop_signal": true, "sysctls": true,
	"tmpfs": true, "ulimits": true, "user": true, "volumes": true, "working_dir": true,
	"mac_address": true, "pids_limit": true, "oom_score_adj": true, "memswap_limit": true,
	"devices": true, "runtime": true, "extends": true, "gpus": true,
	"volumes_from": true, "secrets": true, "configs": true,
	"cpu_period": true, "cpu_quota": true, "cpu_rt_period": true, "cpu_rt_runtime": true,
	"cpuset": true, "cgroup": true, "cgroup_parent": true, "device_cgroup_rules": true,
	"isolation": true, "log_driver": true, "log_opt": true, "mem_swappiness": true,
	"oom_kill_disable": true, "storage_opt": true, "userns_mode": true, "uts": true,
	"volume_driver": true,
}

// deploy sub-keys roster honours; the rest of deploy is for Swarm and
// produces a warning.
var supportedDeploy = map[string]bool{"replicas": true, "resources": true, "update_config": true, "restart_policy": true, "labels": true, "mode": true}

// unsupportedFields returns one warning per set field that roster does not
// translate.
func unsupportedFields(sc types.ServiceConfig) []string {
	var out []string
	walkSet(reflect.ValueOf(sc), func(key string) {
		if !supported[key] {
			out = append(out, fmt.Sprintf("service %q: field %q is not supported by roster yet and is ignored", sc.Name, key))
		}
	})
	if sc.Deploy != nil {
		walkSet(reflect.ValueOf(*sc.Deploy), func(key string) {
			if !supportedDeploy[key] {
				out = append(out, fmt.Sprintf("service %q: field \"deploy.%s\" is not supported by roster yet and is ignored", sc.Name, key))
			}
		})
	}
	sort.Strings(out)
	return out
}

// walkSet calls fn with the yaml key of every non-zero field of struct v,
// descending into inline structs.
func walkSet(v reflect.Value, fn func(key string)) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		key, rest, _ := strings.Cut(tag, ",")
		if strings.Contains(rest, "inline") {
			if f.Type.Kind() == reflect.Struct {
				walkSet(v.Field(i), fn)
			}
			continue
		}
		if key == "" || key == "-" || v.Field(i).IsZero() {
			continue
		}
		fn(key)
	}
}
