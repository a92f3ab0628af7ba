//! Baked images: `kato-preload.service` mounting KATO-DATA read-only and loading each
//! image once, and every unit that runs a container waiting for it.

use super::{PlannedFile, PlannedUnit, generated_file};

pub(crate) const SCRIPT_PATH: &str = "/opt/kato/bin/kato-preload";
pub(crate) const SERVICE: &str = "kato-preload.service";
pub(crate) const MOUNT_POINT: &str = "/var/lib/kato-data";

pub fn add(files: &mut Vec<PlannedFile>, units: &mut Vec<PlannedUnit>) {
    let dropin = format!(
        "# Written by kato-image: the image this unit runs is baked into KATO-DATA.\n\
         [Unit]\nRequires={SERVICE}\nAfter={SERVICE}\n"
    );
    for unit in units.iter_mut() {
        if unit.contents.as_deref().is_some_and(runs_container) {
            unit.dropins
                .push(("10-kato-preload.conf".into(), dropin.clone()));
        }
    }
    files.push(generated_file(SCRIPT_PATH, 0o755, SCRIPT.to_string()));
    units.push(PlannedUnit {
        name: SERVICE.into(),
        contents: Some(format!(
            "# Written by kato-image: load the baked container images, once, after Flatcar's\n\
             # extend-filesystems (which multi-user.target wants) has grown ROOT and its ext4 to\n\
             # the disk: nothing else waits for it.\n\
             [Unit]\nDescription=Load the container images baked into KATO-DATA\n\
             Requires=docker.service\nAfter=docker.service extend-filesystems.service\n\n\
             [Service]\nType=oneshot\nRemainAfterExit=yes\n\
             ExecStart={SCRIPT_PATH} {MOUNT_POINT}\n\n\
             [Install]\nWantedBy=multi-user.target\n"
        )),
        enabled: true,
        dropins: Vec::new(),
    });
}

/// Whether a unit's commands start a container.
fn runs_container(contents: &str) -> bool {
    contents.lines().any(|line| {
        let line = line.trim_start();
        line.starts_with("Exec")
            && ["docker run", "docker start", "podman run", "/docker run"]
                .iter()
                .any(|command| line.contains(command))
    })
}

/// Verifies each tar against the index before loading it; an image already in Docker
/// (by its ID, the config digest) is skipped, so reboots cost nothing.
const SCRIPT: &str = include_str!("scripts/kato-preload.sh");

#[cfg(test)]
pub(crate) const SCRIPT_FOR_TESTS: &str = SCRIPT;
