#!/bin/bash
# dracut module: the parts of Flatcar's first-boot sequence that Debian's ignition module
# (30ignition) leaves to the distribution. Flatcar's own initrd (flatcar/bootengine,
# dracut/30ignition) ships them in its copy of that module; Debian's stays untouched here and
# this module replaces only its generator, whose trigger (ignition.firstboot) Flatcar never
# passes.

check() {
    return 0
}

depends() {
    echo ignition systemd
}

installkernel() {
    # The OEM btrfs, the ESP (vfat, GRUB's flag file), the ROOT ext4, the PXE root, and
    # fw_cfg for Ignition's qemu platform and the tests' choice of initrd flavour, whatever
    # else the kernel-modules module chose.
    hostonly='' instmods btrfs ext4 vfat nls_cp437 nls_ascii nls_utf8 nls_iso8859-1 \
        virtio_blk virtio_pci virtio_scsi qemu_fw_cfg
}

install() {
    # Debian's generator only reacts to ignition.firstboot; ours reads Flatcar's flags.
    rm -f "$initdir$systemdutildir/system-generators/ignition-generator"
    inst_script "$moddir/kato-flatcar-generator" "$systemdutildir/system-generators/kato-flatcar-generator"

    inst_script "$moddir/kato-ignition-setup.sh" /usr/sbin/kato-ignition-setup
    inst_script "$moddir/kato-first-boot-done.sh" /usr/sbin/kato-first-boot-done
    inst_script "$moddir/kato-pxe-root.sh" /usr/sbin/kato-pxe-root
    inst_script "$moddir/kato-setup-root.sh" /usr/sbin/kato-setup-root
    inst_script "$moddir/kato-packet-metadata.sh" /usr/sbin/kato-packet-metadata
    # Debian builds Ignition with SELinux relabelling on; it runs setfiles from the initrd
    # after the files stage, and this root has no policy to label with.
    inst_script "$moddir/setfiles" /usr/sbin/setfiles
    inst_hook shutdown-emergency 10 "$moddir/kato-emergency.sh"

    inst_simple "$moddir/kato-ignition-setup.service" "$systemdsystemunitdir/kato-ignition-setup.service"
    inst_simple "$moddir/kato-first-boot-done.service" "$systemdsystemunitdir/kato-first-boot-done.service"
    inst_simple "$moddir/kato-pxe-root.service" "$systemdsystemunitdir/kato-pxe-root.service"
    inst_simple "$moddir/kato-setup-root.service" "$systemdsystemunitdir/kato-setup-root.service"
    inst_simple "$moddir/flatcar-static-network.service" "$systemdsystemunitdir/flatcar-static-network.service"
    inst_simple "$moddir/flatcar-metadata-hostname.service" "$systemdsystemunitdir/flatcar-metadata-hostname.service"
    inst_simple "$moddir/ignition-fetch-offline-kato.conf" \
        "$systemdsystemunitdir/ignition-fetch-offline.service.d/10-kato-setup.conf"

    inst_multiple mount umount mkdir cp rm sha256sum cut systemd-detect-virt stat ln grep tr \
        mountpoint modprobe curl
    inst_multiple -o journalctl
}
