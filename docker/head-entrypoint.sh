#!/bin/sh
# Entrypoint of the head container: the cluster's client key and root's ssh
# client config, then wait (the head only runs what `docker compose exec` asks).
#
# The client key is made once per cluster in the key volume (/sshrun/keys);
# its public half is the nodes' authorized_keys. known_hosts in the same volume
# holds each node's host key, written by the node itself; strict checking.
set -eu
keys=/sshrun/keys
mkdir -p "$keys" /root/.ssh
chmod 0700 /root/.ssh
(
    flock -w 30 9
    if [ ! -s "$keys/id_ed25519" ]; then
        rm -f "$keys/id_ed25519.new" "$keys/id_ed25519.new.pub"
        ssh-keygen -q -t ed25519 -N '' -C "sshrun-compose-head" -f "$keys/id_ed25519.new"
        mv "$keys/id_ed25519.new.pub" "$keys/id_ed25519.pub"
        mv "$keys/id_ed25519.new" "$keys/id_ed25519"
    fi
    cp "$keys/id_ed25519.pub" "$keys/authorized_keys.new"
    chmod 0644 "$keys/authorized_keys.new"
    mv "$keys/authorized_keys.new" "$keys/authorized_keys"
    touch "$keys/known_hosts"
) 9>"$keys/.lock"
ln -sfn "$keys/known_hosts" /root/.ssh/known_hosts
cat >/root/.ssh/config <<CONFIG
# Written by docker/head-entrypoint.sh: the compose cluster's nodes.
Host *
    User root
    IdentityFile $keys/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $keys/known_hosts
    StrictHostKeyChecking yes
    BatchMode yes
CONFIG
echo "head-entrypoint: client key $(cut -d' ' -f1,2 "$keys/id_ed25519.pub")"
trap 'exit 0' TERM INT
while :; do
    sleep 3600 &
    wait $! || true
done
