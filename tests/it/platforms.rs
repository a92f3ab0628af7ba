//! Platform disks (`--output qemu,azure,gce,hetzner,...`) from the mini release, judged by
//! `qemu-img` (check, compare, info, convert; `-f vpc` for VHD), Debian's libqcow and libvhdi
//! readers, GNU tar and gzip, sgdisk, GRUB's own btrfs driver, b3sum, and a boot under QEMU.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::boot::{mini_build_args, mini_release};
use common::http::Server;

const ROLE: &str = "edge";
const OUTPUTS: &str = "raw,qemu,openstack,azure,gce,hetzner";
const VM_ROOT_SECTORS: u64 = 12_943_360;
const AZURE_DISK_SECTORS: u64 = 63_737_856;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

struct Built {
    _server: Server,
    cache: tempfile::TempDir,
    out: tempfile::TempDir,
    template: String,
}

fn template(server: &Server) -> String {
    format!("{}{{channel}}/{{board}}/{{version}}/", server.url())
}

fn build_into(template: &str, cache: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    common::kato()
        .args(["build", "--quiet", "--role", ROLE])
        .args(extra)
        .args(mini_build_args(template, cache, out))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap()
}

/// One build of every platform the mini release has an OEM for, shared by the tests.
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let server = Server::start(mini_release());
        let template = template(&server);
        let cache = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let result = build_into(&template, cache.path(), out.path(), &["--output", OUTPUTS]);
        assert!(
            result.status.success(),
            "build: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        Built {
            _server: server,
            cache,
            out,
            template,
        }
    })
}

fn out(file: &str) -> PathBuf {
    built().out.path().join(file)
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join(format!("{ROLE}.manifest.json"))).unwrap())
        .unwrap()
}

fn disk_record(platform: &str) -> serde_json::Value {
    manifest(built().out.path())["disks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["platform"]["name"] == platform)
        .unwrap_or_else(|| panic!("no {platform} disk in the manifest"))
        .clone()
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn b3sum(path: &Path) -> String {
    common::disk::b3sum(path)
}

fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

fn u64_of(value: &serde_json::Value) -> u64 {
    value.as_u64().unwrap()
}

/// `qemu-img convert` of `image` (in `format`) to a sparse raw file in `dir`.
fn to_raw(image: &Path, format: &str, dir: &Path) -> PathBuf {
    let raw = dir.join("converted.raw");
    run(
        "qemu-img",
        &[
            "convert",
            "-f",
            format,
            "-O",
            "raw",
            image.to_str().unwrap(),
            raw.to_str().unwrap(),
        ],
    );
    raw
}

/// `qemu-img compare` of `image` (in `format`) with the raw disk `raw`: the same bytes.
fn assert_reads_as(image: &Path, format: &str, raw: &Path) {
    let compare = run(
        "qemu-img",
        &[
            "compare",
            "-f",
            format,
            "-F",
            "raw",
            image.to_str().unwrap(),
            raw.to_str().unwrap(),
        ],
    );
    assert!(compare.contains("identical"), "{compare}");
}

/// `qemu-img info --output=json`, with `-f format` when given.
fn qemu_info(image: &Path, format: Option<&str>) -> serde_json::Value {
    let mut args = vec!["info"];
    if let Some(format) = format {
        args.extend(["-f", format]);
    }
    args.extend(["--output=json", image.to_str().unwrap()]);
    serde_json::from_str(&run("qemu-img", &args)).unwrap()
}

/// ROOT's sectors, and the sectors it can grow to: from its start to the last usable one
/// (sgdisk's reading).
fn root_and_room(raw: &Path) -> (u64, u64) {
    let (_, partitions) = common::disk::sgdisk_table(raw);
    let report = common::disk::sgdisk(&["-p"], raw);
    let root = partitions
        .iter()
        .find(|p| p.name == "ROOT")
        .unwrap_or_else(|| panic!("no ROOT: {report}"));
    let last_usable: u64 = report
        .split("last usable sector is ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no last usable sector: {report}"));
    (root.last - root.first + 1, last_usable - root.first + 1)
}

/// ROOT is as the vendor made it, with room after it to reach the VM layout's size: Flatcar's
/// first boot grows the partition and then its ext4 (`extend-filesystems` runs `resize2fs`
/// only if the partition grew, so a ROOT entry grown at build time would keep a small `/`).
fn assert_root_left_to_grow(raw: &Path) {
    let (root, room) = root_and_room(raw);
    let (vendor_root, _) = root_and_room(&common::boot::mini_release().join("base.raw"));
    assert_eq!(root, vendor_root, "ROOT's entry is the vendor's");
    assert!(room >= VM_ROOT_SECTORS, "room for ROOT: {room} sectors");
    assert!(room - root >= 4096, "at least cgpt's 2 MiB to grow by");
}

fn assert_sgdisk_clean(raw: &Path) {
    let (ok, report) = common::disk::sgdisk_verify(raw);
    assert!(ok, "sgdisk -v: {report}");
}

#[test]
fn the_qcow2_passes_qemu_img_check_and_holds_the_disk_the_manifest_names() {
    let image = out(&format!("{ROLE}-qemu.qcow2"));
    let record = disk_record("qemu");
    let check = run("qemu-img", &["check", image.to_str().unwrap()]);
    assert!(check.contains("No errors were found"), "{check}");
    let info = qemu_info(&image, None);
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["format-specific"]["data"]["compat"], "1.1");
    assert_eq!(info["format-specific"]["data"]["corrupt"], false);
    assert_eq!(info["virtual-size"], record["platform"]["disk_size"]);
    let libqcow = run("qcowinfo", &[image.to_str().unwrap()]);
    assert!(
        libqcow.contains(&format!("({} bytes)", record["platform"]["disk_size"])),
        "{libqcow}"
    );
    assert_eq!(record["blake3"], b3sum(&image));
    assert_eq!(
        u64_of(&record["size"]),
        std::fs::metadata(&image).unwrap().len()
    );

    let dir = tempfile::tempdir().unwrap();
    let raw = to_raw(&image, "qcow2", dir.path());
    assert_eq!(record["platform"]["disk_blake3"], b3sum(&raw));
    assert_sgdisk_clean(&raw);
    assert_root_left_to_grow(&raw);
    // Holes stay holes: the qcow2 is no larger than the data it holds, plus metadata.
    let file_len = std::fs::metadata(&image).unwrap().len();
    assert!(
        file_len <= allocated(&raw) + 4 * MIB,
        "qcow2 {file_len} bytes for {} bytes of data",
        allocated(&raw)
    );
}

