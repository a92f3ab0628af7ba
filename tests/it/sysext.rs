//! System extension images read as systemd-sysext reads them: made by the real tools
//! (`mksquashfs` with each compressor, `mkfs.erofs`, a GPT from `sgdisk`), what `inspect`
//! reports compared with what the tools' own readers (`unsquashfs -cat`, `fsck.erofs
//! --extract`) give, and the merge rule judged on each field.

use std::path::{Path, PathBuf};

use crate::common::{inspect_json, judge, kato};

const RELEASE_DIR: &str = "usr/lib/extension-release.d";

/// A tree with `extension-release.NAME` (the given text) and a small program.
fn tree(name: &str, release: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(RELEASE_DIR)).unwrap();
    std::fs::create_dir_all(dir.path().join("usr/bin")).unwrap();
    std::fs::write(
        dir.path()
            .join(RELEASE_DIR)
            .join(format!("extension-release.{name}")),
        release,
    )
    .unwrap();
    std::fs::write(dir.path().join("usr/bin/hello"), "#!/bin/sh\necho hello\n").unwrap();
    // Enough entries that folders and inodes span several metadata blocks.
    let many = dir.path().join("usr/share/many");
    std::fs::create_dir_all(&many).unwrap();
    for i in 0..600 {
        std::fs::write(
            many.join(format!("file-with-a-long-name-{i:04}")),
            i.to_string(),
        )
        .unwrap();
    }
    dir
}

