#!/usr/bin/env bash
# Build a local Debian bookworm base image for the compose cluster, for machines
# that cannot pull from any image registry (only a Debian mirror is needed):
#
#     sudo docker/build-base-image.sh                 # -> sshrun-base:bookworm
#     export SSHRUN_BASE_IMAGE=sshrun-base:bookworm
#     docker compose build
#
# debootstrap (variant minbase) unpacks Debian bookworm with Python 3.11, venv,
# OpenSSH and a few tools into a temporary directory, and `docker import` turns
# that tree into an image. An image that already exists under the name is kept
# (pass --force, or SSHRUN_REBUILD_BASE=1, to build it again). Needs root and
# debootstrap (installed with apt-get when missing).
#
# Environment: SSHRUN_LOCAL_BASE_IMAGE (image name, default sshrun-base:bookworm),
# SSHRUN_DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

image=${SSHRUN_LOCAL_BASE_IMAGE:-sshrun-base:bookworm}
mirror=${SSHRUN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
force=${SSHRUN_REBUILD_BASE:-0}
for arg in "$@"; do
    case $arg in
        --force) force=1 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        -*) echo "build-base-image.sh: unknown option $arg" >&2; exit 2 ;;
        *) image=$arg ;;
    esac
done
packages=python3,python3-venv,openssh-server,openssh-client,ca-certificates,procps,iproute2

say() { echo "build-base-image: $*" >&2; }

if [ "$force" != 1 ] && docker image inspect "$image" >/dev/null 2>&1; then
    say "$image already exists (use --force to rebuild)"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    say "debootstrap needs root: run this script as root (sudo)"
    exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1 \
        || [ ! -e /usr/share/keyrings/debian-archive-keyring.gpg ]; then
    say "installing debootstrap and debian-archive-keyring with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 update -q
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 install -y -q \
        debootstrap debian-archive-keyring
fi

work=$(mktemp -d "${TMPDIR:-/var/tmp}/sshrun-base.XXXXXX")
root=$work/rootfs
cleanup() {
    # debootstrap mounts /proc and /sys in the tree; never leave them behind.
    for m in proc sys dev/pts dev; do
        mountpoint -q "$root/$m" 2>/dev/null && umount -l "$root/$m" || true
    done
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "debootstrap bookworm ($packages) from $mirror into $root"
debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    say "debootstrap failed"
    exit 1
}

# Updates and security, as in Debian's own images; no cached package lists, no
# host keys (every node container makes its own), no machine id.
cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log \
    "$root"/etc/ssh/ssh_host_* "$root"/tmp/* "$root"/var/tmp/*
: >"$root/etc/machine-id"

say "importing the tree as $image"
tar --numeric-owner -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --message "sshrun local base: debootstrap bookworm minbase + $packages" \
    - "$image" >/dev/null
say "done: $image ($(docker image inspect -f '{{.Size}}' "$image") bytes); use it with"
say "  export SSHRUN_BASE_IMAGE=$image"