#[test]
fn the_fixed_vhd_is_the_raw_disk_and_a_footer_every_reader_sizes_alike() {
    let image = out(&format!("{ROLE}-azure.vhd"));
    let record = disk_record("azure");
    let disk_size = u64_of(&record["platform"]["disk_size"]);
    let len = std::fs::metadata(&image).unwrap().len();
    assert_eq!(len, disk_size + 512);
    assert_eq!(disk_size % MIB, 0, "Azure takes whole MiB");
    assert!(disk_size / 512 >= AZURE_DISK_SECTORS);
    let info = qemu_info(&image, Some("vpc"));
    assert_eq!(info["format"], "vpc");
    assert_eq!(u64_of(&info["virtual-size"]), disk_size);
    let libvhdi = run("vhdiinfo", &[image.to_str().unwrap()]);
    assert!(libvhdi.contains("Fixed"), "{libvhdi}");
    assert!(
        libvhdi.contains(&format!("({disk_size} bytes)")),
        "{libvhdi}"
    );
    assert_eq!(record["blake3"], b3sum(&image));
    // The raw part is sparse on disk.
    assert!(
        allocated(&image) < 200 * MIB,
        "{} allocated",
        allocated(&image)
    );

    let dir = tempfile::tempdir().unwrap();
    let raw = to_raw(&image, "vpc", dir.path());
    assert_eq!(record["platform"]["disk_blake3"], b3sum(&raw));
    assert_reads_as(&image, "vpc", &raw);
    assert_sgdisk_clean(&raw);
}

