//! The disk engine on Flatcar-shaped fixtures, judged by sgdisk, e2fsck, btrfs check and cmp.

use crate::common;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::disk::{fixture, fixture_copy, sgdisk_table, sgdisk_verify};
use common::inspect_json;
use kato_image::disk::{self, DiskError, Guid, PartitionTable, WorkingCopy, layout};

fn inspect_error(path: &Path) -> String {
    let out = common::kato().arg("inspect").arg(path).output().unwrap();
    assert!(!out.status.success());
    // Progress lines may come first; the error is the last line, and only one.
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr.lines().filter(|l| l.contains("error")).count(),
        1,
        "{stderr}"
    );
    stderr.lines().last().unwrap().to_string()
}

#[test]
fn inspect_agrees_with_sgdisk_on_raw_and_every_compression() {
    let (disk_guid, expected) = sgdisk_table(fixture());
    assert_eq!(disk_guid, "00000000-0000-0000-0000-000000000001");
    let slots: Vec<u32> = expected.iter().map(|p| p.slot).collect();
    assert_eq!(
        slots,
        [1, 2, 3, 4, 6, 7, 9],
        "the fixture has Flatcar's slots"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = vec![(fixture().to_path_buf(), "none")];
    for (tool, ext, name) in [
        ("bzip2", "bz2", "bzip2"),
        ("gzip", "gz", "gzip"),
        ("zstd", "zst", "zstd"),
        ("xz", "xz", "xz"),
    ] {
        // Named .bin on purpose: detection is by magic, not by name.
        let path = dir.path().join(format!("image-{ext}.bin"));
        let out = Command::new(tool)
            .arg("-c")
            .arg(fixture())
            .output()
            .unwrap();
        std::fs::write(&path, out.stdout).unwrap();
        inputs.push((path, name));
    }
    for (path, compression) in inputs {
        let started = std::time::Instant::now();
        let json = inspect_json(&path, &[]);
        eprintln!(
            "inspect {compression}: {:.1}s",
            started.elapsed().as_secs_f64()
        );
        assert_eq!(json["compression"], compression);
        assert_eq!(json["disk_guid"], disk_guid);
        assert_eq!(json["first_boot_flag"], "flatcar/first_boot");
        let partitions = json["partitions"].as_array().unwrap();
        assert_eq!(partitions.len(), expected.len());
        for (ours, theirs) in partitions.iter().zip(&expected) {
            assert_eq!(ours["slot"], theirs.slot);
            assert_eq!(ours["name"], theirs.name);
            assert_eq!(ours["first_lba"], theirs.first);
            assert_eq!(ours["last_lba"], theirs.last);
            assert_eq!(ours["type_guid"], theirs.type_guid);
            assert_eq!(ours["unique_guid"], theirs.unique_guid);
            assert_eq!(
                ours["attributes"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("0x"),
                theirs.attributes
            );
        }
        let fs = |slot: usize| partitions[slot]["filesystem"].clone();
        assert_eq!(fs(0)["kind"], "vfat");
        assert_eq!(fs(0)["label"], "EFI-SYSTEM");
        assert_eq!(fs(2)["kind"], "btrfs");
        assert_eq!(fs(4)["kind"], "btrfs");
        assert_eq!(fs(4)["label"], "OEM");
        assert_eq!(fs(6)["kind"], "ext4");
        assert_eq!(fs(6)["label"], "ROOT");
        assert_eq!(partitions[2]["usr_flags"]["priority"], 1);
        assert_eq!(partitions[2]["usr_flags"]["successful"], true);
    }
}

#[test]
fn inspect_reports_a_missing_first_boot_flag() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-flag.raw");
    let out = Command::new(common::repo().join("scripts/flatcar-fixture"))
        .arg(&path)
        .arg("--no-first-boot")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(inspect_json(&path, &[])["first_boot_flag"].is_null());
}

fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// A verified download as `fetch` hands it on: the file, its name and its digest.
fn artifact(path: &Path, sha512: &str) -> kato_image::release::FetchedArtifact {
    kato_image::release::FetchedArtifact {
        record: kato_image::cache::ArtifactRecord {
            file: path.file_name().unwrap().to_str().unwrap().to_string(),
            url: format!("file://{}", path.display()),
            sha512: sha512.to_string(),
            size: std::fs::metadata(path).unwrap().len(),
            signature: None,
            digests_asc_verified: false,
        },
        path: path.to_path_buf(),
        from_cache: false,
    }
}

#[test]
fn decompressed_cache_is_exact_sparse_and_made_once() {
    let dir = tempfile::tempdir().unwrap();
    let compressed = dir.path().join("flatcar_production_image.bin.bz2");
    let out = Command::new("bzip2")
        .arg("-c")
        .arg(fixture())
        .output()
        .unwrap();
    std::fs::write(&compressed, out.stdout).unwrap();
    let cache = kato_image::cache::Cache::open(&dir.path().join("cache")).unwrap();
    let source = artifact(&compressed, "abc");
    let cached = disk::cached_raw(&cache, &source, &kato_image::progress::Silent).unwrap();
    let raw = cached.path.clone();
    let status = Command::new("cmp")
        .arg(&raw)
        .arg(fixture())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the decompressed image equals the original"
    );
    assert!(
        allocated(&raw) <= allocated(fixture()) + (1 << 20),
        "zero runs are holes"
    );
    assert!(allocated(&raw) < std::fs::metadata(&raw).unwrap().len() / 4);
    let modified = std::fs::metadata(&raw).unwrap().modified().unwrap();
    let again = disk::cached_raw(&cache, &source, &kato_image::progress::Silent).unwrap();
    assert_eq!(again.path, raw);
    assert_eq!(again.digests, cached.digests, "digests kept beside it");
    assert_eq!(
        std::fs::metadata(&raw).unwrap().modified().unwrap(),
        modified,
        "not decompressed twice"
    );
}

