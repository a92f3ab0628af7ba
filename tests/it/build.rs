//! `kato-image build` from a signed, bzip2'd Flatcar-shaped release on a loopback mirror,
//! judged by sgdisk, b3sum, btrfs check and GRUB's own btrfs driver.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::disk::{extract, fixture, sgdisk_verify};
use common::mirror::{IMAGE, Mirror, sha512_hex};
use common::signing::fixtures;

fn mirror_with(image: &Path) -> Mirror {
    Mirror::with_image(image)
}

fn build(mirror: &Mirror, out: &Path, extra: &[&str]) -> Output {
    mirror.build_with(common::kato(), out, extra)
}

fn ok(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn failure(out: &Output) -> String {
    assert!(!out.status.success(), "build should fail");
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

fn render(role: &str) -> Vec<u8> {
    common::kato()
        .args(["render", "--role", role])
        .output()
        .unwrap()
        .stdout
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    kato_image::cache::hex(&sha2::Sha256::digest(data))
}

/// The config baked into an image's OEM partition, read by GRUB and judged by
/// ignition-validate.
fn baked_config(image: &Path) -> serde_json::Value {
    let baked = common::btrfs::oem_cat(image, "/config.ign");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baked.ign");
    std::fs::write(&path, &baked).unwrap();
    let validated = common::judge("ignition-validate", &[], Some(&path));
    assert!(
        validated.status.success(),
        "{}",
        String::from_utf8_lossy(&validated.stderr)
    );
    serde_json::from_slice(&baked).unwrap()
}

fn manifest(out: &Path, role: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join(format!("{role}.manifest.json"))).unwrap())
        .unwrap()
}

