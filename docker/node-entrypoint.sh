#!/bin/sh
# Entrypoint of a node container: its own host key, published to the head's
# known_hosts, then sshd in the foreground.
#
# The host key is made on the container's first start and kept in the
# container (a `docker kill` + `docker start` keeps the node's identity; a
# recreated container gets a new one). Its public half goes into the cluster's
# key volume, /sshrun/keys/known_hosts, as "NAME ssh-ed25519 KEY", replacing
# an older line for NAME: the head's strict host-key check uses that file.
set -eu
name=${SSHRUN_NODE_NAME:-$(hostname)}
keys=/sshrun/keys
key=/etc/ssh/ssh_host_ed25519_key

if [ ! -s "$key" ]; then
    rm -f "$key" "$key.pub"
    ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$key"
fi
mkdir -p /run/sshd "$keys"
line="$name $(cut -d' ' -f1,2 "$key.pub")"
(
    flock -w 30 9
    touch "$keys/known_hosts"
    grep -v "^$name " "$keys/known_hosts" >"$keys/known_hosts.$name" || true
    echo "$line" >>"$keys/known_hosts.$name"
    chmod 0644 "$keys/known_hosts.$name"
    mv "$keys/known_hosts.$name" "$keys/known_hosts"
) 9>"$keys/.lock"
echo "node-entrypoint: $name published its host key: $line"
exec /usr/sbin/sshd -D -e
