//! A role's plan: which units, files and users its machines get, resolved from its profile and
//! the units folder. Pure and deterministic: the renderers only translate a plan.

use std::collections::BTreeMap;

use crate::origin::Origin;
use crate::profile::{InstanceSource, Instances, Located, Profile, UnitSpec, User};
use crate::unit::{self, RoleMatch, UnitError, UnitFile, UnitLibrary};

pub const ROLE_ENV_PATH: &str = "/etc/kato/role.env";
pub const INSTANCES_SCRIPT_PATH: &str = "/opt/kato/bin/kato-instances";
pub const INSTANCES_UNIT: &str = "kato-instances.service";

#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error(transparent)]
    Unit(#[from] UnitError),
    #[error("{origin}: {message}")]
    Invalid { origin: Origin, message: String },
}

fn invalid(origin: &Origin, message: String) -> RoleError {
    RoleError::Invalid {
        origin: origin.clone(),
        message,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RolePlan {
    pub role: String,
    pub users: Vec<User>,
    /// Sorted by path.
    pub files: Vec<PlannedFile>,
    /// Sorted by name.
    pub units: Vec<PlannedUnit>,
    pub kernel_args: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedFile {
    pub path: String,
    pub mode: u32,
    pub user: Option<String>,
    pub group: Option<String>,
    pub contents: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedUnit {
    pub name: String,
    /// `None` for an instance of a template whose file is written under the template's name.
    pub contents: Option<String>,
    /// Started at boot (`systemctl enable`, or `command: start` in cloud-config).
    pub enabled: bool,
    /// `(name, contents)` of drop-ins for `NAME.d/`.
    pub dropins: Vec<(String, String)>,
}

impl RolePlan {
    /// Names of the units this role runs, instances included (`zookeeper@1.service`).
    pub fn enabled_units(&self) -> impl Iterator<Item = &str> {
        self.units
            .iter()
            .filter(|u| u.enabled)
            .map(|u| u.name.as_str())
    }
}

/// One unit chosen for the role, with what the profile said about it (if anything).
struct Chosen<'a> {
    file: UnitFile,
    spec: Option<&'a Located<UnitSpec>>,
}

pub fn plan(profile: &Profile, library: &UnitLibrary) -> Result<RolePlan, RoleError> {
    let role = profile.role.as_str();
    let mut chosen: BTreeMap<String, Chosen> = BTreeMap::new();
    for file in library.units.values() {
        if file.fleet.matches_role(role) == RoleMatch::Selected {
            chosen.insert(
                file.name.clone(),
                Chosen {
                    file: file.clone(),
                    spec: None,
                },
            );
        }
    }
    for spec in &profile.units {
        let name = &spec.value.name;
        let file = match &spec.value.contents {
            Some(text) => UnitFile::parse(name, text, spec.origin.clone())?,
            None => library.get(name).cloned().ok_or_else(|| {
                invalid(
                    &spec.origin,
                    format!(
                        "units: `{name}` is not in {} and has no `contents`",
                        library.dir.display()
                    ),
                )
            })?,
        };
        if file.fleet.matches_role(role) == RoleMatch::Excluded {
            return Err(invalid(
                &spec.origin,
                format!(
                    "units: `{name}` is for role {} by its [X-Fleet] MachineMetadata, not {role}",
                    file.fleet.roles().join(", ")
                ),
            ));
        }
        chosen.insert(
            name.clone(),
            Chosen {
                file,
                spec: Some(spec),
            },
        );
    }

    let mut units = Vec::new();
    let mut placed: Vec<(String, &UnitFile, Origin)> = Vec::new();
    let mut from_node: Vec<String> = Vec::new();
    for Chosen { file, spec } in chosen.values() {
        let origin = spec.map_or(&file.origin, |s| &s.origin);
        let instances = spec.map_or(&Instances::Unspecified, |s| &s.value.instances);
        let enabled = spec
            .and_then(|s| s.value.enabled)
            .unwrap_or_else(|| file.is_installable());
        units.push(PlannedUnit {
            name: file.name.clone(),
            contents: Some(file.contents.clone()),
            enabled: enabled && !file.is_template(),
            dropins: Vec::new(),
        });
        match (file.is_template(), instances) {
            (false, Instances::Unspecified) => {
                placed.push((file.name.clone(), file, origin.clone()))
            }
            (false, _) => {
                return Err(invalid(
                    origin,
                    format!(
                        "units: `{}` is not a template (name@.type), so it has no instances",
                        file.name
                    ),
                ));
            }
            (true, Instances::Unspecified) => {
                return Err(invalid(
                    origin,
                    format!(
                        "units: template `{}` is chosen for role {role}; say which instance runs \
                         (`instances: [1]` or `instance_from: hostname`) in the profile",
                        file.name
                    ),
                ));
            }
            (true, Instances::Fixed(list)) => {
                for instance in list {
                    let name = unit::instance_name(&file.name, instance);
                    unit::check_name(&name).map_err(|m| invalid(origin, format!("units: {m}")))?;
                    units.push(PlannedUnit {
                        name: name.clone(),
                        contents: None,
                        enabled,
                        dropins: Vec::new(),
                    });
                    placed.push((name, file, origin.clone()));
                }
            }
            (true, Instances::FromNode(InstanceSource::Hostname)) => {
                from_node.push(file.name.clone());
                placed.push((unit::instance_name(&file.name, "N"), file, origin.clone()));
            }
        }
    }
    check_conflicts(&placed)?;

    let mut files: Vec<PlannedFile> = profile
        .files
        .iter()
        .map(|f| PlannedFile {
            path: f.path.clone(),
            mode: f.mode,
            user: f.user.clone(),
            group: f.group.clone(),
            contents: f.contents.clone(),
        })
        .collect();
    files.push(generated_file(ROLE_ENV_PATH, 0o644, role_env(profile)));
    if !from_node.is_empty() {
        files.push(generated_file(
            INSTANCES_SCRIPT_PATH,
            0o755,
            INSTANCES_SCRIPT.to_string(),
        ));
        units.push(PlannedUnit {
            name: INSTANCES_UNIT.into(),
            contents: Some(instances_unit(&from_node)),
            enabled: true,
            dropins: Vec::new(),
        });
    }
    if !profile.images.is_empty() {
        preload::add(&mut files, &mut units);
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    units.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(RolePlan {
        role: role.to_string(),
        users: profile.users.clone(),
        files,
        units,
        kernel_args: profile
            .kernel_args
            .iter()
            .map(|a| a.value.clone())
            .collect(),
    })
}

/// Baked images: KATO-DATA mounted read-only, `kato-preload.service` loading each image
/// once, and every unit that runs a container waiting for it.
mod preload {
    use super::{PlannedFile, PlannedUnit, generated_file};

    pub const SCRIPT_PATH: &str = "/opt/kato/bin/kato-preload";
    pub const SERVICE: &str = "kato-preload.service";
    /// systemd names a mount unit after its path: /var/lib/kato-data.
    pub const MOUNT: &str = "var-lib-kato\\x2ddata.mount";
    pub const MOUNT_POINT: &str = "/var/lib/kato-data";
    const DEVICE: &str = "/dev/disk/by-label/KATO-DATA";

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
            name: MOUNT.to_string(),
            contents: Some(format!(
                "# Written by kato-image: the container images baked into this disk.\n\
                 [Unit]\nDescription=Baked container images (KATO-DATA)\n\
                 ConditionPathExists={DEVICE}\n\n\
                 [Mount]\nWhat={DEVICE}\nWhere={MOUNT_POINT}\n\
                 Type=btrfs\nOptions=ro,nodev,nosuid,noexec\n"
            )),
            // Pulled in by the service; a disk without KATO-DATA (an iPXE boot) skips both.
            enabled: false,
            dropins: Vec::new(),
        });
        units.push(PlannedUnit {
            name: SERVICE.into(),
            contents: Some(format!(
                "# Written by kato-image: load the baked container images, once.\n\
                 [Unit]\nDescription=Load the container images baked into KATO-DATA\n\
                 Requires=docker.service {mount}\nAfter=docker.service {mount}\n\
                 ConditionPathExists={DEVICE}\n\n\
                 [Service]\nType=oneshot\nRemainAfterExit=yes\n\
                 ExecStart={SCRIPT_PATH} {MOUNT_POINT}\n\n\
                 [Install]\nWantedBy=multi-user.target\n",
                mount = MOUNT.to_string()
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
    const SCRIPT: &str = r#"#!/bin/bash
# Written by kato-image: loads the container images baked into KATO-DATA.
# index.tsv lines: <tar sha256> <image id> <file> <reference>
set -euo pipefail
data=${1:-/var/lib/kato-data}
index=$data/index.tsv
[[ -r $index ]] || { echo "kato-preload: $index is missing" >&2; exit 1; }
failed=0
while IFS=$'	' read -r sha256 id file reference; do
  [[ -z $sha256 || $sha256 == \#* ]] && continue
  if docker image inspect "$id" >/dev/null 2>&1; then
    echo "kato-preload: $reference already loaded ($id)"
    continue
  fi
  actual=$(sha256sum "$data/$file" | cut -d' ' -f1)
  if [[ $actual != "$sha256" ]]; then
    echo "kato-preload: $file has SHA-256 $actual, not $sha256 as the index says; not loading $reference" >&2
    failed=1
    continue
  fi
  docker load --input "$data/$file"
  echo "kato-preload: loaded $reference ($id)"
done < "$index"
exit "$failed"
"#;
}

fn check_conflicts(placed: &[(String, &UnitFile, Origin)]) -> Result<(), RoleError> {
    for (name, file, origin) in placed {
        for (other, _, _) in placed {
            if other == name {
                continue;
            }
            if let Some(glob) = file.fleet.conflicts_with(other) {
                return Err(invalid(
                    origin,
                    format!(
                        "units: `{name}` has [X-Fleet] Conflicts={glob}, which forbids `{other}` on the same machine"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn generated_file(path: &str, mode: u32, contents: String) -> PlannedFile {
    PlannedFile {
        path: path.into(),
        mode,
        user: None,
        group: None,
        contents: contents.into_bytes(),
    }
}

/// `KEY="value"` lines that systemd's `EnvironmentFile=` and `sh`'s `.` read alike (profile
/// checks keep quotes, `\`, `$` and backquotes out of values).
fn role_env(profile: &Profile) -> String {
    let mut text =
        String::from("# Written by kato-image: this machine's role and role metadata.\n");
    text.push_str(&format!("KATO_ROLE=\"{}\"\n", profile.role));
    for (key, value) in &profile.metadata {
        text.push_str(&format!(
            "KATO_{}=\"{}\"\n",
            key.to_ascii_uppercase(),
            value.value
        ));
    }
    text
}

const INSTANCES_SCRIPT: &str = r#"#!/bin/sh
# Written by kato-image. Starts, for each template given (name@.service), the instance named
# by the trailing number of this machine's short hostname: master-2 starts name@2.service.
set -eu
host=$(hostname)
host=${host%%.*}
n=${host##*[!0-9]}
if [ -z "$n" ]; then
    echo "kato-instances: hostname '$host' does not end in a number; cannot choose instances of: $*" >&2
    exit 1
fi
for template in "$@"; do
    systemctl start --no-block "${template%%@.*}@$n.${template##*.}"
done
"#;

fn instances_unit(templates: &[String]) -> String {
    format!(
        "# Written by kato-image: starts the instances this machine's hostname selects.\n\
         [Unit]\n\
         Description=Start role template units for this machine's instance number\n\
         After=network-online.target docker.service\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart={INSTANCES_SCRIPT_PATH} {}\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        templates.join(" ")
    )
}
