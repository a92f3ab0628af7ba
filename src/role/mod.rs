//! A role's plan: which units, files and users its machines get, resolved from its profile and
//! the units folder. Pure and deterministic: the renderers only translate a plan.

use std::collections::BTreeMap;

use crate::origin::{Origin, printable};
use crate::profile::fragment::{Fragments, Node};
use crate::profile::{InstanceSource, Instances, Located, Profile, UnitSpec, User};
use crate::unit::{self, RoleMatch, UnitError, UnitFile, UnitLibrary};

mod preload;

pub(crate) const ROLE_ENV_PATH: &str = "/etc/kato/role.env";
pub(crate) const INSTANCES_SCRIPT_PATH: &str = "/opt/kato/bin/kato-instances";
pub(crate) const INSTANCES_UNIT: &str = "kato-instances.service";

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
    /// What the profile's Butane and Ignition fragments add, checked against the above.
    pub fragments: Fragments,
    /// The unit files read from the units folder (by file name), sorted.
    pub(crate) unit_sources: Vec<crate::profile::SourceFile>,
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
    /// Names of the units this role runs, instances included (`zookeeper@1.service`), then
    /// those its fragments enable.
    pub fn enabled_units(&self) -> impl Iterator<Item = &str> {
        let own = self.units.iter().filter(|u| u.enabled).map(|u| &u.name);
        let added = self.fragments.units.iter().map(|u| &u.value);
        let added = added.filter(|u| u.enabled == Some(true)).map(|u| &u.name);
        own.chain(added).map(String::as_str)
    }
}

/// One unit chosen for the role, with what the profile said about it (if anything).
struct Chosen<'a> {
    file: UnitFile,
    spec: Option<&'a Located<UnitSpec>>,
}

/// The units a role runs, as files, and where each instance of them is placed.
struct Placed<'a> {
    units: Vec<PlannedUnit>,
    /// Each unit on the machine (instances by name), for the `Conflicts=` check.
    machine: Vec<(String, &'a UnitFile, Origin)>,
    /// Templates whose instance the machine chooses at boot.
    from_node: Vec<String>,
}

