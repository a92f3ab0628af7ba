//! Machines come up configured for their role, judged from inside the booted machine: every
//! role built from the node stand-in (scripts/node-release: a Debian systemd root with
//! Docker whose initramfs runs the real Ignition the way Flatcar's does) and booted under
//! QEMU with no network at all. Its probe reports Ignition's result, the role's files, users,
//! units, the images Docker holds and what the containers printed.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::OnceLock;

use common::Scratch;
use common::http::Server;
use common::node::{Report, boot_disk, boot_ipxe, busybox_archive, node_release};

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

struct Built {
    _scratch: Scratch,
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
        let (archive, image_id) = busybox_archive(scratch.dir.path());
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
    assert!(
        report.get("user").is_some_and(|u| u.starts_with("core ")),
        "{role}: {:?}",
        report.get("user")
    );
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
fn worker_and_edge_come_up_configured() {
    let built = built();
    for role in ["worker", "edge"] {
        let report = boot_disk(&built.image(role));
        assert_provisioned(built, role, &report);
    }
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