#[test]
fn the_gce_archive_is_one_sparse_disk_raw() {
    let image = out(&format!("{ROLE}-gce.tar.gz"));
    let record = disk_record("gce");
    run("gzip", &["-t", image.to_str().unwrap()]);
    let listing = run("tar", &["-tvSzf", image.to_str().unwrap()]);
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 1, "{listing}");
    assert!(lines[0].ends_with(" disk.raw"), "{listing}");
    let disk_size = u64_of(&record["platform"]["disk_size"]);
    assert!(lines[0].contains(&disk_size.to_string()), "{listing}");
    assert_eq!(disk_size % GIB, 0, "GCE imports whole GiB");
    assert_eq!(record["blake3"], b3sum(&image));

    let dir = tempfile::tempdir().unwrap();
    run(
        "tar",
        &[
            "-xSzf",
            image.to_str().unwrap(),
            "-C",
            dir.path().to_str().unwrap(),
        ],
    );
    let raw = dir.path().join("disk.raw");
    assert_eq!(std::fs::metadata(&raw).unwrap().len(), disk_size);
    assert_eq!(record["platform"]["disk_blake3"], b3sum(&raw));
    assert!(allocated(&raw) < 200 * MIB, "extracted sparse");
    assert_sgdisk_clean(&raw);
    assert_root_left_to_grow(&raw);
    let grub = String::from_utf8(common::btrfs::oem_cat(&raw, "/grub.cfg")).unwrap();
    assert!(grub.contains("set oem_id=\"gce\""), "{grub}");
    assert!(grub.contains("console=ttyS0,115200n8"), "{grub}");
}

#[test]
fn each_platform_disk_has_its_oem_installed_with_the_roles_config_and_arguments() {
    let release = mini_release().join("stable/amd64-usr/1.2.3");
    let dir = tempfile::tempdir().unwrap();
    let rendered = common::kato()
        .args(["render", "--role", ROLE])
        .output()
        .unwrap()
        .stdout;
    for (platform, raw) in [
        ("hetzner", out(&format!("{ROLE}-hetzner.raw"))),
        (
            "openstack",
            to_raw(
                &out(&format!("{ROLE}-openstack.qcow2")),
                "qcow2",
                dir.path(),
            ),
        ),
    ] {
        let grub = String::from_utf8(common::btrfs::oem_cat(&raw, "/grub.cfg")).unwrap();
        assert!(
            grub.contains(&format!("set oem_id=\"{platform}\"")),
            "{grub}"
        );
        assert!(!grub.contains("autologin"), "the profile decides: {grub}");
        assert!(
            grub.contains("net.ifnames=0"),
            "the role's arguments: {grub}"
        );
        let oem_release = String::from_utf8(common::btrfs::oem_cat(&raw, "/oem-release")).unwrap();
        assert!(
            oem_release.lines().any(|l| l == format!("ID={platform}")),
            "{oem_release}"
        );
        let sysext = common::btrfs::oem_cat(&raw, &format!("/sysext/oem-{platform}-1.2.3.raw"));
        assert_eq!(
            sysext,
            std::fs::read(release.join(format!("oem-{platform}.raw"))).unwrap()
        );
        assert!(common::btrfs::oem_cat(&raw, &format!("/sysext/active-oem-{platform}")).is_empty());
        assert_eq!(common::btrfs::oem_cat(&raw, "/config.ign"), rendered);
        assert_sgdisk_clean(&raw);
    }
    // The plain raw output keeps the generic image's grub.cfg and has no sysext.
    let plain = out(&format!("{ROLE}.raw"));
    let grub = String::from_utf8_lossy(&common::btrfs::oem_cat(&plain, "/grub.cfg")).into_owned();
    assert!(!grub.contains("written by kato-image"), "{grub}");
    assert!(grub.contains("net.ifnames=0"), "{grub}");
}

#[test]
fn the_manifest_records_each_outputs_platform_oem_format_and_digest() {
    let release = mini_release().join("stable/amd64-usr/1.2.3");
    let manifest = manifest(built().out.path());
    let vendor: Vec<&str> = manifest["vendor"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["file"].as_str().unwrap())
        .collect();
    for (platform, format) in [
        ("qemu", "qcow2"),
        ("openstack", "qcow2"),
        ("azure", "vhd-fixed"),
        ("gce", "gce-tar"),
        ("hetzner", "raw"),
    ] {
        let record = disk_record(platform);
        let file = record["file"].as_str().unwrap();
        assert_eq!(record["platform"]["format"], format);
        assert_eq!(record["blake3"], b3sum(&out(file)), "{file}");
        let oem = &record["platform"]["oem"];
        let sysext = format!("oem-{platform}.raw");
        assert_eq!(oem["file"], sysext);
        assert_eq!(
            oem["sha512"],
            common::mirror::sha512_hex(&std::fs::read(release.join(&sysext)).unwrap())
        );
        assert!(oem["signature"]["primary_fingerprint"].is_string(), "{oem}");
        assert_eq!(
            oem["installed_as"],
            format!("/oem/sysext/oem-{platform}-1.2.3.raw")
        );
        assert!(vendor.contains(&sysext.as_str()), "{vendor:?}");
    }
    // The generic image is listed once although five disks are made from it.
    assert_eq!(
        vendor
            .iter()
            .filter(|v| **v == "flatcar_production_image.bin.bz2")
            .count(),
        1
    );
    // Each output is a subject of the provenance statement.
    let statement: serde_json::Value = serde_json::from_slice(
        &std::fs::read(built().out.path().join(format!("{ROLE}.provenance.json"))).unwrap(),
    )
    .unwrap();
    let subjects = statement["subject"].to_string();
    for platform in ["qemu", "azure", "gce", "hetzner"] {
        let file = disk_record(platform)["file"].as_str().unwrap().to_string();
        assert!(subjects.contains(&file), "{file} not in {subjects}");
    }
}

