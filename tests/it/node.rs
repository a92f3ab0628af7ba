//! Machines come up configured for their role, judged from inside the booted machine: every
//! role built from the node stand-in (scripts/node-release: a Debian systemd root with
//! Docker whose initramfs runs the real Ignition the way Flatcar's does) and booted under
//! QEMU with no network at all. Its probe reports Ignition's result, the role's files, users,
//! units, the images Docker holds and what the containers printed.

use crate::common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::OnceLock;

use common::Scratch;
use common::http::Server;
use common::node::{
    Flavour, Report, boot_disk, boot_disk_with, boot_ipxe, boot_ipxe_report, busybox_archive,
    node_release,
};

/// ZooKeeper's template, for the test: it runs the baked test image and says which member
/// of the ensemble it is.
const MEMBER_UNIT: &str = "[Unit]
Description=Test member %i of the ensemble
After=docker.service
Requires=docker.service

[Service]
ExecStartPre=-/usr/bin/docker rm -f kato-member-%i
ExecStart=/usr/bin/docker run --rm --net none --name kato-member-%i kato-test/busy:1 /bin/sh -c \"echo KATO-TEST member %i; exec /bin/busybox sleep 100000\"

[X-Fleet]
MachineMetadata=role=master
";

const MASTER_MAC: &str = "52:54:00:00:00:0a";
const WORKER_MAC: &str = "52:54:00:00:00:0b";

struct Built {
    _scratch: Scratch,
    /// The release's server and the cache, for builds of other outputs.
    server: Server,
    cache: tempfile::TempDir,
    out: tempfile::TempDir,
    /// The image ID of the baked test image.
    image_id: String,
    /// Each role's rendered config.
    configs: Vec<(String, serde_json::Value)>,
}

/// Every role, raw and iPXE, from the node release; master with a baked busybox image, a
/// unit that runs it, the test's ZooKeeper template, the host name master-2 and a machine
/// entry giving member 3 to an iPXE boot.
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let release = node_release();
        let scratch = Scratch::new();
        // Inside the profiles folder, where a profile's files may come from.
        let (archive, image_id) = busybox_archive(&scratch.path("profiles"));
        scratch.write("units/zookeeper@.service", MEMBER_UNIT);
        let master = std::fs::read_to_string(scratch.path("profiles/master.yaml")).unwrap();
        let metadata = &master[master.find("metadata:").unwrap()..];
        scratch.write(
            "profiles/master.yaml",
            &format!(
                "extends: base
description: test master
units:
  - name: zookeeper@.service
    instance_from: machine
  - name: kato-test-hello.service
    contents: |
      [Unit]
      Description=Runs the baked test image
      After=docker.service
      Requires=docker.service
      [Service]
      Type=oneshot
      RemainAfterExit=yes
      ExecStart=/usr/bin/docker run --rm --net none kato-test/busy:1 /bin/sh -c \"echo KATO-TEST hello from a baked image\"
      [Install]
      WantedBy=multi-user.target
images:
  - archive: {}
files:
  - path: /etc/hostname
    contents: \"master-2\\n\"
machines:
  - {{mac: \"{MASTER_MAC}\", instance: 3}}
{metadata}",
                archive.display()
            ),
        );
        // The worker boots over iPXE with the `packet` preset (its console set to the one
        // serial port QEMU shows).
        let worker = std::fs::read_to_string(scratch.path("profiles/worker.yaml")).unwrap();
        scratch.write(
            "profiles/worker.yaml",
            &format!(
                "{worker}outputs:\n  raw: {{}}\n  ipxe:\n    preset: packet\n    console: ttyS0,115200n8\nmachines:\n  - {{mac: \"{WORKER_MAC}\", instance: 1}}\n"
            ),
        );
        let server = Server::start(release);
        let template = format!("{}{{channel}}/{{board}}/{{version}}/", server.url());
        let cache = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        common::boot::build_all_with(
            scratch.kato(&[]),
            &template,
            &release.join("keyring.asc"),
            cache.path(),
            out.path(),
            &["--output", "raw,ipxe"],
        );
        let configs = ["edge", "master", "worker"]
            .iter()
            .map(|role| {
                let rendered = scratch.kato(&["render", "--role", role]).output().unwrap();
                (
                    role.to_string(),
                    serde_json::from_slice(&rendered.stdout).unwrap(),
                )
            })
            .collect();
        Built {
            _scratch: scratch,
            server,
            cache,
            out,
            image_id,
            configs,
        }
    })
}

impl Built {
    fn config(&self, role: &str) -> &serde_json::Value {
        &self.configs.iter().find(|(r, _)| r == role).unwrap().1
    }

