//! The real Ignition (Debian's full binary, 2.14) applying a config to an empty root: its
//! fetch-offline stage reads the config, its files stage writes files, links, folders,
//! units, presets, users and groups under the root as it would on a first boot.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const IGNITION: &str = "/usr/lib/dracut/modules.d/30ignition/ignition";

/// A root with `core` (as Flatcar has it), after Ignition's files stage applied `config`.
pub fn files_stage(config: &[u8]) -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    // Ignition writes a user's keys as that user: the way to its home must be open to it.
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = root.path().join("home/core");
    std::fs::create_dir_all(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(500), Some(500)).unwrap();
    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\ncore:x:500:500:Flatcar Admin:/home/core:/bin/bash\n",
    )
    .unwrap();
    std::fs::write(
        etc.join("group"),
        "root:x:0:\ncore:x:500:\ndocker:x:233:core\n",
    )
    .unwrap();
    std::fs::write(etc.join("shadow"), "root:*:1::::::\ncore:*:1::::::\n").unwrap();
    std::fs::write(etc.join("gshadow"), "root:*::\ncore:!::\ndocker:!::core\n").unwrap();
    // Debian builds Ignition to relabel what it wrote with setfiles and the root's policy;
    // this root has no SELinux, so the policy is empty and setfiles a no-op on PATH.
    let contexts = etc.join("selinux/mcs/contexts/files");
    std::fs::create_dir_all(&contexts).unwrap();
    std::fs::write(contexts.join("file_contexts"), "").unwrap();
    std::fs::write(
        etc.join("selinux/config"),
        "SELINUX=disabled\nSELINUXTYPE=mcs\n",
    )
    .unwrap();
    let bin = work.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(bin.join("setfiles"), "#!/bin/sh\ncat >/dev/null\n").unwrap();
    std::fs::set_permissions(bin.join("setfiles"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let config_path = work.path().join("config.ign");
    std::fs::write(&config_path, config).unwrap();
    let cache = work.path().join("cache.json");
    let stage = |stage: &str, extra: &[&Path]| {
        let mut cmd = Command::new(IGNITION);
        cmd.env("IGNITION_CONFIG_FILE", &config_path)
            .env("PATH", &path)
            .args([
                "-platform",
                "file",
                "-stage",
                stage,
                "-log-to-stdout",
                "-config-cache",
            ])
            .arg(&cache);
        for root in extra {
            cmd.arg("-root").arg(root);
        }
        let out = cmd
            .output()
            .expect("Debian's ignition package is installed");
        let log = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "ignition {stage} failed:\n{}",
            log.lines()
                .filter(|l| l.contains("CRITICAL") || l.contains("ERROR"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    };
    stage("fetch-offline", &[]);
    stage("files", &[root.path()]);
    root
}

pub fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}
