//! The boot proof: each role built from the mini release over loopback HTTP boots a real
//! Linux kernel under QEMU (OVMF, TCG), whose initramfs finds the baked config the way
//! Flatcar's does; the unmodified base boots with no config.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::boot::{boot, mini_release};
use common::http::Server;

fn expected_units(role: &str) -> Vec<&'static str> {
    match role {
        "master" => vec![
            "cadvisor.service",
            "ceph-mon.service",
            "kato-instances.service",
            "marathon.service",
            "mesos-dns.service",
            "mesos-master.service",
        ],
        "worker" => vec![
            "cadvisor.service",
            "ceph-osd.service",
            "dnsmasq.service",
            "mesos-node.service",
        ],
        "edge" => vec!["cadvisor.service", "marathon-lb.service"],
        _ => unreachable!(),
    }
}

fn kernel_args(role: &str) -> Vec<&'static str> {
    match role {
        "edge" => vec!["net.ifnames=0"],
        _ => vec![],
    }
}

#[test]
fn every_role_boots_with_its_config_and_the_base_boots_without() {
    let release = mini_release();
    let server = Server::start(release);
    let template = format!("{}{{channel}}/{{board}}/{{version}}/", server.url());
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    common::boot::build_from_mini(&template, cache.path(), out.path(), &[]);

    for role in ["master", "worker", "edge"] {
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.path().join(format!("{role}.manifest.json"))).unwrap(),
        )
        .unwrap();
        let markers = boot(&out.path().join(format!("{role}.raw")));
        assert!(markers.errors.is_empty(), "{role}: {:?}", markers.errors);
        assert_eq!(
            markers.config_sha256.as_deref(),
            manifest["config"]["sha256"].as_str(),
            "{role}: the booted config is the manifest's"
        );
        assert_eq!(markers.units, expected_units(role), "{role}");
        let args: Vec<&str> = markers.cmdline.split_whitespace().collect();
        assert!(
            args.contains(&"flatcar.first_boot=detected"),
            "{role}: {}",
            markers.cmdline
        );
        assert!(
            args.contains(&"flatcar.oem.id=qemu"),
            "{role}: the vendor's OEM grub.cfg still applies: {}",
            markers.cmdline
        );
        for arg in kernel_args(role) {
            assert!(
                args.contains(&arg),
                "{role}: {arg} missing from {}",
                markers.cmdline
            );
        }
        assert!(
            !markers.cmdline.contains("autologin"),
            "{role}: no console login unless asked: {}",
            markers.cmdline
        );
    }

    // Negative control: the vendor image as published, unbaked.
    let base = out.path().join("base.raw");
    let copied = Command::new("cp")
        .arg("--sparse=always")
        .arg(release.join("base.raw"))
        .arg(&base)
        .status()
        .unwrap();
    assert!(copied.success());
    let markers = boot(Path::new(&base));
    assert!(markers.no_config, "the base has no config");
    assert!(markers.config_sha256.is_none() && markers.units.is_empty());
    assert!(
        !markers.cmdline.contains("flatcar.autologin"),
        "{}",
        markers.cmdline
    );
}
