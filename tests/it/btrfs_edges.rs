//! btrfs writer edge cases, each judged by btrfs check, btrfs restore, the kernel and our
//! reader.

use crate::common;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::btrfs::*;
use kato_image::fs::btrfs::{Filesystem, WriteError, WriteOptions, write};
use kato_image::fs::tree::{Contents, Entry, FileTree, Kind};

fn judge(tree: &FileTree, size: u64) {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("fs");
    make_image(tree, &image, size, "EDGE");
    let (ok, report) = check(&image);
    assert!(ok, "btrfs check: {report}");
    let restored = dir.path().join("restored");
    std::fs::create_dir(&restored).unwrap();
    restore(&image, &restored);
    assert_folder_matches_with(&restored, tree, false, false);
    with_kernel_mount(&image, "ro", |mount| {
        assert_folder_matches(mount, tree, true)
    });
    let read = Filesystem::open(std::fs::File::open(&image).unwrap())
        .unwrap()
        .read_tree()
        .unwrap();
    assert_eq!(read.walk().len(), tree.walk().len());
}

fn data(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 11) as u8)
        .collect()
}

#[test]
fn empty_files_empty_folders_and_the_inline_limit() {
    let mut tree = FileTree::new(meta(0o755));
    let d = meta(0o755);
    tree.insert("empty-file", Entry::file(meta(0o644), Vec::new()), &d)
        .unwrap();
    tree.insert("empty-dir", Entry::dir(meta(0o700)), &d)
        .unwrap();
    for len in [
        1usize, 2047, 2048, 2049, 4095, 4096, 4097, 8191, 8192, 131_072, 131_073,
    ] {
        tree.insert(
            &format!("sizes/{len}"),
            Entry::file(meta(0o644), data(len, len as u32)),
            &d,
        )
        .unwrap();
    }
    judge(&tree, 128 << 20);
}

#[test]
fn long_names_deep_folders_symlinks_and_xattrs() {
    let mut tree = FileTree::new(meta(0o755));
    let d = meta(0o755);
    let long = "n".repeat(255);
    tree.insert(
        &format!("{long}/{long}"),
        Entry::file(meta(0o644), b"long".to_vec()),
        &d,
    )
    .unwrap();
    let deep: Vec<String> = (0..120).map(|i| format!("d{i}")).collect();
    tree.insert(
        &format!("{}/bottom", deep.join("/")),
        Entry::file(meta(0o600), b"deep".to_vec()),
        &d,
    )
    .unwrap();
    tree.insert("links/relative", Entry::symlink(meta(0o777), b"../n"), &d)
        .unwrap();
    tree.insert(
        "links/absolute",
        Entry::symlink(meta(0o777), b"/usr/share/oem/config.ign"),
        &d,
    )
    .unwrap();
    tree.insert(
        "links/long",
        Entry::symlink(meta(0o777), "x".repeat(4095).as_bytes()),
        &d,
    )
    .unwrap();
    let mut xattrs = meta(0o644);
    for i in 0..20 {
        xattrs.xattrs.insert(
            format!("user.attr{i}").into_bytes(),
            data(100 + i * 50, i as u32),
        );
    }
    xattrs.xattrs.insert(b"user.big".to_vec(), data(3000, 9));
    tree.insert("xattrs", Entry::file(xattrs, b"has xattrs".to_vec()), &d)
        .unwrap();
    judge(&tree, 128 << 20);
}

#[test]
fn ten_thousand_files_make_multi_level_trees() {
    let mut tree = FileTree::new(meta(0o755));
    let d = meta(0o755);
    for i in 0..10_000 {
        let len = if i % 100 == 0 { 5000 } else { i % 300 };
        tree.insert(
            &format!("many/f{i:05}"),
            Entry::file(meta(0o644), data(len, i as u32)),
            &d,
        )
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("fs");
    make_image(&tree, &image, 128 << 20, "MANY");
    assert_eq!(grub_cat(&image, "/many/f09999"), data(9999 % 300, 9999));
    judge(&tree, 128 << 20);
}

fn host_file(dir: &Path, name: &str, len: u64) -> Entry {
    use std::io::Write;
    let path = dir.join(name);
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let block = data(1 << 20, len as u32);
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    file.flush().unwrap();
    Entry {
        meta: meta(0o644),
        kind: Kind::File(Contents::Host { path, len }),
    }
}

#[test]
fn a_512_mib_file_and_a_90_percent_full_filesystem() {
    let sources = tempfile::tempdir().unwrap();
    let d = meta(0o755);
    let mut big = FileTree::new(meta(0o755));
    big.insert(
        "big.bin",
        host_file(sources.path(), "big", (512 << 20) + 12345),
        &d,
    )
    .unwrap();
    judge(&big, 1 << 30);

    for (size, name) in [(128u64 << 20, "small"), (1 << 30, "large")] {
        let mut full = FileTree::new(meta(0o755));
        // 90% of the filesystem in data, in several files.
        let total = size / 10 * 9;
        let mut placed = 0;
        let mut i = 0;
        while placed < total {
            let len = (total - placed).min(size / 8);
            full.insert(
                &format!("fill/{i}"),
                host_file(sources.path(), &format!("{name}{i}"), len),
                &d,
            )
            .unwrap();
            placed += len;
            i += 1;
        }
        judge(&full, size);
    }
}

#[test]
fn a_tree_that_does_not_fit_is_refused_with_sizes() {
    let sources = tempfile::tempdir().unwrap();
    let mut tree = FileTree::new(meta(0o755));
    tree.insert(
        "too-big",
        host_file(sources.path(), "big", 120 << 20),
        &meta(0o755),
    )
    .unwrap();
    let options = WriteOptions {
        size: 64 << 20,
        label: "OEM".into(),
        fsid: [1; 16],
        time: TIME,
    };
    let mut out = std::io::Cursor::new(Vec::new());
    let error = write(&tree, &options, &mut out).unwrap_err();
    assert!(
        matches!(error, WriteError::TooSmall { size, .. } if size == 64 << 20),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("but the partition is 67108864 bytes"),
        "{error}"
    );
}

#[test]
fn names_are_bytes_not_text() {
    let mut tree = FileTree::new(meta(0o755));
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9-\xff\x01");
    let mut root = std::collections::BTreeMap::new();
    root.insert(
        name.as_bytes().to_vec(),
        Entry::file(meta(0o644), b"latin-1 name".to_vec()),
    );
    tree.root.kind = Kind::Dir(root);
    judge(&tree, 128 << 20);
}