fn ok(output: &std::process::Output) -> &std::process::Output {
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn mksquashfs(tree: &Path, image: &Path, extra: &[&str]) {
    let mut args = vec![
        tree.to_str().unwrap(),
        image.to_str().unwrap(),
        "-noappend",
        "-quiet",
    ];
    args.extend_from_slice(extra);
    ok(&judge("mksquashfs", &args, None));
}

fn mkfs_erofs(tree: &Path, image: &Path, extra: &[&str]) {
    let mut args: Vec<&str> = extra.to_vec();
    args.extend([image.to_str().unwrap(), tree.to_str().unwrap()]);
    ok(&judge("mkfs.erofs", &args, None));
}

fn one_line_error(args: &[&str], image: &Path) -> String {
    let out = kato()
        .arg("inspect")
        .arg(image)
        .args(args)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}

/// A release of `keys` lines (enough to span several data blocks at 4 KiB) with known
/// values.
fn long_release(keys: usize) -> String {
    let mut text =
        String::from("# made by the test\nID=flatcar\nVERSION_ID=1.2.3\nARCHITECTURE=x86-64\n");
    for i in 0..keys {
        text.push_str(&format!("KEY_{i}='value {i} of the test'\n"));
    }
    text
}

fn assert_fields(report: &serde_json::Value, name: &str, keys: usize) {
    let releases = report["releases"].as_array().unwrap();
    assert_eq!(releases.len(), 1, "{report}");
    assert_eq!(releases[0][0], name);
    let fields = &releases[0][1]["fields"];
    assert_eq!(fields["ID"], "flatcar");
    assert_eq!(fields["VERSION_ID"], "1.2.3");
    for i in 0..keys {
        assert_eq!(
            fields[format!("KEY_{i}")],
            format!("value {i} of the test"),
            "KEY_{i}"
        );
    }
    assert_eq!(fields.as_object().unwrap().len(), keys + 3);
}

#[test]
fn squashfs_images_of_every_compressor_mksquashfs_offers_are_read_as_unsquashfs_reads_them() {
    let keys = 700; // about 20 KiB: five 4 KiB blocks and a tail
    let release = long_release(keys);
    let source = tree("hello", &release);
    let dir = tempfile::tempdir().unwrap();
    let variants: [(&str, &[&str]); 9] = [
        ("gzip", &["-comp", "gzip", "-b", "4096"]),
        ("lzma", &["-comp", "lzma", "-b", "4096"]),
        ("lz4", &["-comp", "lz4", "-b", "4096"]),
        ("xz", &["-comp", "xz", "-b", "4096"]),
        (
            "zstd",
            &["-comp", "zstd", "-Xcompression-level", "22", "-b", "524288"],
        ),
        ("lzo", &["-comp", "lzo", "-b", "4096"]),
        ("uncompressed", &["-noI", "-noD", "-noF", "-b", "4096"]),
        ("no-fragments", &["-no-fragments", "-b", "4096"]),
        ("always-fragments", &["-always-use-fragments", "-b", "8192"]),
    ];
    for (label, extra) in variants {
        let image = dir.path().join(format!("{label}/hello.raw"));
        std::fs::create_dir_all(image.parent().unwrap()).unwrap();
        mksquashfs(source.path(), &image, extra);
        // The judge reads back what the test wrote.
        let cat = judge(
            "unsquashfs",
            &[
                "-cat",
                image.to_str().unwrap(),
                &format!("{RELEASE_DIR}/extension-release.hello"),
            ],
            None,
        );
        assert_eq!(
            String::from_utf8_lossy(&ok(&cat).stdout),
            release,
            "{label}"
        );
        let report = inspect_json(&image, &[]);
        assert_eq!(report["filesystem"], "squashfs", "{label}: {report}");
        let sha256 = judge("sha256sum", &[image.to_str().unwrap()], None);
        let sha256 = String::from_utf8_lossy(&ok(&sha256).stdout).to_string();
        assert_eq!(report["sha256"], sha256.split_whitespace().next().unwrap());
        assert_eq!(report["name"], "hello");
        assert_fields(&report, "hello", keys);
    }
}

#[test]
fn erofs_images_and_a_gpt_image_holding_one_are_read_as_fsck_erofs_reads_them() {
    let keys = 1500; // about 48 KiB of text: twelve compressed clusters
    let release = long_release(keys);
    let source = tree("hello", &release);
    let dir = tempfile::tempdir().unwrap();
    let variants: [(&str, &[&str]); 7] = [
        ("plain", &["-T0"]),
        ("lz4", &["-zlz4"]),
        ("lz4hc", &["-zlz4hc,12"]),
        ("big-clusters", &["-zlz4hc", "-C16384"]),
        ("tail-packing", &["-zlz4hc", "-Eztailpacking"]),
        ("full-indexes", &["-zlz4", "-Elegacy-compress"]),
        // Flatcar's options, but for fragments, which this mkfs.erofs does not make.
        ("flatcar-like", &["-zlz4hc,12", "-C65536", "-Eztailpacking"]),
    ];
    for (label, extra) in variants {
        let image = dir.path().join(format!("{label}/hello.raw"));
        std::fs::create_dir_all(image.parent().unwrap()).unwrap();
        mkfs_erofs(source.path(), &image, extra);
        let extracted = dir.path().join(format!("{label}/extracted"));
        ok(&judge(
            "fsck.erofs",
            &[
                &format!("--extract={}", extracted.display()),
                image.to_str().unwrap(),
            ],
            None,
        ));
        let judged =
            std::fs::read_to_string(extracted.join(RELEASE_DIR).join("extension-release.hello"))
                .unwrap();
        assert_eq!(judged, release, "{label}");
        let report = inspect_json(&image, &[]);
        assert_eq!(report["filesystem"], "erofs", "{label}: {report}");
        assert_fields(&report, "hello", keys);
    }
    let image = dir.path().join("flatcar-like/hello.raw");

    // The same filesystem as the root partition of a GPT image, as systemd-repart makes a
    // DDI: found by its discoverable type, whatever its slot.
    let ddi = dir.path().join("ddi/hello.raw");
    std::fs::create_dir_all(ddi.parent().unwrap()).unwrap();
    let fs_len = std::fs::metadata(&image).unwrap().len();
    let sectors = fs_len.div_ceil(512);
    let file = std::fs::File::create(&ddi).unwrap();
    file.set_len((2048 + sectors + 2048 + 64) * 512).unwrap();
    drop(file);
    ok(&judge(
        "sgdisk",
        &[
            "-n",
            "1:2048:+1M",
            "-t",
            "1:2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5",
            "-n",
            &format!("2:0:+{sectors}"),
            "-t",
            "2:4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
            ddi.to_str().unwrap(),
        ],
        None,
    ));
    let start = partition_start(&ddi, 2);
    let mut bytes = std::fs::read(&ddi).unwrap();
    let fs = std::fs::read(&image).unwrap();
    bytes[start as usize..start as usize + fs.len()].copy_from_slice(&fs);
    std::fs::write(&ddi, &bytes).unwrap();
    let report = inspect_json(&ddi, &[]);
    assert_eq!(report["ddi"]["architecture"], "x86-64", "{report}");
    assert_eq!(
        report["ddi"]["partitions"],
        serde_json::json!(["verity", "root"])
    );
    assert_fields(&report, "hello", keys);
    // What decides is the extension-release's ARCHITECTURE, not the partition's type (systemd
    // mounts another architecture's root when it is the only one).
    let out = kato()
        .args(["inspect", "--release", "1.2.3"])
        .arg(&ddi)
        .output()
        .unwrap();
    ok(&out);
    let error = one_line_error(&["--release", "1.2.3", "--board", "arm64-usr"], &ddi);
    assert!(
        error.contains("ARCHITECTURE=x86-64, but the machine is arm64"),
        "{error}"
    );
}

/// The byte offset of partition `slot`, as sgdisk reports it.
fn partition_start(disk: &Path, slot: u32) -> u64 {
    let out = judge(
        "sgdisk",
        &["-i", &slot.to_string(), disk.to_str().unwrap()],
        None,
    );
    let text = String::from_utf8_lossy(&ok(&out).stdout).to_string();
    let line = text
        .lines()
        .find(|l| l.starts_with("First sector:"))
        .expect("First sector");
    let sector: u64 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    sector * 512
}

#[test]
fn the_merge_verdict_is_systemd_sysexts_rule() {
    let dir = tempfile::tempdir().unwrap();
    let image = |name: &str, release: &str| -> PathBuf {
        let source = tree(name, release);
        let image = dir.path().join(format!("{name}.raw"));
        mksquashfs(source.path(), &image, &["-comp", "zstd"]);
        image
    };
    let flatcar = image(
        "flatcar-hello",
        "ID=flatcar\nVERSION_ID=4593.2.5\nARCHITECTURE=x86-64\n",
    );
    let out = kato()
        .args(["inspect", "--release", "4593.2.5"])
        .arg(&flatcar)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&ok(&out).stdout).to_string();
    assert!(
        text.contains("on Flatcar 4593.2.5 (amd64-usr): merged"),
        "{text}"
    );
    assert!(
        text.contains("merged as /etc/extensions/flatcar-hello.raw"),
        "{text}"
    );
    let error = one_line_error(&["--release", "4593.2.4"], &flatcar);
    assert!(
        error.contains("flatcar-hello.raw: systemd-sysext would not merge it on Flatcar 4593.2.4 (amd64-usr): VERSION_ID=4593.2.5, but the release is 4593.2.4"),
        "{error}"
    );
    let error = one_line_error(&["--release", "4593.2.5", "--board", "arm64-usr"], &flatcar);
    assert!(
        error.contains("ARCHITECTURE=x86-64, but the machine is arm64"),
        "{error}"
    );
    let any = image("bakery", "ID=_any\nARCHITECTURE=x86-64\n");
    ok(&kato()
        .args(["inspect", "--release", "1.0.0"])
        .arg(&any)
        .output()
        .unwrap());
    let debian = image("debian", "ID=debian\nVERSION_ID=12\n");
    let error = one_line_error(&["--release", "4593.2.5"], &debian);
    assert!(
        error.contains(
            "ID=debian, where Flatcar merges only ID=flatcar, ID=coreos (its ID_LIKE) or ID=_any"
        ),
        "{error}"
    );
    // Flatcar's os-release has SYSEXT_LEVEL=1.0: an extension of that level merges on any
    // release, one of another level on none.
    let level = image("level", "ID=flatcar\nSYSEXT_LEVEL=1.0\n");
    ok(&kato()
        .args(["inspect", "--release", "9999.0.0"])
        .arg(&level)
        .output()
        .unwrap());
    let level2 = image(
        "level2",
        "ID=flatcar\nSYSEXT_LEVEL=2\nVERSION_ID=4593.2.5\n",
    );
    let error = one_line_error(&["--release", "4593.2.5"], &level2);
    assert!(
        error.contains("SYSEXT_LEVEL=2, but Flatcar's is 1.0"),
        "{error}"
    );
    // An image named NAME_VERSION.raw reads extension-release.NAME, as systemd does.
    let versioned = dir.path().join("flatcar-hello_4593.2.5.raw");
    std::fs::copy(&flatcar, &versioned).unwrap();
    ok(&kato()
        .args(["inspect", "--release", "4593.2.5"])
        .arg(&versioned)
        .output()
        .unwrap());
    // An extension carrying an os-release is refused whatever it says.
    let source = tree("withos", "ID=_any\n");
    std::fs::write(source.path().join("usr/lib/os-release"), "ID=evil\n").unwrap();
    let withos = dir.path().join("withos.raw");
    mksquashfs(source.path(), &withos, &[]);
    let error = one_line_error(&["--release", "4593.2.5"], &withos);
    assert!(error.contains("it holds usr/lib/os-release"), "{error}");
    // Renamed, the image has no extension-release for its new name: systemd skips it.
    let renamed = dir.path().join("renamed.raw");
    std::fs::copy(&flatcar, &renamed).unwrap();
    let error = one_line_error(&["--release", "4593.2.5"], &renamed);
    assert!(
        error.contains("it has no extension-release.renamed for that name"),
        "{error}"
    );
    let out = kato().arg("inspect").arg(&renamed).output().unwrap();
    let text = String::from_utf8_lossy(&ok(&out).stdout).to_string();
    assert!(
        text.contains("named flatcar-hello.raw, it would be read"),
        "{text}"
    );
    // --release means nothing for a disk.
    let disk = dir.path().join("disk.raw");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    ok(&judge(
        "sgdisk",
        &["-n", "1:2048:0", disk.to_str().unwrap()],
        None,
    ));
    let error = one_line_error(&["--release", "4593.2.5"], &disk);
    assert!(
        error.contains("--release is for system extension images"),
        "{error}"
    );
}