#[test]
fn verify_checks_every_platform_output_and_finds_a_changed_byte() {
    let dir = tempfile::tempdir().unwrap();
    for platform in ["qemu", "azure", "gce", "hetzner"] {
        let file = disk_record(platform)["file"].as_str().unwrap().to_string();
        let result = common::kato()
            .args(["verify", "--json", "--cache"])
            .arg(built().cache.path())
            .arg(out(&file))
            .output()
            .unwrap();
        assert!(
            result.status.success(),
            "{file}: {}{}",
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
        // A copy with one byte changed, beside a copy of the manifest.
        let copy = dir.path().join(&file);
        run(
            "cp",
            &[
                "--sparse=always",
                out(&file).to_str().unwrap(),
                copy.to_str().unwrap(),
            ],
        );
        std::fs::copy(
            built().out.path().join(format!("{ROLE}.manifest.json")),
            dir.path().join(format!("{ROLE}.manifest.json")),
        )
        .unwrap();
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&copy)
                .unwrap();
            let mut byte = [0u8];
            f.read_exact_at(&mut byte, 1000).unwrap();
            f.write_all_at(&[byte[0] ^ 0x40], 1000).unwrap();
        }
        let result = common::kato()
            .args(["verify", "--cache"])
            .arg(built().cache.path())
            .arg(&copy)
            .output()
            .unwrap();
        assert!(
            !result.status.success(),
            "{file} with a changed byte passed"
        );
        let text = String::from_utf8_lossy(&result.stdout);
        assert!(text.contains("problem:"), "{text}");
    }
}

#[test]
fn platform_outputs_are_byte_identical_across_builds() {
    let built = built();
    let cache = tempfile::tempdir().unwrap();
    let again = tempfile::tempdir().unwrap();
    let result = build_into(
        &built.template,
        cache.path(),
        again.path(),
        &["--output", OUTPUTS],
    );
    assert!(result.status.success());
    for platform in ["qemu", "azure", "gce", "hetzner"] {
        let file = disk_record(platform)["file"].as_str().unwrap().to_string();
        assert_eq!(
            b3sum(&out(&file)),
            b3sum(&again.path().join(&file)),
            "{file}"
        );
    }
    assert_eq!(manifest(built.out.path()), manifest(again.path()));
}

#[test]
fn the_qcow2_boots_with_the_platforms_oem_id_and_the_roles_arguments() {
    let image = out(&format!("{ROLE}-qemu.qcow2"));
    let mut args = common::boot::uefi_disk_args(&image);
    let drive = args.iter_mut().find(|a| a.starts_with("file=")).unwrap();
    // A snapshot: the guest's writes (and QEMU's write lock) stay off the shared output,
    // which other tests read with qemu-img at the same time.
    *drive = drive.replace("format=raw", "format=qcow2,snapshot=on");
    let _one = common::boot::one_vm();
    let console = common::boot::qemu_console(
        512,
        1,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        180,
    );
    let cmdline = console
        .lines()
        .find_map(|l| l.split("KATO-MARKER cmdline: ").nth(1))
        .unwrap_or_else(|| panic!("no command line; console:\n{console}"));
    assert!(cmdline.contains("flatcar.oem.id=qemu"), "{cmdline}");
    assert!(cmdline.contains("net.ifnames=0"), "{cmdline}");
    assert!(
        console.contains("KATO-MARKER config-source: oem"),
        "{console}"
    );
    assert!(console.contains("KATO-MARKER done"), "{console}");
}

