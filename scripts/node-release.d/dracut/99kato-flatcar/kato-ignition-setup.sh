#!/bin/bash
# Puts the baked config where Debian's Ignition looks for a user config (its system config
# folder, /usr/lib/ignition: user.ign, base.d/), as Flatcar's ignition-setup does, and names
# the platform for the Ignition units.
set -euo pipefail

dst=/usr/lib/ignition
mkdir -p "$dst/base.d"

take() { # FOLDER: copy the configs FOLDER holds; says whether it had a user config
    [[ -f $1/base/base.ign ]] && cp "$1/base/base.ign" "$dst/base.d/base.ign"
    if [[ -f $1/config.ign ]]; then
        cp "$1/config.ign" "$dst/user.ign"
        echo "kato-ignition-setup: user config $1/config.ign sha256 $(sha256sum "$dst/user.ign" | cut -d' ' -f1)"
        return 0
    fi
    return 1
}

case ${KATO_CONFIG_FROM:-} in
    oem)
        # Read-only: nothing in the initrd has a reason to change the OEM filesystem here.
        oem=/run/kato/oem
        mkdir -p "$oem"
        mount -t btrfs -o ro /dev/disk/by-label/OEM "$oem"
        trap 'umount "$oem"' EXIT
        take "$oem" || echo "kato-ignition-setup: no config.ign on the OEM partition"
        ;;
    initramfs)
        # Appended initrds carry the config at usr/share/oem (older Flatcar) or oem (newer).
        take /usr/share/oem || take /oem || echo "kato-ignition-setup: no config.ign in the initramfs"
        ;;
    *)
        echo "kato-ignition-setup: KATO_CONFIG_FROM is neither oem nor initramfs" >&2
        exit 1
        ;;
esac

# The platform follows the OEM's id, else the hypervisor, as on Flatcar; a user config in
# /usr/lib/ignition wins over any platform's, so the platform only matters without one.
platform=metal
case $(systemd-detect-virt 2>/dev/null || true) in kvm | qemu) platform=qemu ;; esac
for word in $(</proc/cmdline); do
    case $word in flatcar.oem.id=?* | coreos.oem.id=?*) platform=${word#*=} ;; esac
done
case $platform in ec2) platform=aws ;; gce) platform=gcp ;; pxe) platform=metal ;; esac
printf 'OEM_ID=%s\nPLATFORM_ID=%s\n' "$platform" "$platform" > /run/ignition.env
echo "kato-ignition-setup: platform $platform"