#[test]
fn damaged_extension_images_are_refused_in_one_line_naming_the_byte() {
    let dir = tempfile::tempdir().unwrap();
    let source = tree("hello", "ID=_any\n");
    let squash = dir.path().join("hello.raw");
    mksquashfs(source.path(), &squash, &["-comp", "gzip"]);
    let bytes = std::fs::read(&squash).unwrap();
    // Cut short: the tables the superblock points at are gone.
    std::fs::write(&squash, &bytes[..bytes.len() / 2]).unwrap();
    let error = one_line_error(&[], &squash);
    assert!(
        error.contains("hello.raw: squashfs: at byte 40: expected at most the image's"),
        "{error}"
    );
    // A block size that is no power of two.
    let mut bad = bytes.clone();
    bad[12..16].copy_from_slice(&5000u32.to_le_bytes());
    std::fs::write(&squash, &bad).unwrap();
    let error = one_line_error(&[], &squash);
    assert!(
        error.contains("at byte 12: expected a block size 4 KiB to 1 MiB, not 5000"),
        "{error}"
    );
    // A root inode reference far past the inode table's blocks.
    let mut bad = bytes.clone();
    bad[32..40].copy_from_slice(&(0xFFFF_FFFFu64 << 16).to_le_bytes());
    std::fs::write(&squash, &bad).unwrap();
    let error = one_line_error(&[], &squash);
    assert!(error.contains("hello.raw: squashfs: at byte"), "{error}");
    // An EROFS image whose root inode lies past its end.
    let erofs = dir.path().join("e/hello.raw");
    std::fs::create_dir_all(erofs.parent().unwrap()).unwrap();
    mkfs_erofs(source.path(), &erofs, &[]);
    let mut bad = std::fs::read(&erofs).unwrap();
    bad[1024 + 14..1024 + 16].copy_from_slice(&0xFFFFu16.to_le_bytes());
    std::fs::write(&erofs, &bad).unwrap();
    let error = one_line_error(&[], &erofs);
    assert!(error.contains("hello.raw: EROFS: at byte"), "{error}");
    assert!(error.contains("bytes inside the"), "{error}");
}
