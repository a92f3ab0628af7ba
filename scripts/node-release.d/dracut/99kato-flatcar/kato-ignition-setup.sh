#!/bin/bash
# Puts the baked config where Debian's Ignition looks for a user config (its system config
# folder, /usr/lib/ignition: user.ign, base.d/), as Flatcar's initrd does, and names the
# platform for the Ignition units. Two flavours of Flatcar's initrd (bootengine), chosen by
# QEMU's fw_cfg entry opt/kato/initrd (the tests pass -fw_cfg name=opt/kato/initrd,string=X):
#   copy (default; stable 4593 and older): the OEM partition is mounted by label at a
#        temporary place, config.ign is copied to user.ign and base/base.ign into base.d/;
#        a PXE boot copies from usr/share/oem (else oem) inside the initramfs;
#   link (alpha 4694, beta 4694 and later, bootengine#121): the OEM partition is mounted at
#        /oem as btrfs or ext4 and stays mounted; user.ign is a link to /oem/config.ign and
#        base.d one to /oem/base/; a PXE boot copies the initramfs's oem/ (else usr/share/oem)
#        into a tmpfs at /oem.
# The config's mode and owner are logged: it carries keys and tokens.
set -euo pipefail

dst=/usr/lib/ignition
mkdir -p "$dst"
flavour=copy
modprobe -q qemu_fw_cfg 2>/dev/null || true
entry=/sys/firmware/qemu_fw_cfg/by_name/opt/kato/initrd/raw
[[ -r $entry ]] && flavour=$(tr -d '\n' < "$entry")
echo "kato-ignition-setup: initrd flavour $flavour"

describe() { # FILE: its mode, owner and digest
    echo "kato-ignition-setup: user config $1 mode $(stat -c '%a %u:%g' "$1") sha256 $(sha256sum "$1" | cut -d' ' -f1)"
}

take() { # FOLDER: copy the configs FOLDER holds; says whether it had a user config
    mkdir -p "$dst/base.d"
    [[ -f $1/base/base.ign ]] && cp "$1/base/base.ign" "$dst/base.d/base.ign"
    if [[ -f $1/config.ign ]]; then
        describe "$1/config.ign"
        cp "$1/config.ign" "$dst/user.ign"
        return 0
    fi
    return 1
}

link() { # the newest initrd: Ignition reads /oem through links made when the initrd was built
    ln -snf /oem/config.ign "$dst/user.ign"
    ln -snf /oem/base/ "$dst/base.d"
    if [[ -f /oem/config.ign ]]; then
        describe /oem/config.ign
    else
        echo "kato-ignition-setup: no config.ign in /oem"
    fi
}

case ${KATO_CONFIG_FROM:-}/$flavour in
    oem/copy)
        oem=/mnt/oem
        mkdir -p "$oem"
        mount -o ro /dev/disk/by-label/OEM "$oem"
        trap 'umount "$oem"' EXIT
        take "$oem" || echo "kato-ignition-setup: no config.ign on the OEM partition"
        ;;
    oem/link)
        mkdir -p /oem
        mount -t btrfs -o nodev /dev/disk/by-label/OEM /oem 2>/dev/null ||
            mount -t ext4 -o nodev /dev/disk/by-label/OEM /oem
        link
        ;;
    initramfs/copy)
        for folder in /usr/share/oem /oem; do
            [[ -f $folder/config.ign ]] && describe "$folder/config.ign"
        done
        take /usr/share/oem || take /oem || echo "kato-ignition-setup: no config.ign in the initramfs"
        ;;
    initramfs/link)
        for folder in /usr/share/oem /oem; do
            [[ -f $folder/config.ign ]] && describe "$folder/config.ign"
        done
        staged=/run/kato/initramfs-oem
        mkdir -p "$staged"
        if [[ -d /oem ]]; then cp -a /oem/. "$staged/"; elif [[ -d /usr/share/oem ]]; then cp -a /usr/share/oem/. "$staged/"; fi
        mkdir -p /oem
        mount -t tmpfs -o size=0,mode=755,nodev tmpfs /oem
        cp -a "$staged/." /oem/
        link
        ;;
    *)
        echo "kato-ignition-setup: config source ${KATO_CONFIG_FROM:-none}, flavour $flavour: not known" >&2
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
