#!/usr/bin/env bash
# debian-image.sh TAG [PACKAGE...]
#
# Builds the Docker image TAG from Debian bookworm packages, with no
# registry: `debootstrap --variant=minbase [--include=PACKAGE,...]` into a
# temporary root file system, then `docker import` of its tarball. The image
# carries the label dev.roster.debian-image=HASH (HASH: the sorted package
# list and this script's version); when TAG already exists with the same
# label nothing is done, so calling it again is cheap (about 2 minutes when
# it does build). Default command: /bin/bash.
#
# The mirror is the machine's own apt source (the first `URIs:` of
# /etc/apt/sources.list.d/*.sources serving the suite, else the first `deb`
# line of /etc/apt/sources.list); DEBIAN_MIRROR overrides it. Needs root,
# debootstrap and flock. Safe to run concurrently: one lock per tag.
#
# Examples:
#   scripts/debian-image.sh roster-debian:bookworm
#   scripts/debian-image.sh roster-nginx:bookworm nginx
#   scripts/debian-image.sh roster-rabbitmq:bookworm rabbitmq-server
set -euo pipefail

readonly VERSION="roster-debian-image/1"
readonly SUITE=bookworm
readonly LABEL=dev.roster.debian-image

me=$(basename "$0")
die() { echo "$me: $*" >&2; exit 1; }

if (($# < 1)) || [[ $1 == -h || $1 == --help || $1 == -* ]]; then
  echo "usage: $me TAG [PACKAGE...]   (e.g. $me roster-nginx:$SUITE nginx)" >&2
  exit 2
fi
tag=$1; shift
[[ $tag == *:* ]] || tag="$tag:latest"
for p in "$@"; do
  [[ $p =~ ^[a-z0-9][a-z0-9+.-]+$ ]] || die "not a Debian package name: '$p'"
done

# The sorted, de-duplicated package list, comma-separated.
pkgs=$(printf '%s\n' "$@" | sed '/^$/d' | LC_ALL=C sort -u | paste -sd, -)
hash=$(printf '%s\n%s\n%s\n' "$VERSION" "$SUITE" "$pkgs" | sha256sum | cut -c1-32)

current() {
  [[ $(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$tag" 2>/dev/null) == "$hash" ]]
}

start=$SECONDS
if current; then
  echo "$me: $tag is up to date ($LABEL=$hash)" >&2
  exit 0
fi

# One build per tag at a time; a second caller waits, then finds the image.
lockdir=${TMPDIR:-/tmp}/roster-debian-image.locks
mkdir -p "$lockdir"
exec 9>"$lockdir/${tag//[^A-Za-z0-9_.-]/_}.lock"
if ! flock -n 9; then
  echo "$me: another build of $tag is running; waiting for it" >&2
  flock 9
fi
if current; then
  echo "$me: $tag is up to date ($LABEL=$hash), built by another caller" >&2
  exit 0
fi

((EUID == 0)) || die "building $tag needs root (debootstrap)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
docker version >/dev/null 2>&1 || die "the Docker engine is not reachable"

# The machine's apt mirror for $SUITE.
mirror() {
  if [[ -n ${DEBIAN_MIRROR:-} ]]; then
    echo "$DEBIAN_MIRROR"
    return
  fi
  local f m=""
  shopt -s nullglob
  for f in /etc/apt/sources.list.d/*.sources; do
    # deb822 stanzas: the first enabled `Types: deb` stanza whose Suites
    # include $SUITE, else the first URIs of any stanza.
    m=$(awk -v suite="$SUITE" '
      function flush() {
        if (uri != "" && deb && enabled && hassuite) { want = uri; found = 1 }
        if (uri != "" && any == "") any = uri
        uri = ""; deb = 0; hassuite = 0; enabled = 1
      }
      BEGIN { enabled = 1 }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); if (found) exit; next }
      tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
      tolower($1) == "uris:" { uri = $2 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) hassuite = 1 }
      tolower($1) == "enabled:" && tolower($2) == "no" { enabled = 0 }
      END { if (!found) flush(); print (want != "" ? want : any) }' "$f")
    [[ -n $m ]] && break
  done
  if [[ -z $m && -r /etc/apt/sources.list ]]; then
    # deb [options] URI suite components
    m=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
  fi
  [[ -n $m ]] || die "no Debian mirror in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list (set DEBIAN_MIRROR)"
  echo "${m%/}"
}
mirror=$(mirror)

work=$(mktemp -d "${ROSTER_DEBIAN_WORKDIR:-/var/tmp}/roster-debian-image.XXXXXX")
rootfs=$work/rootfs
child=""
cleanup() {
  # Stop an interrupted debootstrap (its own process group: dpkg and the
  # downloads too) before touching its files.
  if [[ -n $child ]] && kill -0 "$child" 2>/dev/null; then
    kill -TERM -- "-$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  # debootstrap mounts /proc and /sys inside the root file system; an
  # interrupted run can leave them mounted: unmount before removing.
  local m
  while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done < <(awk -v d="$work/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r)
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "$me: building $tag from $SUITE${pkgs:+ + $pkgs} (mirror $mirror)" >&2
args=(--variant=minbase)
[[ -n $pkgs ]] && args+=("--include=$pkgs")
# In the background (so that a signal interrupts the wait) and in its own
# session (so that cleanup can stop the whole process group).
setsid -w debootstrap "${args[@]}" "$SUITE" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 </dev/null &
child=$!
if ! wait "$child"; then
  child=""
  tail -n 40 "$work/debootstrap.log" >&2
  [[ -f $rootfs/debootstrap/debootstrap.log ]] && tail -n 20 "$rootfs/debootstrap/debootstrap.log" >&2
  die "debootstrap failed for $tag (see above)"
fi
child=""

# Smaller image: no package cache, no apt lists, no logs.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
  "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* "$rootfs"/tmp/* 2>/dev/null || true

id=$(tar --numeric-owner --xattrs -C "$rootfs" -c . |
  docker import \
    -c "LABEL $LABEL=$hash" \
    -c "LABEL dev.roster.debian-packages=${pkgs:-minbase}" \
    -c 'CMD ["/bin/bash"]' \
    -m "$me $SUITE minbase${pkgs:+ + $pkgs}" - "$tag")
echo "$me: built $tag (${id#sha256:}) in $((SECONDS - start))s" >&2
