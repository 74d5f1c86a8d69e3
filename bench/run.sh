#!/usr/bin/env bash
# roster's benchmarks (issue 7): runs every measured suite, prints the
# markdown report and writes it to OUT.
#
#   bench/run.sh full  docs/benchmarks.md             # make bench
#   bench/run.sh quick bin/bench/benchmarks-quick.md  # make bench-quick (CI smoke)
#
# A suite prints markdown on stdout (progress on stderr) and may append the
# verdicts of issue 7's targets to $TARGETS (report.AppendTarget). The
# engine suites (bench/engine.sh: roster vs docker compose v1/v2 on the
# real engine) run in one go and write one section each. A suite that
# fails is shown as failed in the report (never an old number) and makes
# this script exit 1 once the report is written.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE="${1:-quick}"
OUT="${2:-bin/bench/benchmarks-$MODE.md}"
export GO="${GO:-go}"
case "$MODE" in
quick) GOCOUNT="${GOCOUNT:-3}" ;;
full) GOCOUNT="${GOCOUNT:-5}" ;;
*) echo "usage: $0 quick|full [OUT]" >&2; exit 2 ;;
esac
export COREDNS_VERSION="${COREDNS_VERSION:-v1.14.7}"
export COMPOSE2_VERSION="${COMPOSE2_VERSION:-v2.40.3}"
export NGINX_IMAGE="${NGINX_IMAGE:-roster-nginx:bookworm}"

