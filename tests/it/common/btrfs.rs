//! Judges for btrfs images: btrfs-progs (check, restore), GRUB's driver (grub-fstest) and
//! the kernel (a loop mount; the tests run as root, the product never mounts).

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use kato_image::fs::btrfs::{WriteOptions, write};
use kato_image::fs::tree::{Contents, Entry, FileTree, Kind, Meta, Timespec};

pub const TIME: Timespec = Timespec {
    sec: 1_700_000_000,
    nsec: 0,
};

pub fn meta(mode: u32) -> Meta {
    Meta::new(mode, TIME)
}

/// Writes `tree` into a new sparse file of `size` bytes.
pub fn make_image(tree: &FileTree, path: &Path, size: u64, label: &str) {
    let mut file = std::fs::File::create(path).unwrap();
    file.set_len(size).unwrap();
    let options = WriteOptions {
        size,
        label: label.into(),
        fsid: [0x42; 16],
        time: TIME,
    };
    write(tree, &options, &mut file).unwrap();
}

pub fn check(image: &Path) -> (bool, String) {
    let out = Command::new("btrfs")
        .args(["check", "--readonly", "--check-data-csum"])
        .arg(image)
        .output()
        .expect("btrfs-progs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `btrfs restore` of the whole filesystem (with xattrs, symlinks, owners and modes).
pub fn restore(image: &Path, into: &Path) {
    let out = Command::new("btrfs")
        .args(["restore", "-x", "-m", "-S", "-i"])
        .arg(image)
        .arg(into)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "btrfs restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Compares a folder on the host with `tree`: names, kinds, contents, symlink targets, and
/// with `check_meta` permission bits, owners and user xattrs. (`btrfs restore` can miss
/// xattrs under a mode-0 folder; the kernel never does.)
pub fn assert_folder_matches(folder: &Path, tree: &FileTree, check_meta: bool) {
    assert_folder_matches_with(folder, tree, check_meta, check_meta)
}

pub fn assert_folder_matches_with(
    folder: &Path,
    tree: &FileTree,
    check_meta: bool,
    check_xattrs: bool,
) {
    use std::os::unix::fs::MetadataExt;
    for (path, entry) in tree.walk() {
        let host = folder.join(std::ffi::OsStr::from_bytes(&path));
        let meta =
            std::fs::symlink_metadata(&host).unwrap_or_else(|e| panic!("{}: {e}", host.display()));
        match &entry.kind {
            Kind::File(contents) => {
                assert!(meta.is_file(), "{} is not a file", host.display());
                let expected = match contents {
                    Contents::Bytes(b) => b.clone(),
                    Contents::Host { path, .. } => std::fs::read(path).unwrap(),
                };
                assert!(
                    std::fs::read(&host).unwrap() == expected,
                    "{} differs",
                    host.display()
                );
            }
            Kind::Dir(_) => assert!(meta.is_dir(), "{} is not a folder", host.display()),
            Kind::Symlink(target) => {
                assert_eq!(
                    std::fs::read_link(&host)
                        .unwrap()
                        .as_os_str()
                        .as_encoded_bytes(),
                    &target[..],
                    "{}",
                    host.display()
                );
            }
        }
        if check_meta && !matches!(entry.kind, Kind::Symlink(_)) {
            assert_eq!(
                meta.mode() & 0o7777,
                entry.meta.mode,
                "mode of {}",
                host.display()
            );
            assert_eq!(
                (meta.uid(), meta.gid()),
                (entry.meta.uid, entry.meta.gid),
                "owner of {}",
                host.display()
            );
        }
        for (name, value) in entry.meta.xattrs.iter().filter(|_| check_xattrs) {
            let out = Command::new("getfattr")
                .args([
                    "--only-values",
                    "--absolute-names",
                    "--no-dereference",
                    "-n",
                ])
                .arg(String::from_utf8_lossy(name).as_ref())
                .arg(&host)
                .output()
                .expect("getfattr (attr)");
            assert_eq!(
                &out.stdout,
                value,
                "xattr {} of {}",
                String::from_utf8_lossy(name),
                host.display()
            );
        }
    }
}

/// GRUB's btrfs driver reads `path` from a filesystem image.
pub fn grub_cat(image: &Path, path: &str) -> Vec<u8> {
    grub_cat_on(image, "loop0", path)
}

/// GRUB reads `path` from a disk image's OEM partition (slot 6), as it does at boot.
pub fn oem_cat(image: &Path, path: &str) -> Vec<u8> {
    grub_cat_on(image, "loop0,gpt6", path)
}

fn grub_cat_on(image: &Path, device: &str, path: &str) -> Vec<u8> {
    let out = Command::new("grub-fstest")
        .arg(image)
        .arg("cat")
        .arg(format!("({device}){path}"))
        .output()
        .expect("grub-fstest (grub-common)");
    assert!(
        out.status.success(),
        "grub-fstest cat {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Mounts `image` read-only with the kernel, runs `f` on the mount point, unmounts.
pub fn with_kernel_mount<T>(image: &Path, options: &str, f: impl FnOnce(&Path) -> T) -> T {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("mount")
        .args(["-t", "btrfs", "-o", &format!("loop,{options}")])
        .arg(image)
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mount: {}{}",
        String::from_utf8_lossy(&out.stderr),
        dmesg_tail()
    );
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(dir.path())));
    let _ = Command::new("umount").arg(dir.path()).status();
    match result {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e),
    }
}

fn dmesg_tail() -> String {
    Command::new("sh")
        .arg("-c")
        .arg("dmesg 2>/dev/null | tail -5")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default()
}

/// A small tree with one of everything: inline, regular and empty files, a folder, a
/// symlink, an xattr, odd modes and owners.
pub fn sample_tree() -> FileTree {
    let mut tree = FileTree::new(meta(0o755));
    let d = meta(0o755);
    let mut hello = meta(0o644);
    hello.xattrs = BTreeMap::from([(b"user.test".to_vec(), b"value123".to_vec())]);
    tree.insert(
        "hello.txt",
        Entry::file(hello, b"hello world\n".to_vec()),
        &d,
    )
    .unwrap();
    tree.insert("dir", Entry::dir(meta(0o750)), &d).unwrap();
    let random: Vec<u8> = (0..10_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    tree.insert("dir/random.bin", Entry::file(meta(0o600), random), &d)
        .unwrap();
    tree.insert(
        "dir/small",
        Entry::file(meta(0o644), b"small\n".to_vec()),
        &d,
    )
    .unwrap();
    let mut owned = meta(0o640);
    owned.uid = 500;
    owned.gid = 501;
    tree.insert("dir/empty", Entry::file(owned, Vec::new()), &d)
        .unwrap();
    tree.insert("link", Entry::symlink(meta(0o777), b"hello.txt"), &d)
        .unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    tree.insert("dir/big", Entry::file(meta(0o755), big), &d)
        .unwrap();
    tree
}
