#!/bin/bash
# GRUB adds flatcar.first_boot=detected for as long as the ESP holds the flag, so a
# provisioned machine must lose it now, in the initrd, before anything can reboot it. A flag
# that cannot be removed fails the boot rather than letting Ignition run twice.
set -euo pipefail
esp=/run/kato/esp
mkdir -p "$esp"
mount -t vfat /dev/disk/by-label/EFI-SYSTEM "$esp"
trap 'umount "$esp"' EXIT
found=0
for flag in "$esp/flatcar/first_boot" "$esp/coreos/first_boot"; do
    if [[ -e $flag ]]; then
        rm -f "$flag"
        found=1
        echo "kato-first-boot-done: removed ${flag#"$esp"/} from the ESP"
    fi
done
if ((!found)); then
    echo "kato-first-boot-done: GRUB said first boot, but the ESP has no flag to remove" >&2
    exit 1
fi
