//! `kato-image render` and `validate` on the repository's own profiles, judged by
//! `ignition-validate` and by PyYAML.

use crate::common;

use std::collections::BTreeSet;
use std::process::Stdio;

use common::{judge, kato, python};

fn render(role: &str, format: &str) -> Vec<u8> {
    let out = kato()
        .args(["render", "--role", role, "--format", format])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "render {role}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The units each role must start, from the Káto stack's [X-Fleet] sections.
fn expected_units(role: &str) -> BTreeSet<&'static str> {
    let list: &[&str] = match role {
        // zookeeper@.service is started by kato-instances.service with the hostname's number.
        "master" => &[
            "cadvisor.service",
            "ceph-mon.service",
            "kato-instances.service",
            "marathon.service",
            "mesos-dns.service",
            "mesos-master.service",
        ],
        "worker" => &[
            "cadvisor.service",
            "ceph-osd.service",
            "dnsmasq.service",
            "mesos-node.service",
        ],
        "edge" => &["cadvisor.service", "marathon-lb.service"],
        _ => unreachable!(),
    };
    list.iter().copied().collect()
}

#[test]
fn every_role_renders_ignition_that_ignition_validate_accepts() {
    let dir = tempfile::tempdir().unwrap();
    for role in ["master", "worker", "edge"] {
        let path = dir.path().join(format!("{role}.ign"));
        std::fs::write(&path, render(role, "ignition")).unwrap();
        let out = judge("ignition-validate", &[], Some(&path));
        assert!(
            out.status.success(),
            "ignition-validate refused {role}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn each_role_gets_exactly_its_fleet_units() {
    for role in ["master", "worker", "edge"] {
        let config: serde_json::Value = serde_json::from_slice(&render(role, "ignition")).unwrap();
        assert_eq!(config["ignition"]["version"], "3.3.0");
        let units = config["systemd"]["units"].as_array().unwrap();
        let enabled: BTreeSet<&str> = units
            .iter()
            .filter(|u| u["enabled"] == true)
            .map(|u| u["name"].as_str().unwrap())
            .collect();
        assert_eq!(enabled, expected_units(role), "role {role}");
        for unit in units {
            let contents = unit["contents"].as_str().unwrap_or_default();
            assert!(
                !contents.is_empty(),
                "{role}: unit {} has no contents",
                unit["name"]
            );
        }
        let names: Vec<&str> = units.iter().map(|u| u["name"].as_str().unwrap()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "units are in a stable order");
    }
}

#[test]
fn master_starts_the_zookeeper_member_named_by_its_hostname() {
    let config: serde_json::Value = serde_json::from_slice(&render("master", "ignition")).unwrap();
    let units = config["systemd"]["units"].as_array().unwrap();
    let zookeeper = units
        .iter()
        .find(|u| u["name"] == "zookeeper@.service")
        .unwrap();
    assert!(
        zookeeper["contents"]
            .as_str()
            .unwrap()
            .contains("ZOO_MY_ID=%i")
    );
    let starter = units
        .iter()
        .find(|u| u["name"] == "kato-instances.service")
        .unwrap();
    assert!(
        starter["contents"]
            .as_str()
            .unwrap()
            .contains("kato-instances zookeeper@.service")
    );

    // Run the generated script with a fake `hostname` and `systemctl` to see what it starts.
    let files = config["storage"]["files"].as_array().unwrap();
    let script = files
        .iter()
        .find(|f| f["path"] == "/opt/kato/bin/kato-instances")
        .unwrap();
    assert_eq!(script["mode"], 0o755);
    let body = common::decode_data_url(script["contents"]["source"].as_str().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path();
    std::fs::write(bin.join("kato-instances"), body).unwrap();
    std::fs::write(
        bin.join("hostname"),
        "#!/bin/sh\necho master-2.kato.internal\n",
    )
    .unwrap();
    std::fs::write(bin.join("systemctl"), "#!/bin/sh\necho \"$@\"\n").unwrap();
    for name in ["kato-instances", "hostname", "systemctl"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    std::fs::write(bin.join("cmdline"), "console=ttyS0\n").unwrap();
    let run = |bin: &std::path::Path| {
        std::process::Command::new("sh")
            .arg(bin.join("kato-instances"))
            .arg("zookeeper@.service")
            .env("PATH", &path)
            .env("KATO_CMDLINE", bin.join("cmdline"))
            .env("KATO_RUN_DIR", bin.join("run"))
            .env_remove("KATO_IMDS")
            .output()
            .unwrap()
    };
    let out = run(bin);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "start --no-block zookeeper@2.service\n"
    );

    assert_eq!(
        std::fs::read_to_string(bin.join("run/identity.env")).unwrap(),
        "KATO_INSTANCE=\"2\"\nKATO_HOSTNAME=\"master-2\"\nKATO_IDENTITY_SOURCE=\"hostname\"\n"
    );

    std::fs::write(bin.join("hostname"), "#!/bin/sh\necho master\n").unwrap();
    let out = run(bin);
    assert!(
        !out.status.success(),
        "a hostname without a number must fail loudly"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not end in a number"));
}

#[test]
fn role_env_carries_the_role_and_its_metadata() {
    let config: serde_json::Value = serde_json::from_slice(&render("worker", "ignition")).unwrap();
    let files = config["storage"]["files"].as_array().unwrap();
    let env = files
        .iter()
        .find(|f| f["path"] == "/etc/kato/role.env")
        .unwrap();
    let text = common::decode_data_url(env["contents"]["source"].as_str().unwrap());
    // Sourced by sh exactly as systemd's EnvironmentFile= reads it.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{text}\necho \"$KATO_ROLE|$KATO_MESOS_DNS_IP|$KATO_ZK_HOSTS\""
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "worker|10.0.0.11|master-1:2181,master-2:2181,master-3:2181\n"
    );
    let users = config["passwd"]["users"].as_array().unwrap();
    assert_eq!(users[0]["name"], "core");
    assert!(
        users[0]["sshAuthorizedKeys"][0]
            .as_str()
            .unwrap()
            .starts_with("ssh-ed25519 ")
    );
}

#[test]
fn cloud_config_parses_as_yaml_and_carries_the_same_units() {
    for role in ["master", "worker", "edge"] {
        let yaml = render(role, "cloud-config");
        assert!(yaml.starts_with(b"#cloud-config\n"));
        let mut child = std::process::Command::new(python())
            .args([
                "-c",
                "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 with PyYAML (.ci/run sets KATO_TEST_PYTHON)");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&yaml).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "PyYAML: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["coreos"]["fleet"]["metadata"], format!("role={role}"));
        let started: BTreeSet<&str> = doc["coreos"]["units"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["command"] == "start")
            .map(|u| u["name"].as_str().unwrap())
            .collect();
        assert_eq!(started, expected_units(role), "role {role}");

        let ignition: serde_json::Value =
            serde_json::from_slice(&render(role, "ignition")).unwrap();
        for unit in ignition["systemd"]["units"].as_array().unwrap() {
            let cloud = doc["coreos"]["units"]
                .as_array()
                .unwrap()
                .iter()
                .find(|u| u["name"] == unit["name"])
                .unwrap_or_else(|| panic!("{role}: {} missing from cloud-config", unit["name"]));
            assert_eq!(
                cloud["content"], unit["contents"],
                "same unit text in both formats"
            );
        }
        let paths: Vec<&str> = doc["write_files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap())
            .collect();
        assert!(paths.contains(&"/etc/kato/role.env"));
    }
}

#[test]
fn two_renders_are_byte_identical() {
    for format in ["ignition", "cloud-config"] {
        for role in ["master", "worker", "edge"] {
            assert_eq!(
                render(role, format),
                render(role, format),
                "{role} {format}"
            );
        }
    }
}

#[test]
fn validate_checks_every_role_without_printing_configs() {
    let out = kato().arg("validate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("edge: ok"));
    assert!(lines[1].starts_with("master: ok"));
    assert!(lines[2].starts_with("worker: ok"));
    assert!(!text.contains("ignition"));
    kato()
        .args(["validate", "--role", "edge"])
        .assert()
        .success();
}

#[test]
fn help_completions_and_man_page_work() {
    for args in [
        &["--help"][..],
        &["render", "--help"],
        &["validate", "--help"],
    ] {
        let out = kato().args(args).output().unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("Example"));
    }
    let out = kato().args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("kato-image"));
    let out = kato().arg("man").output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains(".TH"));
}
