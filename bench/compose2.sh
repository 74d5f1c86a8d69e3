#!/usr/bin/env bash
# Build docker compose v2 once from the Go module proxy at a pinned version,
# into a cache directory outside the repository; print the binary's path.
# Nothing from compose is committed. Re-runs are instant (the binary is kept).
# On failure the reason is kept in DIR/build.log and the exit code is 1.
#
#   bench/compose2.sh      -> prints e.g. ~/.cache/roster-bench/compose-v2.40.3/docker-compose-v2
#   COMPOSE2_VERSION=v2.40.2 bench/compose2.sh
#
# The module's own source (go mod download) is built as the main module, so
# its go.mod and go.sum are used as upstream pins them (like its Makefile:
# `go build -trimpath -ldflags "-X .../internal.Version=V" ./cmd`).
set -euo pipefail

COMPOSE2_VERSION="${COMPOSE2_VERSION:-v2.40.3}"
GO="${GO:-go}"
export GOTOOLCHAIN=local # never download another Go toolchain
CACHE="${ROSTER_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/roster-bench}"
DIR="$CACHE/compose-$COMPOSE2_VERSION"
BIN="$DIR/docker-compose-v2"
LOG="$DIR/build.log"

if [[ -x "$BIN" ]]; then
	echo "$BIN"
	exit 0
fi

mkdir -p "$DIR"
TMP="$(mktemp -d)"
trap 'chmod -R u+w "$TMP" 2>/dev/null; rm -rf "$TMP"' EXIT

echo "compose2.sh: building docker compose $COMPOSE2_VERSION (first run only; 5-10 minutes on 2 cores; log: $LOG)" >&2
if ! (
	set -e
	cd "$TMP"
	# A throw-away module only to download the pinned source through the proxy.
	GOFLAGS=-mod=mod "$GO" mod init tmp
	src=$(GOFLAGS=-mod=mod "$GO" mod download -json "github.com/docker/compose/v2@$COMPOSE2_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[[ -d "$src" ]] || { echo "no source directory from go mod download"; exit 1; }
	cp -r "$src" "$TMP/compose"
	chmod -R u+w "$TMP/compose"
	cd "$TMP/compose"
	CGO_ENABLED=0 GOFLAGS=-mod=mod "$GO" build -trimpath \
		-ldflags "-w -X github.com/docker/compose/v2/internal.Version=$COMPOSE2_VERSION" \
		-o "$BIN.tmp" ./cmd
) >"$LOG" 2>&1; then
	echo "compose2.sh: build of docker compose $COMPOSE2_VERSION failed; last lines of $LOG:" >&2
	tail -20 "$LOG" >&2
	exit 1
fi
mv "$BIN.tmp" "$BIN"
"$BIN" version >&2
echo "$BIN"