pub fn plan(profile: &Profile, library: &UnitLibrary) -> Result<RolePlan, RoleError> {
    let chosen = choose_units(profile, library)?;
    let mut placed = place_units(&chosen, &profile.role)?;
    check_conflicts(&placed.machine)?;
    let mut files = profile_files(profile);
    files.push(generated_file(ROLE_ENV_PATH, 0o644, role_env(profile)));
    if !placed.from_node.is_empty() {
        files.push(generated_file(
            INSTANCES_SCRIPT_PATH,
            0o755,
            INSTANCES_SCRIPT.to_string(),
        ));
        placed.units.push(PlannedUnit {
            name: INSTANCES_UNIT.into(),
            contents: Some(instances_unit(&placed.from_node)),
            enabled: true,
            dropins: Vec::new(),
        });
    }
    if !profile.images.is_empty() {
        preload::add(&mut files, &mut placed.units);
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    placed.units.sort_by(|a, b| a.name.cmp(&b.name));
    check_fragments(profile, &files, &placed)?;
    check_core_groups(profile)?;
    let unit_sources = library_sources(&chosen);
    let plan = RolePlan {
        role: profile.role.clone(),
        users: profile.users.clone(),
        files,
        units: placed.units,
        kernel_args: profile
            .kernel_args
            .iter()
            .map(|a| a.value.clone())
            .collect(),
        fragments: profile.fragments.clone(),
        unit_sources,
    };
    check_as_ignition(profile, &plan)?;
    Ok(plan)
}

/// The groups Flatcar's `core` is in (baselayout's `/etc/group`), which Ignition's `usermod
/// --groups` (without `--append`) would take from it if a config listed others.
pub(crate) const CORE_GROUPS: [&str; 3] = ["wheel", "docker", "systemd-journal"];

/// A `groups:` list for `core` replaces its groups: refused unless it keeps Flatcar's.
fn check_core_groups(profile: &Profile) -> Result<(), RoleError> {
    let own = profile
        .users
        .iter()
        .filter(|u| u.name == "core" && !u.groups.is_empty())
        .map(|u| (&u.groups, &u.origin));
    let fragments = profile
        .fragments
        .users
        .iter()
        .filter(|u| u.value.name == "core")
        .filter_map(|u| u.value.groups.as_ref().map(|g| (g, &u.origin)));
    for (groups, origin) in own.chain(fragments) {
        let removed: Vec<&str> = CORE_GROUPS
            .into_iter()
            .filter(|g| !groups.iter().any(|have| have == g))
            .collect();
        if !removed.is_empty() {
            return Err(invalid(
                origin,
                format!(
                    "users: `groups` for core replaces Flatcar's groups of core (Ignition runs usermod --groups, without --append), so core would lose {}; core is already in {}: leave `groups` out, or list those too",
                    removed.join(", "),
                    CORE_GROUPS.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The config this plan renders, judged as Ignition judges it; a violation is told where
/// the entry it concerns was written.
fn check_as_ignition(profile: &Profile, plan: &RolePlan) -> Result<(), RoleError> {
    let config = crate::config::ignition::config(plan);
    let Some(violation) = crate::config::rules::check(&config).into_iter().next() else {
        return Ok(());
    };
    let key = violation.key.as_str();
    let origin = profile
        .fragments
        .nodes
        .iter()
        .filter(|n| n.value.path() == key)
        .map(|n| &n.origin)
        .chain(
            profile
                .files
                .iter()
                .filter(|f| f.path == key)
                .map(|f| &f.origin),
        )
        .chain(
            profile
                .fragments
                .units
                .iter()
                .filter(|u| u.value.name == key)
                .map(|u| &u.origin),
        )
        .chain(
            profile
                .units
                .iter()
                .filter(|u| u.value.name == key)
                .map(|u| &u.origin),
        )
        .chain(
            profile
                .fragments
                .users
                .iter()
                .filter(|u| u.value.name == key)
                .map(|u| &u.origin),
        )
        .chain(
            profile
                .users
                .iter()
                .filter(|u| u.name == key)
                .map(|u| &u.origin),
        )
        .next()
        .cloned()
        .unwrap_or_else(|| profile.origin());
    Err(invalid(&origin, violation.to_string()))
}

/// The chosen units whose text is a file of the units folder (not a profile's inline one).
fn library_sources(chosen: &BTreeMap<String, Chosen>) -> Vec<crate::profile::SourceFile> {
    use sha2::Digest;
    chosen
        .values()
        .filter(|c| c.spec.is_none_or(|s| s.value.contents.is_none()))
        .map(|c| crate::profile::SourceFile {
            path: c.file.name.clone().into(),
            sha256: crate::cache::hex(&sha2::Sha256::digest(c.file.contents.as_bytes())),
        })
        .collect()
}

/// A fragment may not write what the role writes itself: a path of one of its files (or a
/// folder on the way to one, unless as a directory), or a unit it runs. Ignition would
/// merge the two silently; the error names both places instead.
fn check_fragments(
    profile: &Profile,
    files: &[PlannedFile],
    placed: &Placed,
) -> Result<(), RoleError> {
    let written_at = |path: &str| match profile.files.iter().find(|f| f.path == path) {
        Some(file) => format!("the profile's file at {}", file.origin),
        None => "kato-image's own file for the role".to_string(),
    };
    // Paths first, as Ignition reads them: `/etc/kato/./role.env` is refused before it could
    // pass for a path other than the role's own.
    for node in &profile.fragments.nodes {
        if let Some((says, hint)) = crate::config::rules::path_problem(node.value.path()) {
            return Err(invalid(
                &node.origin,
                format!(
                    "storage: the {} `{}`: Ignition refuses the whole config (\"{says}\"), so every machine of the role would stop at first boot{}",
                    node.value.kind(),
                    printable(node.value.path()),
                    hint.map_or_else(String::new, |h| format!("; {h}"))
                ),
            ));
        }
    }
    for node in &profile.fragments.nodes {
        let path = node.value.path().trim_end_matches('/');
        for file in files {
            let inside = file
                .path
                .strip_prefix(path)
                .is_some_and(|rest| rest.starts_with('/'));
            let clash = file.path == path || (inside && !matches!(node.value, Node::Directory(_)));
            if clash {
                return Err(invalid(
                    &node.origin,
                    format!(
                        "storage: the {} `{}` clashes with {} (`{}`)",
                        node.value.kind(),
                        printable(node.value.path()),
                        written_at(&file.path),
                        file.path
                    ),
                ));
            }
        }
    }
    for unit in &profile.fragments.units {
        let name = &unit.value.name;
        let own = placed
            .machine
            .iter()
            .find(|(n, file, _)| n == name || &file.name == name)
            .map(|(_, _, origin)| format!("the role's unit from {origin}"))
            .or_else(|| {
                placed
                    .units
                    .iter()
                    .any(|u| &u.name == name)
                    .then(|| "kato-image's own unit for the role".to_string())
            });
        if let Some(own) = own {
            return Err(invalid(
                &unit.origin,
                format!("systemd.units: `{name}` is also {own}; give it in one place"),
            ));
        }
    }
    Ok(())
}

/// The units for the role: those its `[X-Fleet]` sections select, and those the profile
/// names (from the library or inline), by name. A unit the `[X-Fleet]` section gives to
/// other roles cannot be named.
fn choose_units<'a>(
    profile: &'a Profile,
    library: &UnitLibrary,
) -> Result<BTreeMap<String, Chosen<'a>>, RoleError> {
    let role = profile.role.as_str();
    let mut chosen: BTreeMap<String, Chosen> = library
        .units
        .values()
        .filter(|file| file.fleet.matches_role(role) == RoleMatch::Selected)
        .map(|file| {
            let chosen = Chosen {
                file: file.clone(),
                spec: None,
            };
            (file.name.clone(), chosen)
        })
        .collect();
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
    Ok(chosen)
}

/// Each chosen unit as it is written to the machine, with its instances: fixed ones are
/// units of their own, one chosen at boot is left to `kato-instances`.
fn place_units<'a>(
    chosen: &'a BTreeMap<String, Chosen<'a>>,
    role: &str,
) -> Result<Placed<'a>, RoleError> {
    let mut placed = Placed {
        units: Vec::new(),
        machine: Vec::new(),
        from_node: Vec::new(),
    };
    for Chosen { file, spec } in chosen.values() {
        let origin = spec.map_or(&file.origin, |s| &s.origin);
        let instances = spec.map_or(&Instances::Unspecified, |s| &s.value.instances);
        let enabled = spec
            .and_then(|s| s.value.enabled)
            .unwrap_or_else(|| file.is_installable());
        placed.units.push(PlannedUnit {
            name: file.name.clone(),
            contents: Some(file.contents.clone()),
            enabled: enabled && !file.is_template(),
            dropins: Vec::new(),
        });
        match (file.is_template(), instances) {
            (false, Instances::Unspecified) => {
                placed
                    .machine
                    .push((file.name.clone(), file, origin.clone()))
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
                         (`instances: [1]` or `instance_from: machine`) in the profile",
                        file.name
                    ),
                ));
            }
            (true, Instances::Fixed(list)) => {
                for instance in list {
                    let name = unit::instance_name(&file.name, instance);
                    unit::check_name(&name).map_err(|m| invalid(origin, format!("units: {m}")))?;
                    placed.units.push(PlannedUnit {
                        name: name.clone(),
                        contents: None,
                        enabled,
                        dropins: Vec::new(),
                    });
                    placed.machine.push((name, file, origin.clone()));
                }
            }
            (true, Instances::FromNode(InstanceSource::Machine)) => {
                placed.from_node.push(file.name.clone());
                placed
                    .machine
                    .push((unit::instance_name(&file.name, "N"), file, origin.clone()));
            }
        }
    }
    Ok(placed)
}