START=$(date +%s)
WORK="$(mktemp -d)"
export TARGETS="$WORK/targets.tsv"
: >"$TARGETS"
# The machine is shared: the 1-minute load average every 10 s during the
# run (bounded: at most 6 hours), summarized in the report.
(for _ in $(seq 1 2160); do cut -d' ' -f1 /proc/loadavg; sleep 10; done) >"$WORK/load.txt" 2>/dev/null &
LOAD_PID=$!
# The engine suites remove their own containers; this sweep is the last
# resort (an interrupt between two suites, a killed driver).
cleanup() {
	kill "$LOAD_PID" 2>/dev/null || true
	if [[ -x bin/bench/composebench ]]; then
		timeout 300 bin/bench/composebench sweep >&2 || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p bin/bench "$(dirname "$OUT")"

step() { echo "== bench: $*" >&2; }

# --- suites ----------------------------------------------------------------

suite_dns() {
	bench/dns.sh "$MODE" >"$WORK/dns.md"
}

suite_go() {
	local pkgs
	pkgs=$("$GO" list ./... | grep -v -e /e2e -e /bench/)
	"$GO" build -o bin/bench/gobench ./bench/gobench
	{
		echo "### Go micro-benchmarks"
		echo
		echo "\`$GO test -run '^\$' -bench . -benchmem -count $GOCOUNT\` over every package except e2e/ and bench/; median (min–max) of the $GOCOUNT runs. \`BenchmarkPlan\` is the planner on 1,000 observed containers (reconciler/plan_bench_test.go)."
		echo
		# shellcheck disable=SC2086
		timeout 30m "$GO" test -run '^$' -bench . -benchmem -count "$GOCOUNT" $pkgs 2>&1 | bin/bench/gobench
	} >"$WORK/go.md"
}

# roster vs docker compose v1/v2 and the floor, on the real engine.
ENGINE_SUITES=(up noop recreate repair nginx dnsstart template idle)
suite_engine() {
	ENGINE_OUT="$WORK/engine" bench/engine.sh "$MODE" "${ENGINE_SUITES[@]}"
}

SUITES=(dns engine go)

# The sections in report order; a missing one is a suite that failed.
SECTIONS=(dns engine/up engine/noop engine/recreate engine/repair engine/nginx
	engine/dnsstart engine/template engine/idle go)

# Issue 7's figures: "figure|unit|section|anchor" (N in an anchor: the
# section's replica count, smaller in quick mode).
FIGURES=(
	"\`up\` from nothing, 10 and 30 replicas, vs docker compose v1 (Debian) and v2 (pinned, Go module proxy)|wall time|engine/up|up-from-nothing-with-the-physical-floor"
	"physical floor: raw \`docker run -d\` of the same containers, sequential and 8 in parallel|wall time|engine/up|up-from-nothing-with-the-physical-floor"
	"no-op \`up\` on a converged project, 30 replicas, vs the same|wall time, engine API calls|engine/noop|no-op-up-on-a-converged-project-N-replicas"
	"config change -> all 30 replicas replaced, vs the same|wall time|engine/recreate|config-change---all-N-replicas-replaced"
	"repair after \`docker rm -f\` of one replica (agent); compose: no self-repair|time until running and in DNS|engine/repair|repair-after-docker-rm--f-of-one-replica"
	"requests failed through nginx during a config change of 3 web replicas, vs \`docker compose up\`|count|engine/nginx|requests-failed-through-nginx-during-a-config-change-of-3-web-replicas"
	"DNS: queries per second and p99 latency, 50 names, \`dnsperf\`, vs CoreDNS \`hosts\` plugin|q/s, µs|dns|dns-roster-vs-coredns-hosts-plugin-50-names"
	"DNS: container start -> name answered, vs Docker's embedded DNS (from inside a container)|ms|engine/dnsstart|dns-container-start---name-answered"
	"template: replica change -> file rendered and consumer reloaded (excluding the debounce min)|ms|engine/template|template-replica-change---file-rendered-and-consumer-reloaded"
	"agent memory (RSS) and CPU at idle with 100 replicas|MiB, %|engine/idle|agent-at-idle-with-N-replicas"
	"planner: plan for 1,000 observed containers (Go benchmark \`BenchmarkPlan\`, reconciler/)|ns/op, allocs|go|go-micro-benchmarks"
)

# --- machine ------------------------------------------------------------------

c2version() {
	local bin="${ROSTER_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/roster-bench}/compose-$COMPOSE2_VERSION/docker-compose-v2"
	if [[ -x $bin ]]; then
		echo "$("$bin" version --short 2>/dev/null || echo "$COMPOSE2_VERSION") (built from the Go module proxy by bench/compose2.sh)"
	else
		echo "$COMPOSE2_VERSION: not built (see the engine sections)"
	fi
}

c1version() {
	local v pkg
	v=$(timeout 20 docker-compose version --short 2>/dev/null) || { echo "not installed"; return; }
	pkg=$(dpkg-query -W -f '${Version}' docker-compose 2>/dev/null || true)
	echo "$v${pkg:+ (Debian package $pkg)}"
}

nginxversion() {
	local hash
	if ! hash=$(timeout 20 docker image inspect -f '{{index .Config.Labels "dev.roster.debian-image"}}' "$NGINX_IMAGE" 2>/dev/null); then
		echo "$NGINX_IMAGE: not available"
		return
	fi
	echo "$NGINX_IMAGE${hash:+ (Debian bookworm packages, scripts/debian-image.sh)}"
}

# "median M (min–max) over N samples" of the 1-minute load average.
load_summary() {
	sort -g "$WORK/load.txt" | awk -v cores="$(nproc)" '
		{ v[NR] = $1 }
		END {
			if (NR == 0) { print "not sampled"; exit }
			m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			printf "1-minute load average every 10 s: median %.1f (%.1f–%.1f) on %d cores", m, v[1], v[NR], cores
		}'
}

# A sentence when the machine was busy (median load above the core count).
busy_note() {
	local busy
	busy=$(sort -g "$WORK/load.txt" | awk -v cores="$(nproc)" '{ v[NR] = $1 } END { if (NR == 0) exit; m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; if (m > cores) printf "%.1f", m }')
	if [[ -n $busy ]]; then
		echo
		echo "**The machine was busy during this run** (median load $busy on $(nproc) cores: other work shares it, e.g. other sessions' end-to-end tests on the same Docker engine). Absolute times are longer and spreads wider than on an idle machine; the pair-by-pair ratios, taken from runs close in time, are the figures to compare."
	fi
}

machine() {
	local cpu mem docker kernel
	cpu=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)
	mem=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2/1024/1024}' /proc/meminfo)
	docker=$(timeout 20 docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}}), cgroup {{.Server.Os}}' 2>/dev/null || echo "unavailable")
	docker="${docker%, cgroup *}, $(timeout 20 docker info --format 'cgroup v{{.CgroupVersion}} ({{.CgroupDriver}}), storage {{.Driver}}' 2>/dev/null || true)"
	kernel=$(uname -sr)
	cat <<EOF
