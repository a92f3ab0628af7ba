//! Editing the OEM btrfs of a Flatcar-shaped disk: new and changed files, everything else
//! kept, judged by btrfs check, GRUB reading the whole disk, and sgdisk.

use crate::common;

use std::collections::BTreeMap;
use std::process::Command;

use common::btrfs::{TIME, meta};
use common::disk::{fixture_copy, sgdisk_verify};
use kato_image::disk;
use kato_image::fs::btrfs::{read_partition, rewrite_partition};
use kato_image::fs::tree::{Contents, Entry, Kind};

#[test]
fn baking_a_config_keeps_every_other_file_and_partition() {
    let dir = tempfile::tempdir().unwrap();
    let image = fixture_copy(dir.path(), "role.raw");
    let (file, table) = disk::open_table(&image, false).unwrap();
    let before: BTreeMap<u32, String> = disk::partition_digests(&file, &table).unwrap();
    let oem = table.by_name("OEM").unwrap();
    let (old_tree, old_label, old_uuid) = read_partition(&file, oem.start(), oem.len()).unwrap();
    drop(file);

    let config = br#"{"ignition":{"version":"3.3.0"}}"#.to_vec();
    let disk_file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&image)
        .unwrap();
    let (mut tree, label, fsid) = read_partition(&disk_file, oem.start(), oem.len()).unwrap();
    let d = meta(0o755);
    tree.insert("config.ign", Entry::file(meta(0o644), config.clone()), &d)
        .unwrap();
    tree.insert(
        "base/base.ign",
        Entry::file(meta(0o644), config.clone()),
        &d,
    )
    .unwrap();
    let Some(Entry {
        kind: Kind::File(Contents::Bytes(mut grub)),
        ..
    }) = tree.get("grub.cfg").cloned()
    else {
        panic!("no grub.cfg");
    };
    grub.extend_from_slice(b"set linux_append=\"$linux_append kato.role=master\"\n");
    let old = tree.get("grub.cfg").unwrap().meta.clone();
    tree.insert("grub.cfg", Entry::file(old, grub), &d).unwrap();
    let mut written = disk::Ranges::default();
    rewrite_partition(
        &mut disk::Tracked::new(&disk_file, &mut written),
        oem.start(),
        oem.len(),
        &tree,
        (label, fsid),
        TIME,
    )
    .unwrap();
    // Only the OEM partition was written to.
    assert!(
        written
            .iter()
            .all(|(s, e)| s >= oem.start() && e <= oem.end())
    );
    drop(disk_file);

    // Every partition but OEM is byte-identical; the table is intact.
    let (file, table) = disk::open_table(&image, false).unwrap();
    let after = disk::partition_digests(&file, &table).unwrap();
    for (slot, digest) in &before {
        if *slot != oem.slot {
            assert_eq!(&after[slot], digest, "slot {slot} changed");
        }
    }
    assert_ne!(after[&oem.slot], before[&oem.slot]);
    assert!(sgdisk_verify(&image).0);

    // Same label and UUID; the untouched file is the same in every way.
    let (new_tree, label, uuid) = read_partition(&file, oem.start(), oem.len()).unwrap();
    assert_eq!((label.as_str(), uuid), (old_label.as_str(), old_uuid));
    assert_eq!(new_tree.get("oem-release"), old_tree.get("oem-release"));
    assert_eq!(
        new_tree.get("grub.cfg").unwrap().meta,
        old_tree.get("grub.cfg").unwrap().meta
    );

    // btrfs check on the partition, and GRUB reading through the disk's partition table
    // (grub-fstest calls the image loop0; gpt6 is the slot GRUB finds OEM in).
    let part = dir.path().join("oem.btrfs");
    common::disk::extract(&image, oem.start(), oem.len(), &part);
    let (ok, report) = common::btrfs::check(&part);
    assert!(ok, "btrfs check: {report}");
    // Flatcar sets compression=zlib as a property of the OEM's root folder (an xattr of
    // inode 256); the rewritten filesystem keeps it, as btrfs-progs reads it.
    assert_eq!(
        root_xattrs(&part),
        [("btrfs.compression".to_string(), "zlib".to_string())],
        "the OEM's compression property"
    );
    let out = Command::new("grub-fstest")
        .arg(&image)
        .arg("cat")
        .arg("(loop0,gpt6)/grub.cfg")
        .output()
        .unwrap();
    let grub = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "grub-fstest: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(grub.contains("set oem_id=\"qemu\""), "{grub}");
    assert!(grub.contains("kato.role=master"), "{grub}");
    let out = Command::new("grub-fstest")
        .arg(&image)
        .arg("cat")
        .arg("(loop0,gpt6)/config.ign")
        .output()
        .unwrap();
    assert_eq!(out.stdout, config);
}

/// The xattrs of a btrfs image's root folder (inode 256), as `btrfs inspect-internal
/// dump-tree` prints them.
fn root_xattrs(image: &std::path::Path) -> Vec<(String, String)> {
    let out = Command::new("btrfs")
        .args(["inspect-internal", "dump-tree", "-t", "5"])
        .arg(image)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut found = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if !line.contains("key (256 XATTR_ITEM") {
            continue;
        }
        let item: Vec<&str> = lines.by_ref().take(4).collect();
        let field = |prefix: &str| {
            item.iter()
                .find_map(|l| l.trim().strip_prefix(prefix))
                .unwrap_or_default()
                .to_string()
        };
        found.push((field("name: "), field("data ")));
    }
    found
}
