//! Flatcar-shaped disk fixtures (scripts/flatcar-fixture) and `sgdisk`, the judge of GPTs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The scaled-down fixture, made once per test binary. Tests copy it before changing it.
pub fn fixture() -> &'static Path {
    static FIXTURE: OnceLock<PathBuf> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("kato-disk-")
            .tempdir()
            .unwrap()
            .keep();
        let path = dir.join("flatcar.raw");
        let out = Command::new(super::repo().join("scripts/flatcar-fixture"))
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "flatcar-fixture: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        path
    })
}

/// A private copy of the fixture (sparse).
pub fn fixture_copy(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("cp")
        .arg("--sparse=always")
        .arg(fixture())
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    path
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgdiskPartition {
    pub slot: u32,
    pub first: u64,
    pub last: u64,
    pub name: String,
    pub type_guid: String,
    pub unique_guid: String,
    pub attributes: String,
}

pub fn sgdisk(args: &[&str], image: &Path) -> String {
    let out = Command::new("sgdisk")
        .args(args)
        .arg(image)
        .output()
        .expect("sgdisk (gdisk)");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// `sgdisk -v`: whether it finds no problems, and what it said.
pub fn sgdisk_verify(image: &Path) -> (bool, String) {
    let text = sgdisk(&["-v"], image);
    (text.contains("No problems found"), text)
}

/// The disk GUID and partitions as sgdisk reads them.
pub fn sgdisk_table(image: &Path) -> (String, Vec<SgdiskPartition>) {
    let text = sgdisk(&["-p"], image);
    let disk_guid = text
        .lines()
        .find_map(|l| l.strip_prefix("Disk identifier (GUID): "))
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut partitions = Vec::new();
    let mut rows = text
        .lines()
        .skip_while(|l| !l.starts_with("Number"))
        .skip(1);
    for row in rows.by_ref() {
        let fields: Vec<&str> = row.split_whitespace().collect();
        if fields.len() < 7 {
            continue;
        }
        let slot: u32 = fields[0].parse().unwrap();
        let info = sgdisk(&["-i", &slot.to_string()], image);
        let field = |key: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| {
                    v.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .trim_matches('\'')
                        .to_string()
                })
                .unwrap_or_default()
        };
        partitions.push(SgdiskPartition {
            slot,
            first: fields[1].parse().unwrap(),
            last: fields[2].parse().unwrap(),
            name: fields[6..].join(" "),
            type_guid: field("Partition GUID code: "),
            unique_guid: field("Partition unique GUID: "),
            attributes: field("Attribute flags: "),
        });
    }
    (disk_guid, partitions)
}

/// Copies `[offset, offset + len)` of `image` to a new sparse file, with dd.
pub fn extract(image: &Path, offset: u64, len: u64, out: &Path) {
    let script = format!(
        "dd if='{}' of='{}' bs=1M iflag=skip_bytes,count_bytes skip={offset} count={len} conv=sparse status=none",
        image.display(),
        out.display()
    );
    assert!(
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .status()
            .unwrap()
            .success(),
        "dd failed"
    );
}

/// `b3sum FILE`: the BLAKE3 of a file, by the reference tool.
pub fn b3sum(path: &Path) -> String {
    let out = Command::new("b3sum")
        .arg("--no-names")
        .arg(path)
        .output()
        .expect("b3sum (Debian package b3sum)");
    assert!(out.status.success(), "b3sum {}", path.display());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The BLAKE3 of `[offset, offset + len)` of a file, cut out by dd and hashed by b3sum.
pub fn dd_b3sum(path: &Path, offset: u64, len: u64) -> String {
    let script = format!(
        "dd if='{}' bs=1M iflag=skip_bytes,count_bytes skip={offset} count={len} status=none | b3sum --no-names",
        path.display()
    );
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "dd | b3sum");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// CRC-32 (IEEE), to forge GPTs the way a damaged or malicious image would be.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