fn assert_nothing_written(out: &Path) {
    let left: Vec<_> = std::fs::read_dir(out)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A copy of the mini release's `stable` folder, to break on purpose.
fn release_copy() -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    run(
        "cp",
        &[
            "-a",
            mini_release().join("stable").to_str().unwrap(),
            copy.path().to_str().unwrap(),
        ],
    );
    copy
}

/// The one line a `--output qemu` build from `server` fails with, with a fresh cache.
fn failed_qemu_build(server: &Server, out: &Path) -> String {
    failed_qemu_build_in(server, tempfile::tempdir().unwrap().path(), out)
}

fn failed_qemu_build_in(server: &Server, cache: &Path, out: &Path) -> String {
    last_line(&build_into(
        &template(server),
        cache,
        out,
        &["--output", "qemu"],
    ))
}

fn last_line(output: &std::process::Output) -> String {
    assert!(!output.status.success(), "the build should fail");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    lines[0].to_string()
}

#[test]
fn a_release_without_the_platforms_oem_is_refused_before_anything_is_written() {
    let built = built();
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let result = build_into(
        &built.template,
        cache.path(),
        out.path(),
        &["--output", "raw,digitalocean"],
    );
    let line = last_line(&result);
    assert!(line.contains("oem-digitalocean.raw"), "{line}");
    assert!(line.contains("DigitalOcean"), "{line}");
    assert_nothing_written(out.path());
}

#[test]
fn an_oem_sysext_whose_signature_fails_is_never_used() {
    let copy = release_copy();
    let sysext = copy.path().join("stable/amd64-usr/1.2.3/oem-qemu.raw");
    let mut bytes = std::fs::read(&sysext).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&sysext, &bytes).unwrap();
    let server = Server::start(copy.path());
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let line = failed_qemu_build_in(&server, cache.path(), out.path());
    assert!(line.contains("oem-qemu.raw"), "{line}");
    assert_nothing_written(out.path());
    let cached: Vec<_> = walk(cache.path())
        .into_iter()
        .filter(|p| std::fs::read(p).map(|b| b == bytes).unwrap_or(false))
        .collect();
    assert!(cached.is_empty(), "the forged sysext was kept: {cached:?}");
}

/// A sysext whose signature is missing, or a server announcing a petabyte for it, is told in
/// one line naming the file, and nothing is written.
#[test]
fn a_missing_oem_signature_and_an_absurd_length_are_named() {
    let copy = release_copy();
    let folder = copy.path().join("stable/amd64-usr/1.2.3");
    let server = Server::start(copy.path());
    let out = tempfile::tempdir().unwrap();
    // Every attempt (the fetcher retries a dropped transfer) meets the same lie.
    for _ in 0..8 {
        server.fault(
            "/stable/amd64-usr/1.2.3/oem-qemu.raw",
            common::http::Fault::Announce(1 << 50),
        );
    }
    let line = failed_qemu_build(&server, out.path());
    let attempts = server
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/oem-qemu.raw"))
        .count();
    assert_eq!(
        attempts, 1,
        "an announced length over the bound is not retried"
    );
    assert!(
        line.contains("oem-qemu.raw: the server announces 1125899906842624 bytes, more than any file kato-image fetches (at most 64 GiB)"),
        "{line}"
    );
    assert_nothing_written(out.path());
    std::fs::remove_file(folder.join("oem-qemu.raw.sig")).unwrap();
    let line = failed_qemu_build(&server, out.path());
    assert!(
        line.contains("the signature oem-qemu.raw.sig was not found") && line.contains("404"),
        "{line}"
    );
    assert_nothing_written(out.path());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn platforms_a_board_lacks_are_refused_before_any_download() {
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let result = build_into(
        &format!("http://127.0.0.1:{port}/{{channel}}/{{board}}/{{version}}/"),
        cache.path(),
        out.path(),
        &["--board", "arm64-usr", "--output", "azure,gce"],
    );
    let line = last_line(&result);
    assert!(line.contains("gce"), "{line}");
    assert!(line.contains("amd64-usr only"), "{line}");
    assert_nothing_written(out.path());
}

#[test]
fn an_unknown_platform_is_named_with_the_ones_there_are() {
    let result = common::kato()
        .args(["build", "--role", ROLE, "--output", "raw,aws"])
        .output()
        .unwrap();
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("aws"), "{stderr}");
    assert!(stderr.contains("openstack"), "{stderr}");

    let project = common::Scratch::new();
    project.write(
        "profiles/box.yaml",
        "description: a box\noutputs:\n  platforms: [openstack, aws]\n",
    );
    let result = project.kato(&["validate"]).output().unwrap();
    let line = last_line(&result);
    assert!(line.contains("box.yaml:3:"), "{line}");
    assert!(line.contains("\"aws\" is not a platform"), "{line}");
    assert!(line.contains("openstack"), "{line}");
}