#[test]
fn master_image_carries_its_config_and_nothing_else_changes() {
    let mirror = mirror_with(fixture());
    let out = tempfile::tempdir().unwrap();
    let summary = ok(&build(&mirror, out.path(), &["--role", "master"]));
    assert_eq!(summary[0]["role"], "master");
    let image = out.path().join("master.raw");
    let m = manifest(out.path(), "master");

    // The vendor artifact, as fetched and verified.
    let published = std::fs::read(mirror.dir().join(IMAGE)).unwrap();
    let vendor = &m["vendor"][0];
    assert_eq!(vendor["file"], IMAGE);
    assert_eq!(vendor["sha512"], sha512_hex(&published));
    assert_eq!(m["release"]["version"], "1.2.3");
    assert_eq!(
        vendor["signature"]["primary_fingerprint"],
        fixtures().primary
    );
    assert_eq!(m["profiles"][0]["path"], "base.yaml");
    assert_eq!(m["profiles"][1]["path"], "master.yaml");

    // Only OEM changed; every other partition hashes as before.
    let disk = &m["disks"][0];
    assert_eq!(disk["file"], "master.raw");
    assert_eq!(disk["from"], IMAGE);
    assert_eq!(disk["changed_partitions"], serde_json::json!(["OEM"]));
    for p in disk["partitions"].as_array().unwrap() {
        assert_eq!(p["changed"], p["name"] == "OEM", "{p}");
    }
    // The image digest, by an independent judge.
    assert_eq!(common::disk::b3sum(&image), disk["blake3"]);
    assert!(sgdisk_verify(&image).0);

    // GRUB reads the config and the kernel arguments through the GPT, old lines kept.
    let config = render("master");
    assert_eq!(common::btrfs::oem_cat(&image, "/config.ign"), config);
    assert_eq!(m["config"]["sha256"], sha256_hex(&config));
    let grub = String::from_utf8(common::btrfs::oem_cat(&image, "/grub.cfg")).unwrap();
    assert!(grub.contains("set oem_id=\"qemu\""), "{grub}");
    // Nobody gets a console shell unless the role asks for one (profiles/dev.yaml).
    assert!(!grub.contains("autologin"), "{grub}");

    // The OEM filesystem passes btrfs check.
    let (file, table) = kato_image::disk::open_table(&image, false).unwrap();
    let oem = table.by_name("OEM").unwrap();
    drop(file);
    let part = out.path().join("oem.btrfs");
    extract(&image, oem.start(), oem.len(), &part);
    let (ok, report) = common::btrfs::check(&part);
    assert!(ok, "{report}");

    // inspect shows the baked config.
    let json: serde_json::Value = serde_json::from_slice(
        &common::kato()
            .arg("inspect")
            .arg(&image)
            .arg("--json")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let files = json["oem_files"].as_array().unwrap();
    let baked = files.iter().find(|f| f["path"] == "config.ign").unwrap();
    assert_eq!(baked["sha256"], m["config"]["sha256"]);
}

#[test]
fn two_builds_of_the_same_inputs_are_byte_identical() {
    let mirror = mirror_with(fixture());
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    ok(&build(&mirror, a.path(), &["--role", "edge"]));
    ok(&build(&mirror, b.path(), &["--role", "edge"]));
    let status = Command::new("cmp")
        .arg(a.path().join("edge.raw"))
        .arg(b.path().join("edge.raw"))
        .status()
        .unwrap();
    assert!(status.success(), "images differ");
    assert_eq!(
        std::fs::read(a.path().join("edge.manifest.json")).unwrap(),
        std::fs::read(b.path().join("edge.manifest.json")).unwrap()
    );
    let m = manifest(a.path(), "edge");
    assert_eq!(m["kernel_args"], serde_json::json!(["net.ifnames=0"]));
    // The role's kernel arguments reach GRUB, after the vendor's lines, which stay.
    let grub = String::from_utf8(common::btrfs::oem_cat(
        &a.path().join("edge.raw"),
        "/grub.cfg",
    ))
    .unwrap();
    let oem_id = grub.find("set oem_id=\"qemu\"").expect("the vendor's line");
    let added = grub
        .find("set linux_append=\"$linux_append net.ifnames=0\"")
        .unwrap_or_else(|| panic!("{grub}"));
    assert!(oem_id < added, "{grub}");
    assert_eq!(m["timestamp"], 1_700_000_000);
}

#[test]
fn all_roles_share_one_download_and_one_decompression() {
    let mirror = mirror_with(fixture());
    let out = tempfile::tempdir().unwrap();
    let summary = ok(&build(&mirror, out.path(), &["--role", "all"]));
    let roles: Vec<&str> = summary
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["edge", "master", "worker"]);
    assert_eq!(
        mirror.artifact_requests().len(),
        1,
        "the image was downloaded once"
    );
    let raws: Vec<PathBuf> = std::fs::read_dir(mirror.cache.path().join("raw"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "raw"))
        .collect();
    assert_eq!(raws.len(), 1, "decompressed once");
    let ids: std::collections::BTreeSet<String> = roles
        .iter()
        .map(|r| {
            manifest(out.path(), r)["build_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids.len(), 3, "each role has its own build id");
    for role in roles {
        assert_eq!(
            common::btrfs::oem_cat(&out.path().join(format!("{role}.raw")), "/config.ign"),
            render(role)
        );
    }
}

/// Nothing but the folder's previous contents is left in `out`.
fn assert_nothing_written(out: &Path) {
    let left: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn unknown_role_fails_before_any_download() {
    let mirror = mirror_with(fixture());
    let out = tempfile::tempdir().unwrap();
    let error = failure(&build(&mirror, out.path(), &["--role", "master,database"]));
    assert!(error.contains("unknown role `database`"), "{error}");
    assert!(mirror.server.requests().is_empty());
    assert_nothing_written(out.path());
}

#[test]
fn an_oem_partition_that_is_not_btrfs_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let image = common::disk::fixture_copy(dir.path(), "ext4-oem.raw");
    let (_, table) = kato_image::disk::open_table(&image, false).unwrap();
    let oem = table.by_name("OEM").unwrap();
    let fs = dir.path().join("oem.ext4");
    std::fs::File::create(&fs)
        .unwrap()
        .set_len(oem.len())
        .unwrap();
    assert!(
        Command::new("mkfs.ext4")
            .args(["-q", "-L", "OEM"])
            .arg(&fs)
            .status()
            .unwrap()
            .success()
    );
    let script = format!(
        "dd if='{}' of='{}' bs=1M seek={} conv=notrunc status=none",
        fs.display(),
        image.display(),
        oem.start() >> 20
    );
    assert!(
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .status()
            .unwrap()
            .success()
    );
    let mirror = mirror_with(&image);
    let out = tempfile::tempdir().unwrap();
    let error = failure(&build(&mirror, out.path(), &["--role", "master"]));
    assert!(
        error.contains("the OEM partition holds ext4, not btrfs"),
        "{error}"
    );
    assert_nothing_written(out.path());
}

#[test]
fn a_config_too_big_for_the_oem_partition_says_how_much_is_needed() {
    let mirror = mirror_with(fixture());
    let project = common::Scratch::new();
    // Each file within the 64 MiB a file in a config may have; together too much.
    for name in ["huge-1.bin", "huge-2.bin"] {
        std::fs::File::create(project.path(&format!("profiles/{name}")))
            .unwrap()
            .set_len(60 << 20)
            .unwrap();
    }
    project.write("profiles/master.yaml", "extends: base\nunits:\n  - name: zookeeper@.service\n    instance_from: hostname\nfiles:\n  - path: /opt/huge-1.bin\n    source: huge-1.bin\n  - path: /opt/huge-2.bin\n    source: huge-2.bin\n");
    let out = tempfile::tempdir().unwrap();
    let error = failure(&build(
        &mirror,
        out.path(),
        &[
            "--role",
            "master",
            "--profiles",
            project.path("profiles").to_str().unwrap(),
        ],
    ));
    assert!(
        error.contains(
            "role master: the OEM partition is 134217728 bytes but its files and the config need"
        ),
        "{error}"
    );
    assert_nothing_written(out.path());
}

#[test]
fn an_output_folder_that_cannot_be_written() {
    let mirror = mirror_with(fixture());
    let dir = tempfile::tempdir().unwrap();
    let not_a_folder = dir.path().join("file");
    std::fs::write(&not_a_folder, b"x").unwrap();
    let error = failure(&build(&mirror, &not_a_folder, &["--role", "master"]));
    assert!(error.contains("file"), "{error}");
}

#[test]
fn a_full_disk_leaves_no_partial_output_and_the_cache_intact() {
    let mirror = mirror_with(fixture());
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    // A 2 MiB tmpfs cannot hold the image's data.
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(
        mounted.success(),
        "the tests run as root and mount a small tmpfs"
    );
    let out = build(&mirror, &small, &["--role", "master"]);
    let left: Vec<_> = std::fs::read_dir(&small)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let _ = Command::new("umount").arg(&small).status();
    let error = failure(&out);
    assert!(
        error.contains("No space left on device") || error.contains("os error 28"),
        "{error}"
    );
    assert!(left.is_empty(), "left behind: {left:?}");
    // The cache still serves a normal build without downloading again.
    mirror.server.clear_log();
    let out = tempfile::tempdir().unwrap();
    ok(&build(&mirror, out.path(), &["--role", "master"]));
    assert!(
        mirror.artifact_requests().is_empty(),
        "the cached base was reused"
    );
}

#[test]
fn a_base_without_an_oem_partition_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let image = common::disk::fixture_copy(dir.path(), "no-oem.raw");
    assert!(
        Command::new("sgdisk")
            .args(["-d", "6"])
            .arg(&image)
            .output()
            .unwrap()
            .status
            .success()
    );
    let mirror = mirror_with(&image);
    let out = tempfile::tempdir().unwrap();
    let error = failure(&build(&mirror, out.path(), &["--role", "master"]));
    assert!(error.contains("no partition named OEM"), "{error}");
    assert_nothing_written(out.path());
}

/// Console autologin is opt-in: a lab role that extends profiles/dev.yaml gets it in GRUB,
/// after the vendor's lines, and the shipped roles do not.
#[test]
fn console_autologin_only_for_roles_that_extend_dev() {
    let mirror = mirror_with(fixture());
    let scratch = common::Scratch::new();
    scratch.write(
        "profiles/lab.yaml",
        "extends: dev\ndescription: a lab machine\nkernel_args: [quiet]\n",
    );
    let out = tempfile::tempdir().unwrap();
    let mut cmd = common::kato();
    cmd.current_dir(scratch.dir.path());
    ok(&mirror.build_with(cmd, out.path(), &["--role", "lab,worker"]));
    let lab = manifest(out.path(), "lab");
    assert_eq!(
        lab["kernel_args"],
        serde_json::json!(["flatcar.autologin=tty1", "quiet"])
    );
    let grub = String::from_utf8(common::btrfs::oem_cat(
        &out.path().join("lab.raw"),
        "/grub.cfg",
    ))
    .unwrap();
    assert!(
        grub.contains("set linux_append=\"$linux_append flatcar.autologin=tty1 quiet\""),
        "{grub}"
    );
    let worker = manifest(out.path(), "worker");
    assert_eq!(worker["kernel_args"], serde_json::json!([]));
}

/// A role whose profile lists a Butane fragment: the image's config.ign carries the
/// fragment's file and unit beside the role's own and passes ignition-validate, its kernel
/// argument is on the image's command line, and the manifest counts the fragment among the
/// profile inputs.
#[test]
fn a_butane_fragment_is_baked_with_the_role() {
    let mirror = mirror_with(fixture());
    let scratch = common::Scratch::new();
    scratch.write(
        "profiles/extra.bu",
        "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/extra\n      contents: {inline: baked}\nsystemd:\n  units:\n    - name: extra.service\n      enabled: true\n      contents: \"[Service]\\nExecStart=/bin/true\\n[Install]\\nWantedBy=multi-user.target\\n\"\nkernel_arguments:\n  should_exist: [kato.extra=1]\n",
    );
    scratch.write(
        "profiles/lab.yaml",
        "extends: base\ndescription: a lab machine\nignition:\n  - butane: extra.bu\n",
    );
    let out = tempfile::tempdir().unwrap();
    let mut cmd = common::kato();
    cmd.current_dir(scratch.dir.path());
    ok(&mirror.build_with(cmd, out.path(), &["--role", "lab"]));
    let config = baked_config(&out.path().join("lab.raw"));
    let files = config["storage"]["files"].as_array().unwrap();
    let extra = files
        .iter()
        .find(|f| f["path"] == "/etc/extra")
        .expect("the fragment's file");
    assert_eq!(
        common::decode_data_url(extra["contents"]["source"].as_str().unwrap()),
        "baked"
    );
    assert!(files.iter().any(|f| f["path"] == "/etc/kato/role.env"));
    let units = config["systemd"]["units"].as_array().unwrap();
    assert!(
        units
            .iter()
            .any(|u| u["name"] == "extra.service" && u["enabled"] == true)
    );
    let grub = String::from_utf8(common::btrfs::oem_cat(
        &out.path().join("lab.raw"),
        "/grub.cfg",
    ))
    .unwrap();
    assert!(grub.contains("kato.extra=1"), "{grub}");
    let manifest = manifest(out.path(), "lab");
    assert_eq!(manifest["kernel_args"], serde_json::json!(["kato.extra=1"]));
    let profiles = manifest["profiles"].as_array().unwrap();
    assert_eq!(
        profiles.len(),
        3,
        "base.yaml, lab.yaml and extra.bu: {profiles:?}"
    );
}

/// `--format cloud-config`: the role's cloud-config reaches ROOT where Flatcar's
/// coreos-cloudinit runs it on every boot (`/var/lib/flatcar-install/user_data`, as
/// `flatcar-install -c` writes it), through a one-file Ignition config that
/// ignition-validate accepts; the manifest says which format the machines get.
#[test]
fn a_cloud_config_build_bakes_the_roles_cloud_config_for_coreos_cloudinit() {
    let mirror = mirror_with(fixture());
    let out = tempfile::tempdir().unwrap();
    ok(&build(
        &mirror,
        out.path(),
        &["--role", "worker", "--format", "cloud-config"],
    ));
    let image = out.path().join("worker.raw");
    let config = baked_config(&image);
    assert_eq!(config["ignition"]["version"], "3.3.0");
    let files = config["storage"]["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{config}");
    assert_eq!(files[0]["path"], "/var/lib/flatcar-install/user_data");
    assert_eq!(files[0]["mode"], 0o600);
    assert!(config.get("systemd").is_none() && config.get("passwd").is_none());
    let user_data = common::decode_data_url_bytes(files[0]["contents"]["source"].as_str().unwrap());
    let rendered = common::kato()
        .args(["render", "--role", "worker", "--format", "cloud-config"])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(user_data, rendered);
    assert!(user_data.starts_with(b"#cloud-config\n"));
    let m = manifest(out.path(), "worker");
    assert_eq!(m["config"]["format"], "cloud-config");
    assert_eq!(
        m["config"]["sha256"],
        sha256_hex(&common::btrfs::oem_cat(&image, "/config.ign"))
    );
    // Another format is another build.
    let other = tempfile::tempdir().unwrap();
    ok(&build(&mirror, other.path(), &["--role", "worker"]));
    assert_ne!(manifest(other.path(), "worker")["build_id"], m["build_id"]);
}
