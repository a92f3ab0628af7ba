#!/bin/bash
# Flatcar's PXE root is a tmpfs with /usr from a squashfs inside its initramfs; a Debian root
# is too big for that, so /usr comes read-only from a disk labelled ROOT (the release's
# pxe-root.raw) and the rest of that disk is copied into the tmpfs, so the machine writes
# only to RAM (and Docker's overlay2 has a real filesystem under /var/lib/docker).
set -euo pipefail
lower=/run/kato/pxe-lower
mkdir -p "$lower"
mount -t ext4 -o ro,noload /dev/disk/by-label/ROOT "$lower"
for entry in "$lower"/* "$lower"/.[!.]*; do
    [[ -e $entry || -L $entry ]] || continue
    case ${entry##*/} in
        usr) mkdir -p /sysroot/usr ;;
        lost+found) ;;
        boot) mkdir -p /sysroot/boot ;;
        *) cp -a "$entry" /sysroot/ ;;
    esac
done
mount --bind "$lower/usr" /sysroot/usr
# Flatcar's PXE root has the initramfs's OEM files at /oem (oem/, else usr/share/oem/), in RAM.
mkdir -p /sysroot/oem
if [[ -d /oem ]]; then cp -a /oem/. /sysroot/oem/; elif [[ -d /usr/share/oem ]]; then cp -a /usr/share/oem/. /sysroot/oem/; fi
echo "kato-pxe-root: /usr from /dev/disk/by-label/ROOT (read-only), the rest in RAM"
