#!/bin/bash
# Stand-in for Flatcar's initrd-setup-root-after-ignition (bootengine
# dracut/99setup-root), on every boot, as far as kato-image's images depend on it:
#   - the OEM sysext: ID= from /oem/oem-release; when /oem/sysext/active-oem-ID exists, the
#     image /oem/sysext/oem-ID-VERSION.raw (VERSION from the root's os-release) is linked as
#     /etc/extensions/oem-ID.raw (an absolute link, valid after switch-root); without the
#     image, Flatcar downloads it and fails the boot when it cannot;
#   - the optional extensions named in /etc/flatcar/enabled-sysext.conf (one per line, `#`
#     comments, `-NAME` takes back one /usr/share/flatcar/enabled-sysext.conf enables): each
#     must be at /etc/flatcar/sysext/flatcar-NAME-VERSION.raw (an `-e` test under /sysroot,
#     so a link there is followed from the initrd), and is then linked as
#     /etc/extensions/flatcar-NAME.raw; a missing one is downloaded from the update server
#     (or flatcar.release_file_server_url), and a failed download fails the boot.
# This machine has no network: every download fails, as it would on an air-gapped site.
set -euo pipefail
root=/sysroot
VERSION=$(. "$root/usr/lib/os-release" && echo "$VERSION")
BOARD=$(. "$root/usr/lib/os-release" && echo "${FLATCAR_BOARD:-amd64-usr}")

download() { # NAME: what Flatcar does for a missing extension, with no network to do it on
    local url=https://update.release.flatcar-linux.net/$BOARD/$VERSION/${1%.raw}.gz word
    for word in $(</proc/cmdline); do
        case $word in flatcar.release_file_server_url=?*) url=${word#*=}/$BOARD/$VERSION/${1%.raw}.gz ;; esac
    done
    echo "kato-setup-root: $1 is not on this machine; downloading $url"
    if curl -fsS --connect-timeout 5 --max-time 20 -o /dev/null "$url"; then
        echo "kato-setup-root: downloaded $url, but this stand-in cannot verify update payloads" >&2
    fi
    echo "kato-setup-root: cannot download $url: failing boot" >&2
    exit 1
}

oem=$root/oem
mounted=
if [[ -e /dev/disk/by-label/OEM ]] && ! mountpoint -q "$oem"; then
    mkdir -p "$oem"
    mount -t btrfs -o nodev /dev/disk/by-label/OEM "$oem"
    mounted=1
fi
trap 'if [[ -n $mounted ]]; then umount "$oem"; fi' EXIT

oem_id=$({ grep -m 1 -o '^ID=.*' "$oem/oem-release" 2>/dev/null || true; } | cut -d= -f2)
link=$root/etc/extensions/oem-$oem_id.raw
if [[ -n $oem_id && -e $oem/sysext/active-oem-$oem_id ]]; then
    image=/oem/sysext/oem-$oem_id-$VERSION.raw
    [[ -e $root$image ]] || download "oem-$oem_id.raw"
    mkdir -p "$root/etc/extensions"
    ln -fs "$image" "$link"
    echo "kato-setup-root: OEM sysext $image linked as /etc/extensions/oem-$oem_id.raw"
elif [[ -n $oem_id ]]; then
    rm -f "$link"
fi

names=$(grep -h -o '^[^#]*' "$root/etc/flatcar/enabled-sysext.conf" "$root/usr/share/flatcar/enabled-sysext.conf" 2>/dev/null |
    tr -d ' \t' | grep -v '^$' | grep -v '^-' |
    grep -v -x -f <(grep -o '^-[^#]*' "$root/etc/flatcar/enabled-sysext.conf" 2>/dev/null | tr -d ' \t' | cut -c2-; echo '') || true)
for name in $names; do
    active=/etc/flatcar/sysext/flatcar-$name-$VERSION.raw
    [[ -e $root$active ]] || download "flatcar-$name.raw"
    mkdir -p "$root/etc/extensions"
    ln -fs "$active" "$root/etc/extensions/flatcar-$name.raw"
    echo "kato-setup-root: extension $name: $active linked as /etc/extensions/flatcar-$name.raw"
done