    fn image(&self, role: &str) -> PathBuf {
        self.out.path().join(format!("{role}.raw"))
    }

    fn manifest(&self, role: &str) -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(self.out.path().join(format!("{role}.manifest.json"))).unwrap(),
        )
        .unwrap()
    }

    /// The units a role's config enables, and those it writes at all.
    fn units(&self, role: &str) -> (BTreeSet<String>, BTreeSet<String>) {
        let units = self.config(role)["systemd"]["units"].as_array().unwrap();
        let name = |u: &serde_json::Value| u["name"].as_str().unwrap().to_string();
        (
            units
                .iter()
                .filter(|u| u["enabled"] == true)
                .map(name)
                .collect(),
            units.iter().map(name).collect(),
        )
    }

    fn file(&self, role: &str, path: &str) -> Vec<u8> {
        let files = self.config(role)["storage"]["files"].as_array().unwrap();
        let file = files.iter().find(|f| f["path"] == path).unwrap();
        common::decode_data_url(file["contents"]["source"].as_str().unwrap()).into_bytes()
    }
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    kato_image::cache::hex(&sha2::Sha256::digest(bytes))
}

/// What every provisioned role shows: Ignition ran on this boot and finished, the role's
/// environment file, the core user with the profile's key, the role's units enabled and no
/// unit of another role on the machine.
fn assert_provisioned(built: &Built, role: &str, report: &Report) {
    assert_eq!(
        report.get("ignition-ran"),
        Some("yes"),
        "{role}: {}",
        report.console
    );
    let result = report.get("ignition-result").unwrap();
    let boot_id = report.get("boot-id").unwrap();
    assert!(
        result.contains(&format!("\"provisioningBootID\": \"{boot_id}\""))
            && result.contains("\"userConfigProvided\": true"),
        "{role}: Ignition's result: {result}"
    );
    for stage in ["fetch-offline", "kargs", "disks", "mount", "files"] {
        assert!(
            report
                .all("ignition-stage")
                .contains(&format!("{stage} ok").as_str()),
            "{role}: stage {stage}: {:?}",
            report.all("ignition-stage")
        );
    }
    assert_eq!(
        report.get("role-env-sha256"),
        Some(sha256(&built.file(role, "/etc/kato/role.env")).as_str()),
        "{role}: /etc/kato/role.env"
    );
    assert!(
        report
            .all("role-env")
            .contains(&format!("KATO_ROLE=\"{role}\"").as_str()),
        "{role}: {:?}",
        report.all("role-env")
    );
    let base = std::fs::read_to_string(common::repo().join("profiles/base.yaml")).unwrap();
    let key = base
        .lines()
        .find_map(|l| l.trim().strip_prefix("- ssh-ed25519 "))
        .unwrap();
    // core is Flatcar's, in wheel, docker and systemd-journal: Ignition (usermod --groups,
    // which replaces) was given no groups for it.
    let user = report.get("user").unwrap_or_default();
    assert!(user.starts_with("core "), "{role}: {user}");
    for group in ["wheel", "docker", "systemd-journal"] {
        assert!(
            user.contains(&format!("({group})")),
            "{role}: core not in {group}: {user}"
        );
    }
    // The config on the machine and in the initrd: root's alone, 0600.
    assert_eq!(report.get("oem-config"), Some("600 root root"), "{role}");
    let modes: Vec<&str> = report
        .all("initrd-log")
        .into_iter()
        .filter(|l| l.contains("user config"))
        .collect();
    assert!(
        !modes.is_empty() && modes.iter().all(|l| l.contains(" mode 600 0:0 ")),
        "{role}: {modes:?}"
    );
    assert_eq!(report.get("os-release"), Some("ID=flatcar VERSION=1.2.3"));
    assert!(
        report.all("ssh-key").iter().any(|k| k.contains(key)),
        "{role}: core's keys: {:?}",
        report.all("ssh-key")
    );
    let (enabled, _) = built.units(role);
    for unit in &enabled {
        let state = report.unit(unit);
        assert_eq!(
            state.as_ref().map(|s| s.0.as_str()),
            Some("enabled"),
            "{role}: {unit}: {state:?}"
        );
    }
    let mine = built.units(role).1;
    for other in ["edge", "master", "worker"].iter().filter(|r| **r != role) {
        for unit in built.units(other).1.difference(&mine) {
            assert!(report.unit(unit).is_none(), "{role} has {other}'s {unit}");
        }
    }
}