#[test]
fn a_profile_lists_its_platforms() {
    let project = common::Scratch::new();
    project.write(
        "profiles/box.yaml",
        "description: a box\nkernel_args: [quiet]\noutputs:\n  platforms: [openstack]\n",
    );
    let built = built();
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let result = project
        .kato(&["build", "--quiet", "--role", "box"])
        .args(mini_build_args(&built.template, cache.path(), out.path()))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let files: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("box") && !n.ends_with(".json"))
        .collect();
    assert_eq!(files, vec!["box-openstack.qcow2".to_string()]);
}

/// The container writers on their own, on a disk with holes, zero-filled data, and a last
/// cluster that is partly past the end: qemu-img must read back the same disk.
#[test]
fn the_writers_turn_any_sparse_disk_into_what_qemu_img_reads_back_identically() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let raw_path = dir.path().join("disk.raw");
    let size: u64 = 3 * 512 * MIB + 12345 * 512;
    let raw = std::fs::File::create(&raw_path).unwrap();
    raw.set_len(size).unwrap();
    for (offset, byte, len) in [
        (0u64, 0xA5u8, 70_000usize),
        (5 * MIB + 17, 0x00, 300_000), // data extent of zeros: no cluster
        (512 * MIB - 100, 0x5A, 200),  // across an L2 table's edge
        (1200 * MIB, 0x11, 2 * MIB as usize),
        (size - 4096, 0x77, 4096), // the partial last cluster
    ] {
        raw.write_all_at(&vec![byte; len], offset).unwrap();
    }
    raw.sync_all().unwrap();
    let source = std::fs::File::open(&raw_path).unwrap();

    let qcow_path = dir.path().join("disk.qcow2");
    let qcow = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&qcow_path)
        .unwrap();
    let written = kato_image::emit::format::qcow2::write(&source, size, &qcow).unwrap();
    assert_eq!(written.len, std::fs::metadata(&qcow_path).unwrap().len());
    // Hashed as written, with the gap of skipped zero clusters hashed as zeros.
    assert_eq!(written.blake3.to_hex().to_string(), b3sum(&qcow_path));
    let check = run("qemu-img", &["check", qcow_path.to_str().unwrap()]);
    assert!(check.contains("No errors"), "{check}");
    assert_reads_as(&qcow_path, "qcow2", &raw_path);
    // Only clusters with nonzero bytes hold data: 2 + 2 + 32 + 1 of 64 KiB.
    let map: serde_json::Value = serde_json::from_str(&run(
        "qemu-img",
        &["map", "--output=json", qcow_path.to_str().unwrap()],
    ))
    .unwrap();
    let data: u64 = map
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["data"] == true)
        .map(|m| m["length"].as_u64().unwrap())
        .sum();
    assert_eq!(written.data_clusters, 2 + 2 + 32 + 1);
    // The map stops at the disk's end, inside the last cluster.
    assert_eq!(data, 36 * 65536 + size % 65536);

    // A fixed VHD of the same disk, read back by qemu's vpc driver.
    let vhd_size = kato_image::emit::format::vhd::exact_size(size).unwrap();
    let vhd_path = dir.path().join("disk.vhd");
    run(
        "cp",
        &[
            "--sparse=always",
            raw_path.to_str().unwrap(),
            vhd_path.to_str().unwrap(),
        ],
    );
    let vhd = std::fs::OpenOptions::new()
        .write(true)
        .open(&vhd_path)
        .unwrap();
    vhd.set_len(vhd_size).unwrap();
    let footer = kato_image::emit::format::vhd::Footer {
        size: vhd_size,
        time: 1_700_000_000,
        unique_id: [9; 16],
    };
    vhd.write_all_at(&footer.to_bytes(), vhd_size).unwrap();
    let info = qemu_info(&vhd_path, Some("vpc"));
    assert_eq!(u64_of(&info["virtual-size"]), vhd_size);
    assert_reads_as(&vhd_path, "vpc", &raw_path);
}
