//! iPXE payloads: the overlay judged by GNU cpio and busybox, and every role network-booted
//! by QEMU's bundled iPXE (SeaBIOS, and OVMF for one) from a loopback server: the kernel
//! unpacks the overlay and the guest finds the role's config.

mod common;

use std::process::{Command, Stdio};

use common::boot::{boot_ipxe, mini_release};
use common::http::Server;

fn units(role: &str) -> usize {
    match role {
        "master" => 6,
        "worker" => 4,
        _ => 2,
    }
}

#[test]
fn every_role_boots_over_ipxe_with_its_config() {
    let release = mini_release();
    let mirror = Server::start(release);
    let template = format!("{}{{channel}}/{{board}}/{{version}}/", mirror.url());
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let built = common::kato()
        .args([
            "build",
            "--quiet",
            "--role",
            "all",
            "--output",
            "ipxe",
            "--release-url",
            &template,
        ])
        .arg("--keyring")
        .arg(release.join("keyring.asc"))
        .arg("--cache")
        .arg(cache.path())
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "build: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let ipxe = out.path().join("ipxe");
    assert!(
        !out.path().join("master.raw").exists(),
        "--output ipxe makes no disk image"
    );

    // One kernel and one base initramfs, shared; one overlay and script per role.
    let names: Vec<String> = std::fs::read_dir(&ipxe)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".vmlinuz")).count(),
        1,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".ipxe")).count(),
        3,
        "{names:?}"
    );

    // GNU cpio and busybox list the overlay with its folders.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("master.manifest.json")).unwrap())
            .unwrap();
    let overlay = ipxe.join(manifest["ipxe"]["overlay"].as_str().unwrap());
    for lister in [&["cpio", "-itv"][..], &["busybox", "cpio", "-tv"]] {
        let mut gz = Command::new("gzip")
            .arg("-dc")
            .arg(&overlay)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let listed = Command::new(lister[0])
            .args(&lister[1..])
            .stdin(gz.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(gz.wait().unwrap().success());
        let text = String::from_utf8_lossy(&listed.stdout);
        for (kind, path) in [
            ("d", "usr"),
            ("d", "usr/share"),
            ("d", "usr/share/oem"),
            ("-", "usr/share/oem/config.ign"),
            ("d", "oem"),
            ("-", "oem/config.ign"),
        ] {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(kind) && l.ends_with(&format!(" {path}"))),
                "{lister:?} lists no {kind} {path}:\n{text}"
            );
        }
    }

    let server = Server::start(&ipxe);
    let guest_url = |role: &str| format!("http://10.0.2.2:{}/{role}.ipxe", server.addr.port());
    for (role, uefi) in [
        ("master", false),
        ("worker", false),
        ("edge", false),
        ("master", true),
    ] {
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.path().join(format!("{role}.manifest.json"))).unwrap(),
        )
        .unwrap();
        let markers = boot_ipxe(&guest_url(role), uefi);
        assert_eq!(markers.source.as_deref(), Some("initramfs"), "{role}");
        assert_eq!(
            markers.config_sha256.as_deref(),
            manifest["config"]["sha256"].as_str(),
            "{role} (uefi: {uefi})"
        );
        assert_eq!(markers.units.len(), units(role), "{role}");
        let args: Vec<&str> = markers.cmdline.split_whitespace().collect();
        assert!(
            args.contains(&"flatcar.first_boot=1"),
            "{}",
            markers.cmdline
        );
        assert!(
            args.contains(&"console=ttyS0,115200n8"),
            "{}",
            markers.cmdline
        );
        assert!(
            args.iter().filter(|a| a.starts_with("initrd=")).count() == 2,
            "{}",
            markers.cmdline
        );
    }
}
