#!/bin/sh
# start.sh: the command of the rabbit service (compose.yaml). It runs as root
# in the official rabbitmq image and in an image of Debian's rabbitmq-server
# package alike, and:
#   1. installs the Erlang cookie from the secret erlang_cookie as
#      /var/lib/rabbitmq/.erlang.cookie (owner rabbitmq, mode 0400): every
#      node of a cluster needs the same cookie;
#   2. waits until roster has rendered rabbitmq.conf with this node in the
#      peer list (the agent renders it right after `roster up -d` creates the
#      containers) and installs it as /etc/rabbitmq/rabbitmq.conf;
#   3. moves aside the data of a node the cluster has forgotten: a slot
#      removed by `roster scale` (and forgotten by forget-removed.sh) keeps
#      its volume, and when the slot comes back its old database would be
#      refused by the cluster; without it the node joins as a new member;
#   4. runs rabbitmq-server as user rabbitmq, in the foreground, so that
#      `docker stop` (SIGTERM) stops the node cleanly.
set -eu

dir=/etc/roster-rabbitmq
rendered=$dir/rendered/rabbitmq.conf
data=/var/lib/rabbitmq
me=rabbit@$(hostname)

log() { echo "start.sh ($me): $*" >&2; }

# 1. The cookie.
rm -f "$data/.erlang.cookie"
(umask 077 && tr -d '\r\n' </run/secrets/erlang_cookie >"$data/.erlang.cookie")
chown rabbitmq:rabbitmq "$data" "$data/.erlang.cookie"
chmod 0400 "$data/.erlang.cookie"
# Debian's package logs the upgrade log to /var/log/rabbitmq even when the
# rest goes to stdout (RABBITMQ_LOGS=-).
mkdir -p /var/log/rabbitmq
chown rabbitmq:rabbitmq /var/log/rabbitmq

# The container's log (docker logs) is the stdout of PID 1. Commands that
# roster runs later with `docker exec` (forget-removed.sh) cannot open it
# once the server runs as user rabbitmq: they write to this FIFO, which a
# background cat copies to the log.
rm -f /run/container-log
mkfifo -m 0600 /run/container-log
cat 0<>/run/container-log &

# 2. The configuration.
waited=0
until grep -q "^cluster_formation\.classic_config\.nodes\.[0-9]* *= *$me\$" "$rendered" 2>/dev/null; do
	[ "$waited" -gt 0 ] || log "waiting for roster to render $rendered with $me"
	waited=$((waited + 1))
	if [ "$waited" -gt 300 ]; then
		log "$rendered does not list $me after 300s: is the roster agent running (roster up -d)?"
		exit 1
	fi
	sleep 1
done
cp "$rendered" /etc/rabbitmq/rabbitmq.conf
log "installed rabbitmq.conf: peers $(sed -n 's/^cluster_formation\.classic_config\.nodes\.[0-9]* *= *//p' "$rendered" | tr '\n' ' ')"

# 3. The data of a forgotten node. Only when a peer answers and none of
# those that answer counts this node as a member (after a full stop no peer
# answers: the data is kept).
db=$data/mnesia/$me
if [ -d "$db" ] && [ -n "$(ls -A "$db")" ]; then
	member=no answered=
	for peer in $(sed -n 's/^cluster_formation\.classic_config\.nodes\.[0-9]* *= *//p' "$rendered"); do
		[ "$peer" != "$me" ] || continue
		status=$(rabbitmqctl -q -n "$peer" --timeout 10 cluster_status --formatter json 2>/dev/null) || continue
		answered="$answered $peer"
		case $status in
		*"\"$me\""*) member=yes && break ;;
		esac
	done
	if [ "$member" = no ] && [ -n "$answered" ]; then
		aside=$data/mnesia/forgotten-$(date +%Y%m%dT%H%M%S)
		log "the cluster of$answered no longer has $me as a member: moving its old data to $aside and joining as a new member"
		mkdir -p "$aside"
		mv "$db" "$aside/"
		[ ! -e "$db-feature_flags" ] || mv "$db-feature_flags" "$aside/"
	fi
fi

# 4. The server.
cd "$data"
if command -v docker-entrypoint.sh >/dev/null 2>&1; then
	# The official image: its entrypoint fixes the data's owner and drops
	# to user rabbitmq.
	exec docker-entrypoint.sh rabbitmq-server
fi
if [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
	# Debian's package: /usr/sbin/rabbitmq-server would run the server
	# under su, which does not pass SIGTERM on from PID 1.
	exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups \
		env HOME="$data" /usr/lib/rabbitmq/bin/rabbitmq-server
fi
exec rabbitmq-server
