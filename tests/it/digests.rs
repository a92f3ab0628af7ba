//! The digests a build records are carried from the vendor image where it did not write and
//! computed where it did: whatever the route, they must equal what `b3sum` says of each
//! output file and what `dd | b3sum` says of each partition, here for every role, with and
//! without KATO-DATA, after the base is decompressed again, and with its digest record
//! damaged or missing.

use crate::common;

use std::path::{Path, PathBuf};

use common::disk::{b3sum, dd_b3sum, fixture, sgdisk_table};
use common::mirror::Mirror;

fn ok(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn manifest(out: &Path, role: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join(format!("{role}.manifest.json"))).unwrap())
        .unwrap()
}

/// The decompressed vendor image in the cache and its digest record.
fn cached_base(cache: &Path) -> (PathBuf, PathBuf) {
    let raw = std::fs::read_dir(cache.join("raw"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "raw"))
        .expect("a decompressed base");
    let record = raw.with_extension("digests");
    (raw, record)
}

/// Every digest in `role`'s manifest against b3sum and dd, for the image and for the base.
fn check_role(out: &Path, role: &str, base: &Path) -> serde_json::Value {
    let m = manifest(out, role);
    let disk = &m["disks"][0];
    let image = out.join(disk["file"].as_str().unwrap());
    assert_eq!(disk["blake3"], b3sum(&image), "{role}: b3sum of the image");
    assert_eq!(
        disk["size"],
        std::fs::metadata(&image).unwrap().len(),
        "{role}: size"
    );
    let (_, now) = sgdisk_table(&image);
    let (_, then) = sgdisk_table(base);
    let span = |p: &common::disk::SgdiskPartition| (p.first * 512, (p.last - p.first + 1) * 512);
    for p in disk["partitions"].as_array().unwrap() {
        let slot = p["slot"].as_u64().unwrap() as u32;
        let after = now.iter().find(|q| q.slot == slot).unwrap();
        let (start, len) = span(after);
        assert_eq!(
            p["blake3_after"],
            dd_b3sum(&image, start, len),
            "{role}: slot {slot} as built"
        );
        match then.iter().find(|q| q.slot == slot) {
            Some(before) => {
                let (start, len) = span(before);
                assert_eq!(
                    p["blake3_before"],
                    dd_b3sum(base, start, len),
                    "{role}: slot {slot} in the vendor image"
                );
            }
            None => assert!(p["blake3_before"].is_null(), "{role}: {p}"),
        }
        assert_eq!(
            p["changed"],
            p["blake3_before"] != p["blake3_after"],
            "{role}: {p}"
        );
    }
    m
}

#[test]
fn recorded_digests_equal_b3sum_and_dd_however_they_were_made() {
    let mirror = Mirror::with_image(fixture());
    let out = tempfile::tempdir().unwrap();
    ok(&mirror.build_with(common::kato(), out.path(), &["--role", "all"]));
    let (base, record) = cached_base(mirror.cache.path());
    for role in ["edge", "master", "worker"] {
        let m = check_role(out.path(), role, &base);
        assert_eq!(
            m["disks"][0]["changed_partitions"],
            serde_json::json!(["OEM"])
        );
    }

    // With KATO-DATA: a new partition, and ROOT moved out with its bytes unchanged.
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    common::registry::oci_layout(&layout, &["amd64"], &[3 << 20], 11);
    let archive = work.path().join("app.tar");
    let copied = std::process::Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker-archive:{}:kato/app:1", archive.display()))
        .output()
        .expect("skopeo");
    assert!(copied.status.success());
    let scratch = common::Scratch::new();
    let edge = std::fs::read_to_string(scratch.path("profiles/edge.yaml")).unwrap();
    scratch.write(
        "profiles/edge.yaml",
        &format!("{edge}\nimages:\n  - archive: {}\n", archive.display()),
    );
    let data_out = tempfile::tempdir().unwrap();
    ok(&mirror.build_with(
        scratch.kato(&[]),
        data_out.path(),
        &[
            "--role",
            "edge",
            "--files-dir",
            work.path().to_str().unwrap(),
        ],
    ));
    let m = check_role(data_out.path(), "edge", &base);
    assert_eq!(
        m["disks"][0]["changed_partitions"],
        serde_json::json!(["OEM", "KATO-DATA"])
    );
    let root = m["disks"][0]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "ROOT")
        .unwrap()
        .clone();
    assert_eq!(root["changed"], false, "ROOT moved but kept its bytes");

    // A damaged digest record is not trusted: it is computed again, and the build's digests
    // are still right. The same for a missing one.
    let mut bytes = std::fs::read(&record).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&record, &bytes).unwrap();
    let again = tempfile::tempdir().unwrap();
    ok(&mirror.build_with(common::kato(), again.path(), &["--role", "master"]));
    check_role(again.path(), "master", &base);
    assert_ne!(
        std::fs::read(&record).unwrap(),
        bytes,
        "the record was made again"
    );
    std::fs::remove_file(&record).unwrap();
    let again = tempfile::tempdir().unwrap();
    ok(&mirror.build_with(common::kato(), again.path(), &["--role", "worker"]));
    check_role(again.path(), "worker", &base);
    assert!(record.exists());

    // A base decompressed again (a new file) gets digests of its own.
    std::fs::remove_file(&base).unwrap();
    let again = tempfile::tempdir().unwrap();
    ok(&mirror.build_with(common::kato(), again.path(), &["--role", "edge"]));
    let (base, _) = cached_base(mirror.cache.path());
    check_role(again.path(), "edge", &base);
    assert_eq!(
        std::fs::read(again.path().join("edge.manifest.json")).unwrap(),
        std::fs::read(out.path().join("edge.manifest.json")).unwrap(),
        "the same build, whatever the route to its digests"
    );
}