#[test]
fn master_comes_up_configured_runs_its_baked_image_and_does_not_provision_twice() {
    let built = built();
    let manifest = built.manifest("master");
    assert_eq!(
        manifest["images"][0]["config_digest"],
        built.image_id.as_str()
    );
    let report = boot_disk(&built.image("master"));
    assert_provisioned(built, "master", &report);
    assert_eq!(
        report.get("esp-first-boot"),
        Some("absent"),
        "the flag went"
    );
    // The baked image: loaded by kato-preload as the manifest names it, with no network.
    assert!(
        report
            .all("docker-image")
            .contains(&format!("{} kato-test/busy:1", built.image_id).as_str()),
        "{:?}",
        report.all("docker-image")
    );
    assert!(
        report
            .all("preload-log")
            .iter()
            .any(|l| l.contains("loaded")),
        "{:?}",
        report.all("preload-log")
    );
    assert_eq!(
        report.unit("kato-test-hello.service").map(|s| s.1),
        Some("active".into())
    );
    assert!(
        report
            .all("test-log")
            .iter()
            .any(|l| l.contains("KATO-TEST hello from a baked image")),
        "{:?}",
        report.all("test-log")
    );
    // master-2 is member 2: kato-instances started that instance, which runs the image.
    assert_eq!(report.get("hostname"), Some("master-2"));
    assert_eq!(
        report.unit("zookeeper@2.service").map(|s| s.1),
        Some("active".into()),
        "{:?}",
        report.all("instances-log")
    );
    assert!(
        report
            .all("instance-log")
            .iter()
            .any(|l| l.contains("KATO-TEST member 2")),
        "{:?}",
        report.all("instance-log")
    );

    // The same disk again: no first boot, Ignition does not run, nothing is loaded again.
    let again = boot_disk(&built.image("master"));
    assert_eq!(again.get("boot-count"), Some("2"));
    assert_eq!(again.get("ignition-ran"), Some("no"));
    assert!(
        !again.get("cmdline").unwrap().contains("flatcar.first_boot"),
        "{}",
        again.get("cmdline").unwrap()
    );
    assert!(
        again
            .all("preload-log")
            .iter()
            .any(|l| l.contains("already loaded"))
            && !again
                .all("preload-log")
                .iter()
                .any(|l| l.contains("kato-preload: loaded")),
        "{:?}",
        again.all("preload-log")
    );
    assert_eq!(
        again.unit("zookeeper@2.service").map(|s| s.1),
        Some("active".into())
    );
}

#[test]
fn worker_and_edge_come_up_configured_with_either_flatcar_initrd() {
    let built = built();
    // Edge with stable's initrd (config.ign copied), worker with the newest (the OEM mounted
    // at /oem, user.ign a link to /oem/config.ign).
    for (role, flavour) in [("edge", Flavour::Copy), ("worker", Flavour::Link)] {
        let report = boot_disk_with(&built.image(role), "raw", flavour);
        assert_provisioned(built, role, &report);
        let expected = match flavour {
            Flavour::Copy => "kato-ignition-setup: initrd flavour copy",
            Flavour::Link => "kato-ignition-setup: initrd flavour link",
        };
        assert!(
            report.all("initrd-log").contains(&expected),
            "{role}: {:?}",
            report.all("initrd-log")
        );
    }
}

/// The `root-fs` line: the root filesystem's size, its partition's and where that starts,
/// in bytes.
fn root_fs(report: &Report) -> (u64, u64, u64) {
    let line = report.get("root-fs").unwrap();
    let field = |key: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} in {line}"))
    };
    (field("size="), field("partition="), field("start="))
}

/// The disk `image` holds, as a sparse raw file of `size` bytes (its own size or larger, as
/// a cloud's disk may be): booted raw, because the qcow2 reader is judged elsewhere and raw
/// writes cost less under emulation.
fn disk_of(
    image: &std::path::Path,
    dir: &std::path::Path,
    name: &str,
    size: u64,
) -> std::path::PathBuf {
    let path = dir.join(name);
    let out = std::process::Command::new("qemu-img")
        .args(["convert", "-q", "-O", "raw"])
        .arg(image)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(size)
        .unwrap();
    path
}