| | |
|---|---|
| date (UTC) | $(date -u '+%Y-%m-%d %H:%M') |
| mode | $MODE |
| CPU | $(nproc) cores${cpu:+, $cpu} |
| memory | $mem (MemTotal) |
| Docker engine | $docker |
| kernel | $kernel |
| OS | $( . /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-?}") |
| Go | $("$GO" version | sed 's/^go version //') |
| dnsperf | $(dnsperf -h 2>&1 | sed -n 's/^Version //p') |
| CoreDNS | $COREDNS_VERSION (built from the Go module proxy by bench/coredns.sh) |
| docker-compose v1 | $(c1version) |
| docker compose v2 | $(c2version) |
| nginx image | $(nginxversion) |
| load during the run | $(load_summary) |
| roster | $(git describe --tags --always --dirty 2>/dev/null || echo unknown) |
EOF
}

# --- run ----------------------------------------------------------------------

FAILED=()
for s in "${SUITES[@]}"; do
	step "$s ($MODE)"
	if ! "suite_$s"; then
		FAILED+=("$s")
		step "$s FAILED"
	fi
done
ELAPSED=$(($(date +%s) - START))

# A section that exists and is not empty was measured in this run.
have() { [[ -s $WORK/$1.md ]]; }
n_of() { sed -n '1s/^### .* \([0-9][0-9]*\) replica.*/\1/p' "$WORK/$1.md" 2>/dev/null; }

figures() {
	local f what unit sec anchor n
	echo "| figure | unit | status |"
	echo "|---|---|---|"
	for f in "${FIGURES[@]}"; do
		IFS='|' read -r what unit sec anchor <<<"$f"
		n=$(n_of "$sec")
		anchor=${anchor//-N-/-$n-}
		if have "$sec" && grep -q '^Not measured' "$WORK/$sec.md"; then
			echo "| $what | $unit | $(grep -m1 '^Not measured' "$WORK/$sec.md" | sed 's/[.]$//') |"
		elif have "$sec"; then
			echo "| $what | $unit | measured, [below](#$anchor) |"
		else
			echo "| $what | $unit | **not measured: its suite failed in this run** |"
		fi
	done
}

targets() {
	if [[ ! -s $TARGETS ]]; then
		echo "No target was evaluated in this run (the suites that evaluate them failed)."
		return
	fi
	echo "| target | verdict | measured | why, when not met |"
	echo "|---|---|---|---|"
	local name verdict value why
	while IFS=$'\t' read -r name verdict value why; do
		if [[ $verdict == met ]]; then verdict="**met**"; else verdict="**not met**"; fi
		echo "| $name | $verdict | $value | ${why:-} |"
	done <"$TARGETS"
}

{
	cat <<EOF
# Benchmarks

Generated by \`bench/run.sh $MODE\` (\`make $([[ $MODE == full ]] && echo bench || echo bench-quick)\`);
do not edit by hand, re-run it. Every number below was measured in this
run on this machine; a figure that could not be measured says why. What
each figure is and how it is measured: the text under each table, and
[bench/README.md](../bench/README.md).

## Machine

$(machine)
$(busy_note)

## How to reproduce

\`\`\`sh
sudo apt-get install dnsperf docker-compose   # Debian packages; Go and Docker as for roster
make bench                     # full: 5 runs per figure (DNS: 5 x 10 s), Go benchmarks -count 5
make bench-quick               # CI smoke: 2-3 runs, smaller projects, writes bin/bench/benchmarks-quick.md
\`\`\`

The first run builds CoreDNS $COREDNS_VERSION and docker compose $COMPOSE2_VERSION from the
Go module proxy into \`\${XDG_CACHE_HOME:-~/.cache}/roster-bench/\` (a few
minutes each on 2 cores) and, when it is missing, the nginx image from
Debian packages (\`scripts/debian-image.sh roster-nginx:bookworm nginx\`).
This run took $((ELAPSED / 60)) min $((ELAPSED % 60)) s in total.

## Issue 7 figures

$(figures)

## Targets

$(targets)

## Results
EOF
	for sec in "${SECTIONS[@]}"; do
		echo
		if have "$sec"; then
			cat "$WORK/$sec.md"
		else
			echo "### ${sec#engine/}: not measured, the suite failed in this run"
			echo
			echo "See the log of \`bench/run.sh\`. No number is shown rather than an old one."
		fi
	done
	if [[ -s bench/NOTES.md ]]; then
		echo
		cat bench/NOTES.md
	fi
} >"$OUT"

cat "$OUT"
step "wrote $OUT in ${ELAPSED}s"
if ((${#FAILED[@]} > 0)); then
	step "failed suites: ${FAILED[*]}"
	exit 1
fi
