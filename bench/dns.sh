#!/usr/bin/env bash
# DNS benchmark: roster's DNS (bench/dnsserve) vs CoreDNS's hosts plugin,
# same 50 names, dnsperf, alternating runs. Prints a markdown section on
# stdout (progress on stderr).
#
#   bench/dns.sh quick      # 3 runs x 3 s per figure and server
#   bench/dns.sh full       # 5 runs x 10 s
#   RUNS=7 DURATION=20s RATE=20000 bench/dns.sh full
set -euo pipefail
cd "$(dirname "$0")/.."

MODE="${1:-quick}"
GO="${GO:-go}"
case "$MODE" in
quick) : "${RUNS:=3}" "${DURATION:=3s}" ;;
full) : "${RUNS:=5}" "${DURATION:=10s}" ;;
*) echo "usage: $0 quick|full" >&2; exit 2 ;;
esac
: "${RATE:=10000}" "${CLIENTS:=4}" "${NAMES:=50}"
export COREDNS_VERSION="${COREDNS_VERSION:-v1.14.7}"

command -v dnsperf >/dev/null || { echo "dns.sh: dnsperf not found (apt-get install dnsperf)" >&2; exit 1; }

mkdir -p bin/bench
CGO_ENABLED=0 "$GO" build -o bin/bench/dnsserve ./bench/dnsserve
"$GO" build -o bin/bench/dnsbench ./bench/dnsbench
COREDNS="$(bench/coredns.sh)"

exec bin/bench/dnsbench -roster bin/bench/dnsserve -coredns "$COREDNS" -coredns-version "$COREDNS_VERSION" \
	-runs "$RUNS" -duration "$DURATION" -rate "$RATE" -clients "$CLIENTS" -n "$NAMES" -targets "${TARGETS:-}"