/// The profile's own files, as planned files.
fn profile_files(profile: &Profile) -> Vec<PlannedFile> {
    profile
        .files
        .iter()
        .map(|f| PlannedFile {
            path: f.path.clone(),
            mode: f.mode,
            user: f.user.clone(),
            group: f.group.clone(),
            contents: f.contents.clone(),
        })
        .collect()
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

/// Starts each template's instance for this machine.
const INSTANCES_SCRIPT: &str = include_str!("scripts/kato-instances.sh");

fn instances_unit(templates: &[String]) -> String {
    format!(
        "# Written by kato-image: starts the instances of this machine's member number.\n\
         [Unit]\n\
         Description=Start role template units for this machine's member number\n\
         After=network-online.target docker.service\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         StandardOutput=journal+console\n\
         StandardError=journal+console\n\
         ExecStart={INSTANCES_SCRIPT_PATH} {}\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        templates.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_machines_run_are_valid_shell() {
        for (shell, script) in [
            ("sh", INSTANCES_SCRIPT),
            ("bash", preload::SCRIPT_FOR_TESTS),
        ] {
            let out = std::process::Command::new(shell)
                .args(["-n", "-c", script])
                .output()
                .expect("a shell");
            assert!(
                out.status.success(),
                "{shell} -n: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    fn library(units: &[(&str, &str)]) -> (tempfile::TempDir, UnitLibrary) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in units {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let library = UnitLibrary::load(dir.path()).unwrap();
        (dir, library)
    }

    fn profile(role: &str, units: Vec<Located<UnitSpec>>) -> Profile {
        Profile {
            role: role.into(),
            description: None,
            release: Default::default(),
            users: Vec::new(),
            files: Vec::new(),
            units,
            kernel_args: Vec::new(),
            images: Vec::new(),
            data: Default::default(),
            outputs: Default::default(),
            metadata: BTreeMap::new(),
            machines: Vec::new(),
            fragments: Default::default(),
            sources: Vec::new(),
        }
    }

    const SERVICE: &str = "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n";

    #[test]
    fn fleet_sections_choose_units_and_profiles_add_to_them() {
        let (_dir, lib) = library(&[
            (
                "a.service",
                &format!("{SERVICE}[X-Fleet]\nMachineMetadata=role=master\n"),
            ),
            ("b.service", &format!("{SERVICE}[X-Fleet]\nGlobal=true\n")),
            ("c.service", SERVICE),
        ]);
        let keys =
            |p: Profile| choose_units(&p, &lib).map(|c| c.keys().cloned().collect::<Vec<String>>());
        assert_eq!(
            keys(profile("master", Vec::new())).unwrap(),
            ["a.service", "b.service"]
        );
        assert_eq!(keys(profile("worker", Vec::new())).unwrap(), ["b.service"]);
        let named = |name: &str| Located {
            value: UnitSpec {
                name: name.into(),
                contents: None,
                enabled: None,
                instances: Instances::Unspecified,
            },
            origin: Origin::file(std::path::Path::new("worker.yaml")),
        };
        assert_eq!(
            keys(profile("worker", vec![named("c.service")])).unwrap(),
            ["b.service", "c.service"]
        );
        let refused = keys(profile("worker", vec![named("a.service")]));
        assert!(refused.is_err(), "a.service is master's");
    }

    #[test]
    fn template_instances_are_units_of_their_own_or_left_to_the_machine() {
        let (_dir, lib) = library(&[("zk@.service", SERVICE)]);
        let spec = |instances| Located {
            value: UnitSpec {
                name: "zk@.service".into(),
                contents: None,
                enabled: None,
                instances,
            },
            origin: Origin::file(std::path::Path::new("master.yaml")),
        };
        let fixed = profile(
            "master",
            vec![spec(Instances::Fixed(vec!["1".into(), "2".into()]))],
        );
        let chosen = choose_units(&fixed, &lib).unwrap();
        let placed = place_units(&chosen, "master").unwrap();
        let names: Vec<(&str, bool)> = placed
            .units
            .iter()
            .map(|u| (u.name.as_str(), u.enabled))
            .collect();
        assert_eq!(
            names,
            [
                ("zk@.service", false),
                ("zk@1.service", true),
                ("zk@2.service", true)
            ]
        );
        assert!(placed.from_node.is_empty());
        let from_node = profile(
            "master",
            vec![spec(Instances::FromNode(InstanceSource::Machine))],
        );
        let chosen = choose_units(&from_node, &lib).unwrap();
        let placed = place_units(&chosen, "master").unwrap();
        assert_eq!(placed.from_node, ["zk@.service"]);
        let none = profile("master", vec![spec(Instances::Unspecified)]);
        let chosen = choose_units(&none, &lib).unwrap();
        assert!(
            place_units(&chosen, "master").is_err(),
            "a template needs instances"
        );
    }
}
