#!/bin/sh
# Makes the local base image localhost/debian-bookworm-minbase without a registry: debootstrap's minbase variant of
# Debian bookworm from the machine's own apt mirror, imported into the project's image storage. Skipped when the
# image is already there. A machine with a registry does not need it: pass BASE=python:3.11-slim to `make image`.
set -eu
IMAGE=${1:-localhost/debian-bookworm-minbase}
if podman image exists "$IMAGE"; then
    echo "base image $IMAGE present"
    exit 0
fi
# the first deb URI of the machine's apt sources (deb822 or one-line format), else Debian's own
MIRROR=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p; s/^deb \(\[[^]]*\] \)\{0,1\}\(http[^ ]*\).*/\2/p' \
    /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | grep -v security | head -n 1)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
ROOTFS=$(mktemp -d)
trap 'rm -rf "$ROOTFS"' EXIT
echo "debootstrap --variant=minbase bookworm from $MIRROR"
debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" >/dev/null
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb
tar --numeric-owner -C "$ROOTFS" -cf - . | podman import --change 'CMD ["/bin/bash"]' - "$IMAGE" >/dev/null
echo "imported $IMAGE"
