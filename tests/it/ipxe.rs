//! iPXE payloads: the overlay judged by GNU cpio and busybox, and every role network-booted
//! by QEMU's bundled iPXE (SeaBIOS, and OVMF for one) from a loopback server: the kernel
//! unpacks the overlay and the guest finds the role's config.

use crate::common;

use std::process::{Command, Stdio};

use common::boot::{boot_ipxe, boot_ipxe_as, ipxe_console, mini_release};
use common::http::Server;
use common::serve::Serve;

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
    // Profiles with a machine map: one master, one worker with its member number and name.
    let project = common::Scratch::new();
    for (role, machine) in [
        ("master", "\"52:54:00:00:00:0A\""),
        (
            "worker",
            "{mac: \"52:54:00:00:00:0b\", instance: 2, hostname: worker-2}",
        ),
    ] {
        let path = project.path(&format!("profiles/{role}.yaml"));
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&format!("machines: [{machine}]\n"));
        std::fs::write(&path, text).unwrap();
    }
    common::boot::build_from_mini(
        &template,
        cache.path(),
        out.path(),
        &[
            "--output",
            "ipxe",
            "--profiles",
            project.path("profiles").to_str().unwrap(),
        ],
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
        names
            .iter()
            .filter(|n| n.ends_with(".ipxe") && *n != "boot.ipxe")
            .count(),
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

    // The machine map: listed machines chain to their role, others get the error.
    let map = std::fs::read_to_string(ipxe.join("boot.ipxe")).unwrap();
    assert!(
        map.contains("iseq ${net0/mac} 52:54:00:00:00:0a && chain --autofree master.ipxe ||"),
        "{map}"
    );

    let served = Serve::start(&ipxe);
    let guest_url = |script: &str| format!("http://10.0.2.2:{}/{script}", served.port);
    assert!(
        map.contains("iseq ${net0/mac} 52:54:00:00:00:0b && set kato_identity kato.instance=2 kato.hostname=worker-2 && chain --autofree worker.ipxe ||"),
        "{map}"
    );
    let markers = boot_ipxe_as(&guest_url("boot.ipxe"), false, "52:54:00:00:00:0b");
    let args: Vec<&str> = markers.cmdline.split_whitespace().collect();
    assert!(
        args.contains(&"kato.instance=2") && args.contains(&"kato.hostname=worker-2"),
        "the machine's identity reaches its kernel: {}",
        markers.cmdline
    );
    let worker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("worker.manifest.json")).unwrap())
            .unwrap();
    assert_eq!(
        markers.config_sha256.as_deref(),
        worker["config"]["sha256"].as_str(),
        "boot.ipxe sent the worker's MAC to worker"
    );
    let console = ipxe_console(&guest_url("boot.ipxe"), "52:54:00:00:00:0c", 25);
    assert!(
        console.contains("kato-image: no role for machine 52:54:00:00:00:0c"),
        "unknown machine: {console}"
    );

    let guest_url = |role: &str| guest_url(&format!("{role}.ipxe"));
    for (role, uefi) in [
        ("master", false),
        ("worker", false),
        ("edge", false),
        ("master", true),
        ("worker", true),
        ("edge", true),
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

/// The alpha and beta releases whose PXE initramfs drops `/usr/share/oem` from appended
/// initrds: an iPXE build from one is refused in one line before anything large is fetched
/// or anything written, unless asked for with a warning; disk images from it still build.
#[test]
fn an_ipxe_build_from_a_release_with_the_pxe_regression_is_refused_unless_allowed() {
    let root = tempfile::tempdir().unwrap();
    let from = mini_release().join("stable/amd64-usr/1.2.3");
    for (channel, version, affected) in [
        ("alpha", "4500.0.0", true),
        ("beta", "4593.1.0", true),
        ("beta", "4593.1.1", false),
    ] {
        let dir = root.path().join(channel).join("amd64-usr").join(version);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&from).unwrap() {
            let entry = entry.unwrap();
            std::fs::hard_link(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        std::fs::remove_file(dir.join("version.txt")).unwrap();
        std::fs::write(
            dir.join("version.txt"),
            format!("FLATCAR_VERSION={version}\n"),
        )
        .unwrap();
        let server = Server::start(root.path());
        let template = format!("{}{{channel}}/{{board}}/{{version}}/", server.url());
        let cache = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let build = |extra: &[&str]| {
            common::kato()
                .args(["build", "--quiet", "--role", "master", "--channel", channel])
                .args(["--version", version])
                .args(extra)
                .args(common::boot::mini_build_args(
                    &template,
                    cache.path(),
                    out.path(),
                ))
                .output()
                .unwrap()
        };
        let refused = build(&["--output", "ipxe"]);
        if !affected {
            assert!(
                refused.status.success(),
                "{channel} {version}: {}",
                String::from_utf8_lossy(&refused.stderr)
            );
            continue;
        }
        let text = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{channel} {version}");
        assert_eq!(text.trim_end().lines().count(), 1, "{text}");
        for part in [
            &format!("Flatcar {channel} {version}"),
            "/usr/share/oem",
            "flatcar/Flatcar#2023",
            "--allow-known-issues",
        ] {
            assert!(text.contains(part), "{part} not in {text}");
        }
        assert_eq!(
            std::fs::read_dir(out.path()).unwrap().count(),
            0,
            "nothing written"
        );
        let image = format!("/{channel}/amd64-usr/{version}/flatcar_production_image.bin.bz2");
        assert!(
            server
                .requests()
                .iter()
                .all(|r| r.path != image && !r.path.contains("pxe_image")),
            "nothing large fetched before the refusal"
        );
        // Disk images are not affected.
        let raw = build(&["--output", "raw"]);
        assert!(
            raw.status.success(),
            "{}",
            String::from_utf8_lossy(&raw.stderr)
        );
        assert!(!String::from_utf8_lossy(&raw.stderr).contains("warning"));
        // Asked for: made, with the warning even under --quiet.
        let allowed = build(&["--output", "ipxe", "--allow-known-issues"]);
        let text = String::from_utf8_lossy(&allowed.stderr);
        assert!(allowed.status.success(), "{text}");
        assert!(
            text.contains("kato-image: warning: Flatcar") && text.contains("--allow-known-issues"),
            "{text}"
        );
        assert!(out.path().join("ipxe/master.ipxe").exists());
    }
}