#[test]
fn corrupt_or_fake_compressed_input_leaves_no_cache_entry() {
    let dir = tempfile::tempdir().unwrap();
    let cache = kato_image::cache::Cache::open(&dir.path().join("cache")).unwrap();
    // Claims bzip2 by its magic, then is not.
    let fake = dir.path().join("fake.bin.bz2");
    let mut bytes = b"BZh91AY&SY".to_vec();
    bytes.extend(common::signing::pseudo_random(100_000, 3));
    std::fs::write(&fake, &bytes).unwrap();
    // A real bzip2 stream cut short.
    let cut = dir.path().join("cut.bin.bz2");
    let out = Command::new("bzip2")
        .arg("-c")
        .arg(fixture())
        .output()
        .unwrap();
    std::fs::write(&cut, &out.stdout[..out.stdout.len() / 2]).unwrap();
    for (path, digest) in [(&fake, "fake"), (&cut, "cut")] {
        let source = artifact(path, digest);
        let error = disk::cached_raw(&cache, &source, &kato_image::progress::Silent).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("bzip2 data is corrupt near compressed byte"),
            "{text}"
        );
        assert!(
            text.contains(path.file_name().unwrap().to_str().unwrap()),
            "{text}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(dir.path().join("cache/raw"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "nothing left in the raw cache: {left:?}");
    let error = inspect_error(&fake);
    assert!(error.contains("corrupt"), "{error}");
}

fn digests(path: &Path) -> BTreeMap<u32, String> {
    let (file, table) = disk::open_table(path, false).unwrap();
    disk::partition_digests(&file, &table).unwrap()
}

#[test]
fn working_copy_keeps_every_partition_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("master.raw");
    let copy = WorkingCopy::create(fixture(), &out, &["OEM", "ROOT"]).unwrap();
    assert!(!out.exists(), "nothing under the final name before commit");
    copy.commit().unwrap();
    let before = digests(fixture());
    assert_eq!(digests(&out), before);
    let (_, table) = disk::open_table(fixture(), false).unwrap();
    for p in table.partitions() {
        assert_eq!(
            before[&p.slot],
            common::disk::dd_b3sum(fixture(), p.start(), p.len()),
            "our digest of slot {} matches dd | b3sum",
            p.slot
        );
    }
    assert!(sgdisk_verify(&out).0);
    assert!(
        allocated(&out) <= allocated(fixture()) + (1 << 20),
        "holes are not copied"
    );
    let dropped = dir.path().join("dropped.raw");
    drop(WorkingCopy::create(fixture(), &dropped, &[]).unwrap());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "a dropped copy leaves nothing"
    );
}

