#!/usr/bin/env bash
# Engine benchmarks: roster vs docker compose v1 (Debian) and v2 (built from
# the Go module proxy) on the real engine, run by bench/composebench.
# Prints the markdown section of each SUITE on stdout (progress on stderr).
#
#   bench/engine.sh quick|full SUITE...     # up noop recreate repair nginx dnsstart template idle
#   TARGETS=/tmp/t.tsv bench/engine.sh full up   # also append the targets' verdicts
#   ENGINE_OUT=DIR bench/engine.sh full up noop   # DIR/up.md, DIR/noop.md; a failed suite does not stop the others
#   bench/engine.sh sweep                   # remove every bench-* container/network/volume
#
# Builds (cheap when cached): bin/bench/roster, bin/bench/sockcount,
# bin/bench/composebench, the fixture image roster-fixture:bench (like the
# e2e harness: static binary + classic `docker build`), compose v2
# (bench/compose2.sh, cached outside the repository) and, for the nginx
# suite, the nginx image from Debian packages (scripts/debian-image.sh).
# Everything it starts is named bench-*; it is removed at the end of each
# suite and again on exit, also on failure or interrupt.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE="${1:-quick}"
shift || true
GO="${GO:-go}"
export GOTOOLCHAIN=local
case "$MODE" in
quick | full) ;;
sweep) set -- sweep; MODE=quick ;;
*) echo "usage: $0 quick|full SUITE... | $0 sweep" >&2; exit 2 ;;
esac
(($# > 0)) || { echo "$0: no suite given" >&2; exit 2; }

: "${FIXTURE_IMAGE:=roster-fixture:bench}"
: "${NGINX_IMAGE:=roster-nginx:bookworm}"
: "${COMPOSE2_VERSION:=v2.40.3}"
export COMPOSE2_VERSION

mkdir -p bin/bench
"$GO" build -o bin/bench/composebench ./bench/composebench
sweep() { timeout 300 bin/bench/composebench sweep >&2 || echo "engine.sh: sweep failed" >&2; }
trap sweep EXIT
trap 'exit 130' INT TERM
if [[ $* == sweep ]]; then
	exit 0
fi

# roster as it is in the tree, built like `make build`.
CGO_ENABLED=0 "$GO" build -ldflags "-X main.version=$(git describe --tags --always --dirty 2>/dev/null || echo dev) -X main.commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
	-o bin/bench/roster ./cmd/roster
"$GO" build -o bin/bench/sockcount ./bench/sockcount

# The fixture image, as the e2e harness builds it.
mkdir -p bin/bench/fixture
CGO_ENABLED=0 "$GO" build -trimpath -ldflags="-s -w" -o bin/bench/fixture/fixture ./e2e/fixture
cp e2e/fixture/Dockerfile bin/bench/fixture/Dockerfile
DOCKER_BUILDKIT=0 timeout 300 docker build -q -t "$FIXTURE_IMAGE" bin/bench/fixture >/dev/null 2>&1 ||
	DOCKER_BUILDKIT=0 timeout 300 docker build -q -t "$FIXTURE_IMAGE" bin/bench/fixture >&2

ARGS=(-mode "$MODE" -roster bin/bench/roster -sockcount bin/bench/sockcount -image "$FIXTURE_IMAGE"
	-targets "${TARGETS:-}")

if command -v docker-compose >/dev/null; then
	ARGS+=(-compose1 "$(command -v docker-compose)")
fi

needs() { local s; for s in "$@"; do [[ " ${SUITES[*]} " == *" $s "* ]] && return 0; done; return 1; }
SUITES=("$@")

if needs up noop recreate repair nginx; then
	if C2=$(bench/compose2.sh); then
		ARGS+=(-compose2 "$C2" -compose2-version "$COMPOSE2_VERSION")
	else
		CACHE="${ROSTER_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/roster-bench}"
		WHY=$(grep -m1 -E 'error|cannot|requires|not found' "$CACHE/compose-$COMPOSE2_VERSION/build.log" 2>/dev/null | cut -c1-300 || true)
		ARGS+=(-compose2-error "the build of github.com/docker/compose/v2@$COMPOSE2_VERSION with $("$GO" env GOVERSION) failed: ${WHY:-see the log of bench/compose2.sh}")
	fi
fi

if needs nginx; then
	if [[ -f examples/nginx-upstreams/compose.yaml ]]; then
		if docker image inspect "$NGINX_IMAGE" >/dev/null 2>&1 ||
			{ [[ $NGINX_IMAGE == roster-nginx:bookworm ]] && timeout 900 scripts/debian-image.sh "$NGINX_IMAGE" nginx >&2; }; then
			ARGS+=(-nginx-image "$NGINX_IMAGE")
		else
			ARGS+=(-nginx-error "$NGINX_IMAGE is not there and could not be built with scripts/debian-image.sh")
		fi
	fi
	ARGS+=(-nginx-example examples/nginx-upstreams)
fi

# Each suite on its own; with ENGINE_OUT=DIR its section goes to DIR/SUITE.md
# (only when it succeeded) and a failed suite does not stop the others.
failed=()
for s in "$@"; do
	if [[ -n ${ENGINE_OUT:-} ]]; then
		mkdir -p "$ENGINE_OUT"
		if timeout 3600 bin/bench/composebench "${ARGS[@]}" "$s" >"$ENGINE_OUT/$s.md.tmp"; then
			mv "$ENGINE_OUT/$s.md.tmp" "$ENGINE_OUT/$s.md"
		else
			rm -f "$ENGINE_OUT/$s.md.tmp"
			failed+=("$s")
		fi
	else
		timeout 3600 bin/bench/composebench "${ARGS[@]}" "$s" || failed+=("$s")
		echo
	fi
done
if ((${#failed[@]} > 0)); then
	echo "engine.sh: failed suites: ${failed[*]}" >&2
	exit 1
fi
