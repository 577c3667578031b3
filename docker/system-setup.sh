#!/bin/sh
# What both images need on top of SSHRUN_BASE_IMAGE (run while building).
#
#   system-setup.sh          install the missing packages (apt-get), make /opt/venv
#   system-setup.sh --ca D   add D/*.crt (PEM) to the trust store (pip uses it)
#
# Works on an official python:3.11-slim image (Python in /usr/local, no sshd)
# and on the debootstrapped sshrun-base:bookworm (Debian's python3, sshd there).
set -eu

if [ "${1:-}" = --ca ]; then
    found=0
    for crt in "$2"/*.crt; do
        [ -f "$crt" ] || continue
        found=1
        cp "$crt" "/usr/local/share/ca-certificates/sshrun-$(basename "$crt")"
    done
    if [ "$found" = 1 ]; then
        update-ca-certificates >/dev/null
        echo "system-setup: extra CA certificates added to the trust store"
    fi
    exit 0
fi

need=""
command -v python3 >/dev/null 2>&1 || need="$need python3"
python3 -c 'import ensurepip, venv' 2>/dev/null || need="$need python3-venv"
[ -x /usr/sbin/sshd ] || need="$need openssh-server"
command -v ssh >/dev/null 2>&1 || need="$need openssh-client"
command -v ssh-keygen >/dev/null 2>&1 || need="$need openssh-client"
command -v update-ca-certificates >/dev/null 2>&1 || need="$need ca-certificates"
command -v ps >/dev/null 2>&1 || need="$need procps"
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v flock >/dev/null 2>&1 || need="$need util-linux"
if [ -n "$need" ]; then
    echo "system-setup: installing$need"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $need
    apt-get clean
    rm -rf /var/lib/apt/lists/*
fi

# No host keys in the image: every node container makes its own on first start.
rm -f /etc/ssh/ssh_host_*
mkdir -p /run/sshd /sshrun/keys /workspace
chmod 0755 /sshrun /sshrun/keys

python3 -m venv /opt/venv
python3 -c 'import sys; assert sys.version_info[:2] >= (3, 11), sys.version'