#[test]
fn new_partition_before_root_keeps_root_last_and_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_copy(dir.path(), "grown.raw");
    let before_len = std::fs::metadata(&path).unwrap().len();
    let before = digests(&path);
    let (_, before_table) = sgdisk_table(&path);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut table = PartitionTable::read(&mut file, false).unwrap();
    let new = layout::NewPartition {
        slot: 10,
        name: "KATO-DATA".into(),
        type_guid: disk::types::LINUX_DATA.parse().unwrap(),
        unique_guid: "9C1A6B2E-4D7F-4E3A-9B5C-0123456789AB".parse().unwrap(),
        size: 48 << 20,
    };
    let mut written = disk::Ranges::default();
    let added = layout::insert_before_root(
        &mut disk::Tracked::new(&file, &mut written),
        &mut table,
        &new,
    )
    .unwrap();
    drop(file);
    assert_eq!(added.len(), 48 << 20);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        before_len + (48 << 20)
    );

    let (ok, report) = sgdisk_verify(&path);
    assert!(ok, "sgdisk -v: {report}");
    let (disk_guid, after_table) = sgdisk_table(&path);
    assert_eq!(disk_guid, "00000000-0000-0000-0000-000000000001");
    for old in &before_table {
        let now = after_table.iter().find(|p| p.slot == old.slot).unwrap();
        assert_eq!(
            (&now.name, &now.type_guid, &now.unique_guid, &now.attributes),
            (&old.name, &old.type_guid, &old.unique_guid, &old.attributes)
        );
        if old.name != "ROOT" {
            assert_eq!((now.first, now.last), (old.first, old.last));
        }
    }
    let data = after_table.iter().find(|p| p.slot == 10).unwrap();
    assert_eq!(data.name, "KATO-DATA");
    let root = after_table.iter().find(|p| p.name == "ROOT").unwrap();
    assert!(
        after_table.iter().all(|p| p.last <= root.last),
        "ROOT is still last"
    );
    assert_eq!(data.last + 1, root.first);

    let after = digests(&path);
    for (slot, digest) in &before {
        assert_eq!(
            &after[slot], digest,
            "slot {slot} unchanged (ROOT moved whole)"
        );
    }
    // e2fsck reads the moved ROOT filesystem as clean.
    let root_copy = dir.path().join("root.ext4");
    common::disk::extract(
        &path,
        root.first * 512,
        (root.last + 1 - root.first) * 512,
        &root_copy,
    );
    let fsck = Command::new("e2fsck")
        .args(["-f", "-n"])
        .arg(&root_copy)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "e2fsck: {}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    let json = inspect_json(&path, &[]);
    let slot10 = json["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["slot"] == 10)
        .unwrap()
        .clone();
    assert!(
        slot10["filesystem"].is_null(),
        "the new partition starts empty"
    );
}

/// Rewrites one entry's first/last LBA in both copies of the table, with valid CRCs.
fn forge_entry(path: &Path, slot: u64, first: u64, last: u64) {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let len = file.metadata().unwrap().len();
    for header_lba in [1, len / 512 - 1] {
        let mut header = [0u8; 92];
        file.seek(SeekFrom::Start(header_lba * 512)).unwrap();
        file.read_exact(&mut header).unwrap();
        let entries_lba = u64::from_le_bytes(header[72..80].try_into().unwrap());
        let mut entries = vec![0u8; 128 * 128];
        file.seek(SeekFrom::Start(entries_lba * 512)).unwrap();
        file.read_exact(&mut entries).unwrap();
        let entry = &mut entries[(slot as usize - 1) * 128..slot as usize * 128];
        entry[32..40].copy_from_slice(&first.to_le_bytes());
        entry[40..48].copy_from_slice(&last.to_le_bytes());
        header[88..92].copy_from_slice(&common::disk::crc32(&entries).to_le_bytes());
        header[16..20].copy_from_slice(&[0; 4]);
        let crc = common::disk::crc32(&header);
        header[16..20].copy_from_slice(&crc.to_le_bytes());
        file.seek(SeekFrom::Start(entries_lba * 512)).unwrap();
        file.write_all(&entries).unwrap();
        file.seek(SeekFrom::Start(header_lba * 512)).unwrap();
        file.write_all(&header).unwrap();
    }
}

/// `WorkingCopy::create` refuses `base` and writes nothing.
fn refused(base: &Path) -> DiskError {
    let out_dir = tempfile::tempdir().unwrap();
    let error = match WorkingCopy::create(base, &out_dir.path().join("role.raw"), &["OEM"]) {
        Ok(_) => panic!("{} was accepted", base.display()),
        Err(e) => e,
    };
    assert_eq!(
        std::fs::read_dir(out_dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
    error
}

#[test]
fn not_a_disk_image() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, common::signing::pseudo_random(1 << 20, 5)).unwrap();
    assert!(refused(&path).to_string().contains("not a disk image"));
    assert!(inspect_error(&path).contains("notes.txt: not a disk image"));
}

#[test]
fn mbr_only_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mbr.raw");
    let mut disk = vec![0u8; 4 << 20];
    disk[446 + 4] = 0x83; // one Linux partition
    disk[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
    disk[446 + 12..446 + 16].copy_from_slice(&4096u32.to_le_bytes());
    disk[510] = 0x55;
    disk[511] = 0xAA;
    std::fs::write(&path, disk).unwrap();
    assert!(
        refused(&path)
            .to_string()
            .contains("MBR-partitioned disk, not GPT")
    );
}