#[test]
fn a_platform_disk_grows_root_on_first_boot_and_merges_its_oem_sysext() {
    let built = built();
    let out = tempfile::tempdir().unwrap();
    let template = format!("{}{{channel}}/{{board}}/{{version}}/", built.server.url());
    let built_qemu = built
        ._scratch
        .kato(&["build", "--quiet", "--role", "master", "--output", "qemu"])
        .args(common::boot::mini_build_args_with(
            &template,
            &node_release().join("keyring.asc"),
            built.cache.path(),
            out.path(),
        ))
        .output()
        .unwrap();
    assert!(
        built_qemu.status.success(),
        "{}",
        String::from_utf8_lossy(&built_qemu.stderr)
    );
    let image = out.path().join("master-qemu.qcow2");
    let info: serde_json::Value = serde_json::from_slice(
        &std::process::Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(&image)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let size = info["virtual-size"].as_u64().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut partitions = Vec::new();
    // A disk of exactly the image's size (Azure's, GCE's, Proxmox importdisk's), then one
    // 2 GiB larger: `/` fills ROOT either way, and the baked images load after it grew.
    for (name, disk) in [("same.raw", size), ("larger.raw", size + (2 << 30))] {
        let disk_path = disk_of(&image, dir.path(), name, disk);
        let report = boot_disk_with(&disk_path, "raw", Flavour::Copy);
        assert_provisioned(built, "master", &report);
        let (fs, partition, start) = root_fs(&report);
        assert!(
            fs * 100 >= partition * 95,
            "{name}: / is {fs} bytes of ROOT's {partition}: {:?}",
            report.all("extend-log")
        );
        // ROOT reaches the end of the disk (the backup table's 33 sectors after it).
        assert!(
            start + partition + (1 << 20) >= disk,
            "{name}: ROOT {partition} bytes from {start} on a {disk}-byte disk: {:?}",
            report.all("extend-log")
        );
        partitions.push(partition);
        let order = report.get("order").unwrap();
        let time = |key: &str| -> u64 {
            order
                .split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let (grown, loading) = (
            time("extend-filesystems-exit="),
            time("kato-preload-start="),
        );
        assert!(grown > 0 && loading > grown, "{name}: {order}");
        assert!(
            report
                .all("preload-log")
                .iter()
                .any(|l| l.contains("kato-preload: loaded")),
            "{name}: {:?}",
            report.all("preload-log")
        );
        // The platform's OEM sysext, linked by the initrd and merged by systemd-sysext.
        assert!(
            report
                .all("extension-link")
                .contains(&"oem-qemu.raw -> /oem/sysext/oem-qemu-1.2.3.raw"),
            "{name}: {:?}",
            report.all("extension-link")
        );
        assert!(
            report
                .all("sysext-file")
                .contains(&"/usr/share/kato-oem/qemu: kato-image node stand-in OEM qemu"),
            "{name}: {:?} {:?}",
            report.all("sysext-file"),
            report.all("sysext")
        );
    }
    assert!(
        partitions[1] >= partitions[0] + (2 << 30) - (4 << 20),
        "the larger disk's ROOT grew with it: {partitions:?}"
    );
}

#[test]
fn an_ipxe_boot_applies_the_config_and_its_machine_entry_gives_the_member_number() {
    let built = built();
    let ipxe = built.out.path().join("ipxe");
    let served = common::serve::Serve::start(&ipxe);
    let url = format!("http://10.0.2.2:{}/boot.ipxe", served.port);
    let report = boot_ipxe(&url, MASTER_MAC);
    let cmdline = report.get("cmdline").unwrap();
    assert!(
        cmdline.contains("flatcar.first_boot=1") && cmdline.contains("kato.instance=3"),
        "{cmdline}"
    );
    assert_provisioned(built, "master", &report);
    // The kernel's number beats the host name's (master-2).
    assert!(
        report
            .all("instances-log")
            .iter()
            .any(|l| l.contains("member 3") && l.contains("from the kernel")),
        "{:?}",
        report.all("instances-log")
    );
    assert!(
        report.unit("zookeeper@3.service").is_some(),
        "{:?}",
        report.all("instance")
    );
    assert!(report.unit("zookeeper@2.service").is_none());
    // No KATO-DATA over iPXE: the preload says so and lets the units start (and pull).
    assert!(
        report
            .all("preload-log")
            .iter()
            .any(|l| l.contains("no KATO-DATA partition")),
        "{:?}",
        report.all("preload-log")
    );
    assert!(!report.all("failed-unit").contains(&"kato-preload.service"));
}

#[test]
fn an_ipxe_boot_with_the_packet_preset_reaches_multi_user() {
    let built = built();
    let ipxe = built.out.path().join("ipxe");
    let served = common::serve::Serve::start(&ipxe);
    let url = format!("http://10.0.2.2:{}/boot.ipxe", served.port);
    // Equinix Metal's metadata service is gone: with flatcar.oem.id=packet Flatcar's initrd
    // waits on it and ends in the emergency target.
    let report = boot_ipxe_report(&url, WORKER_MAC, Flavour::Link);
    assert!(
        report.get("done").is_some(),
        "the machine did not reach multi-user: {:?}\n{}",
        report.all("initrd-failed"),
        report.console
    );
    let cmdline = report.get("cmdline").unwrap();
    assert!(!cmdline.contains("oem.id=packet"), "{cmdline}");
    assert_provisioned(built, "worker", &report);
}
