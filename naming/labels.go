package naming

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
)

// Compose labels: with them `docker compose -p P ps/logs/exec/stop` work on
// roster's containers.
const (
	LabelProject     = "com.docker.compose.project"
	LabelService     = "com.docker.compose.service"
	LabelNumber      = "com.docker.compose.container-number"
	LabelConfigHash  = "com.docker.compose.config-hash"
	LabelOneOff      = "com.docker.compose.oneoff"
	LabelWorkingDir  = "com.docker.compose.project.working_dir"
	LabelConfigFiles = "com.docker.compose.project.config_files"
	LabelVersion     = "com.docker.compose.version"
	LabelNetwork     = "com.docker.compose.network"
	LabelVolume      = "com.docker.compose.volume"
	LabelImage       = "com.docker.compose.image"
	LabelDependsOn   = "com.docker.compose.depends_on"

	// ComposeVersion is what roster writes into LabelVersion: the compose
	// file format generation it follows (compose v1 only reads it).
	ComposeVersion = "2.0.0"

	// roster's own labels.
	LabelManaged  = "dev.roster.managed"  // "true" on everything roster creates
	LabelHostname = "dev.roster.hostname" // the slot's hostname
	LabelSlot     = "dev.roster.slot"     // same as LabelNumber, kept for clarity in `docker ps`
	LabelRole     = "dev.roster.role"     // "agent" on the background operator
	// LabelUnhealthyRestarts counts the unhealthy replicas a container
	// replaced in its slot (x-roster.restart_unhealthy backoff).
	LabelUnhealthyRestarts = "dev.roster.unhealthy-restarts"
)

// ContainerLabels are the labels of slot n of a service.
func ContainerLabels(project, service string, n int, hostname, configHash, workingDir string, configFiles []string) map[string]string {
	return map[string]string{
		LabelProject:     project,
		LabelService:     service,
		LabelNumber:      strconv.Itoa(n),
		LabelConfigHash:  configHash,
		LabelOneOff:      "False",
		LabelWorkingDir:  workingDir,
		LabelConfigFiles: strings.Join(configFiles, ","),
		LabelVersion:     ComposeVersion,
		LabelManaged:     "true",
		LabelHostname:    hostname,
		LabelSlot:        strconv.Itoa(n),
	}
}

// NetworkLabels are the labels of a project network (key as in the compose file).
func NetworkLabels(project, key string) map[string]string {
	return map[string]string{LabelProject: project, LabelNetwork: key, LabelVersion: ComposeVersion, LabelManaged: "true"}
}

// VolumeLabels are the labels of a project volume (key as in the compose file).
func VolumeLabels(project, key string) map[string]string {
	return map[string]string{LabelProject: project, LabelVolume: key, LabelVersion: ComposeVersion, LabelManaged: "true"}
}

// Hash returns a stable hex digest of v's JSON form. The config hash of a
// service is Hash of its normalised config with everything that must not
// cause a recreate (replica count, build, pull policy, dependencies)
// cleared; see compose.Service.
func Hash(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}