#[test]
fn damaged_primary_header_names_the_backup_and_uses_it_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_copy(dir.path(), "damaged.raw");
    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.seek(SeekFrom::Start(512 + 60)).unwrap();
    file.write_all(&[0x5A]).unwrap(); // inside the disk GUID: the header CRC no longer matches
    drop(file);
    let text = refused(&path).to_string();
    assert!(
        text.contains("primary GPT header is damaged (header CRC32 is"),
        "{text}"
    );
    // Only inspect has --use-backup-gpt, so only inspect suggests it.
    assert!(!text.contains("--use-backup-gpt"), "{text}");
    assert!(inspect_error(&path).contains("pass --use-backup-gpt"));
    let json = inspect_json(&path, &["--use-backup-gpt"]);
    assert_eq!(json["table_from_backup"], true);
    assert_eq!(json["disk_guid"], "00000000-0000-0000-0000-000000000001");
    assert_eq!(json["partitions"].as_array().unwrap().len(), 7);
    // Rewriting from the backup repairs the primary.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut table = PartitionTable::read(&mut file, true).unwrap();
    let len = file.metadata().unwrap().len();
    table.write(&mut file, len).unwrap();
    drop(file);
    assert!(sgdisk_verify(&path).0);
    assert_eq!(inspect_json(&path, &[])["table_from_backup"], false);
}

#[test]
fn damaged_partition_entries_name_the_crc() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_copy(dir.path(), "entries.raw");
    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.seek(SeekFrom::Start(1024 + 56)).unwrap();
    file.write_all(b"X").unwrap(); // in entry 1's name
    drop(file);
    let text = refused(&path).to_string();
    assert!(text.contains("partition entries CRC32 is"), "{text}");
}

#[test]
fn truncated_image() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_copy(dir.path(), "short.raw");
    let len = std::fs::metadata(&path).unwrap().len();
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - (1 << 20))
        .unwrap();
    let text = refused(&path).to_string();
    assert!(
        text.contains(&format!(
            "truncated image: the GPT says the disk is {len} bytes"
        )),
        "{text}"
    );
}

#[test]
fn overlapping_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_copy(dir.path(), "overlap.raw");
    let (_, table) = sgdisk_table(&path);
    let usr_a = table.iter().find(|p| p.slot == 3).unwrap();
    let usr_b = table.iter().find(|p| p.slot == 4).unwrap();
    forge_entry(&path, 4, usr_a.last - 100, usr_b.last);
    assert!(
        refused(&path)
            .to_string()
            .contains("partitions 3 and 4 overlap")
    );
}

#[test]
fn partition_beyond_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_copy(dir.path(), "beyond.raw");
    let (_, table) = sgdisk_table(&path);
    let root = table.iter().find(|p| p.slot == 9).unwrap();
    forge_entry(&path, 9, root.first, root.last + 100_000);
    let text = refused(&path).to_string();
    assert!(
        text.contains("partition 9 (ROOT)") && text.contains("outside the usable"),
        "{text}"
    );
}

#[test]
fn no_oem_partition() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_copy(dir.path(), "no-oem.raw");
    assert!(
        Command::new("sgdisk")
            .args(["-d", "6"])
            .arg(&path)
            .output()
            .unwrap()
            .status
            .success()
    );
    let text = refused(&path).to_string();
    assert!(text.contains("no partition named OEM"), "{text}");
    assert!(text.contains("9 ROOT"), "it lists what is there: {text}");
}

#[test]
fn guid_text_matches_sgdisk() {
    let (_, table) = sgdisk_table(fixture());
    let (_, ours) = disk::open_table(fixture(), false).unwrap();
    for (theirs, mine) in table.iter().zip(ours.partitions()) {
        assert_eq!(mine.unique_guid.to_string(), theirs.unique_guid);
        assert_eq!(
            theirs.unique_guid.parse::<Guid>().unwrap(),
            mine.unique_guid
        );
    }
}

#[test]
fn inspect_lists_the_oem_files() {
    let json = inspect_json(fixture(), &[]);
    let files = json["oem_files"].as_array().unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["grub.cfg", "oem-release"]);
    use sha2::Digest;
    let grub = b"# Flatcar OEM settings\nset oem_id=\"qemu\"\n";
    assert_eq!(
        files[0]["sha256"],
        kato_image::cache::hex(&sha2::Sha256::digest(grub))
    );
}
