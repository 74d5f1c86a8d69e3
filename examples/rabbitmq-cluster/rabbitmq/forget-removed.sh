#!/bin/sh
# forget-removed.sh [GRACE]: the reload action of rabbitmq.conf
# (compose.yaml, x-roster.templates). roster runs it in every running rabbit
# container each time the rendered file changes, i.e. each time a slot of
# the rabbit service appears or disappears.
#
# It removes from the cluster (rabbitmqctl forget_cluster_node) the members
# that `roster scale` removed, so that a scale down leaves no stopped ghost
# node in `rabbitmqctl cluster_status`. A member is forgotten when, for
# GRACE seconds in a row (default 30), it is
#   - no longer listed in the rendered rabbitmq.conf (its slot is gone), and
#   - not running (as the cluster sees it).
# A replica that is only being recreated, or that roster brings back after a
# crash or a `docker rm -f`, disappears from the file for a moment and is
# listed again long before GRACE: it is never forgotten.
#
# Only one node acts: the first running cluster member listed in the file
# (every node computes the same one). The waiting is done by a background
# loop in that container, so this script returns at once; its messages go
# to the container's log (docker logs). Nothing here is specific to a RabbitMQ
# image: it needs sh, coreutils, sed, grep and rabbitmqctl.
set -eu

grace=${1:-30}
rendered=/etc/roster-rabbitmq/rendered/rabbitmq.conf
me=rabbit@$(hostname)
state=/tmp/forget-removed # one file per candidate: when it was first seen
pending=$state/.loop      # held by the background loop

log() { echo "forget-removed.sh ($me): $*"; }

# to_container_log copies its input to the container's log (docker logs)
# through the FIFO start.sh reads (see there), or drops it.
to_container_log() {
	exec 2>/dev/null
	if [ -p /run/container-log ]; then
		exec cat 1<>/run/container-log
	fi
	exec cat >/dev/null
}

# candidates prints, one per line, the cluster members that are stopped and
# not listed in the rendered file, when this node is the one that acts;
# nothing otherwise (also when this node does not run yet).
candidates() {
	status=$(rabbitmqctl -q cluster_status --formatter json 2>/dev/null) || return 0
	tmp=$(mktemp -d)
	sed -n 's/^cluster_formation\.classic_config\.nodes\.[0-9]* *= *\([^ ]*\).*$/\1/p' "$rendered" >"$tmp/listed" 2>/dev/null || true
	# A file that does not list this node is not one to act on.
	if grep -Fqx "$me" "$tmp/listed"; then
		members disk_nodes >"$tmp/members"
		members running_nodes >"$tmp/running"
		actor=$(grep -Fx -f "$tmp/listed" "$tmp/running" | sort | head -n 1)
		if [ "$actor" = "$me" ]; then
			grep -Fvx -f "$tmp/listed" "$tmp/members" | grep -Fvx -f "$tmp/running" || true
		fi
	fi
	rm -rf "$tmp"
}

# members KEY prints the node names of a list of $status (the JSON of
# cluster_status: disk_nodes, running_nodes), one per line.
members() {
	printf '%s\n' "$status" | tr -d '\n' |
		sed -n "s/.*\"$1\": *\[\([^]]*\)\].*/\1/p" | tr ',' '\n' | tr -d '" ' | sed '/^$/d'
}

# loop forgets the candidates once they have been candidates for GRACE
# seconds in a row, and returns when there are none left.
loop() {
	while :; do
		now=$(date +%s)
		found=$(candidates)
		for f in "$state"/*; do
			[ -e "$f" ] || continue
			printf '%s\n' "$found" | grep -Fqx "$(basename "$f")" || {
				log "$(basename "$f") is back (listed or running): not forgetting it"
				rm -f "$f"
			}
		done
		[ -n "$found" ] || return 0
		for n in $found; do
			if [ ! -e "$state/$n" ]; then
				echo "$now" >"$state/$n"
				log "$n is stopped and its slot was removed: forgetting it in ${grace}s unless it comes back"
			elif [ $((now - $(cat "$state/$n"))) -ge "$grace" ]; then
				log "rabbitmqctl forget_cluster_node $n"
				if rabbitmqctl forget_cluster_node "$n"; then
					rm -f "$state/$n"
				fi
			fi
		done
		sleep 5
	done
}

[ -n "$(candidates)" ] || exit 0
mkdir -p "$state"
# One loop at a time: a loop already running reads everything again.
mkdir "$pending" 2>/dev/null || exit 0
(
	trap 'rmdir "$pending" 2>/dev/null || true' EXIT
	while :; do
		loop
		# A run of this script that started while the loop was ending saw
		# it still pending and left: look once more after letting go.
		rmdir "$pending"
		[ -n "$(candidates)" ] && mkdir "$pending" 2>/dev/null || exit 0
	done
) </dev/null 2>&1 | to_container_log &
