#!/usr/bin/env bash
# Build CoreDNS once from the Go module proxy at a pinned version, into a
# cache directory outside the repository; print the binary's path.
# Nothing from CoreDNS is committed. Re-runs are instant (the binary is kept).
#
#   bench/coredns.sh            -> prints e.g. ~/.cache/roster-bench/coredns-v1.14.7/coredns
#   COREDNS_VERSION=v1.15.0 bench/coredns.sh
set -euo pipefail

COREDNS_VERSION="${COREDNS_VERSION:-v1.14.7}"
GO="${GO:-go}"
export GOTOOLCHAIN=local # never download another Go toolchain
CACHE="${ROSTER_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/roster-bench}"
DIR="$CACHE/coredns-$COREDNS_VERSION"
BIN="$DIR/coredns"

if [[ -x "$BIN" ]]; then
	echo "$BIN"
	exit 0
fi

mkdir -p "$DIR"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "coredns.sh: building CoreDNS $COREDNS_VERSION (first run only; several minutes on 2 cores)" >&2
(
	cd "$TMP"
	# A throw-away module so nothing touches roster's go.mod / go.sum.
	GOFLAGS=-mod=mod "$GO" mod init tmp >/dev/null 2>&1
	GOFLAGS=-mod=mod "$GO" get "github.com/coredns/coredns@$COREDNS_VERSION" >&2
	CGO_ENABLED=0 GOFLAGS=-mod=mod "$GO" build -trimpath -o "$BIN.tmp" github.com/coredns/coredns >&2
)
mv "$BIN.tmp" "$BIN"
"$BIN" -version >&2
echo "$BIN"
