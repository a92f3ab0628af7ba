//! Ignition spec 3.3.0: the lowest version that expresses what profiles can say, so that
//! every Flatcar channel (LTS 4081's Ignition 2.19 takes up to 3.4.0) and older Ignitions
//! such as Debian's 2.14 (up to 3.3.0) apply it. A profile asking for something only a
//! newer spec has is refused where it is written, naming [`NEWER_SPEC_ACCEPTED_BY`].

use ignition_config::v3_3 as ign;

use super::RenderError;
use crate::profile::fragment::{self, Fragments, Node};
use crate::role::RolePlan;

pub(crate) const SPEC_VERSION: &str = "3.3.0";

/// Which releases accept spec 3.4.0 and later, for the message that refuses a profile needing
/// it (Ignition 2.15 added 3.4.0; LTS 4081 ships 2.19, stable 4593 and later 2.24).
pub(crate) const NEWER_SPEC_ACCEPTED_BY: &str = "Ignition spec 3.4.0, which Flatcar LTS 4081 and stable, beta and alpha 4593 and later accept but Ignition 2.14 and older do not";

pub fn config(plan: &RolePlan) -> ign::Config {
    let mut users = plan
        .users
        .iter()
        .map(|user| {
            let mut out = ign::User::new(user.name.clone());
            if !user.groups.is_empty() {
                out.groups = Some(user.groups.clone());
            }
            if !user.ssh_authorized_keys.is_empty() {
                out.ssh_authorized_keys = Some(user.ssh_authorized_keys.clone());
            }
            out
        })
        .collect::<Vec<_>>();
    let mut files = plan
        .files
        .iter()
        .map(|file| {
            let mut out = inline_file(&file.path, file.mode, &file.contents);
            out.user = file.user.as_ref().map(|name| ign::NodeUser {
                id: None,
                name: Some(name.clone()),
            });
            out.group = file.group.as_ref().map(|name| ign::NodeGroup {
                id: None,
                name: Some(name.clone()),
            });
            out
        })
        .collect::<Vec<_>>();
    let mut units = plan
        .units
        .iter()
        .map(|unit| {
            let mut out = ign::Unit::new(unit.name.clone());
            out.contents = unit.contents.clone();
            out.enabled = unit.enabled.then_some(true);
            if !unit.dropins.is_empty() {
                out.dropins = Some(
                    unit.dropins
                        .iter()
                        .map(|(name, contents)| {
                            let mut dropin = ign::Dropin::new(name.clone());
                            dropin.contents = Some(contents.clone());
                            dropin
                        })
                        .collect(),
                );
            }
            out
        })
        .collect::<Vec<_>>();
    let extra = &plan.fragments;
    for user in &extra.users {
        match users.iter_mut().find(|u| u.name == user.value.name) {
            Some(own) => fragment::merge_user(own, user.value.clone()),
            None => users.push(user.value.clone()),
        }
    }
    let mut directories = Vec::new();
    let mut links = Vec::new();
    for node in &extra.nodes {
        match &node.value {
            Node::File(f) => files.push(f.clone()),
            Node::Directory(d) => directories.push(d.clone()),
            Node::Link(l) => links.push(l.clone()),
        }
    }
    units.extend(extra.units.iter().map(|u| u.value.clone()));
    let groups = extra.groups.iter().map(|g| g.value.clone()).collect();
    let absent = extra
        .kernel_args_absent
        .iter()
        .map(|a| a.value.clone())
        .collect();
    assemble(users, groups, files, directories, links, units, absent)
}

/// The config of fragments alone, as `butane` would print a fragment's.
pub(crate) fn fragments_config(extra: &Fragments) -> ign::Config {
    let plan = RolePlan {
        role: String::new(),
        users: Vec::new(),
        files: Vec::new(),
        units: Vec::new(),
        kernel_args: Vec::new(),
        fragments: extra.clone(),
        unit_sources: Vec::new(),
    };
    let mut config = self::config(&plan);
    if !extra.kernel_args.is_empty() {
        let args = config.kernel_arguments.get_or_insert_with(Default::default);
        args.should_exist = Some(extra.kernel_args.iter().map(|a| a.value.clone()).collect());
    }
    config
}

fn non_empty<T>(list: Vec<T>) -> Option<Vec<T>> {
    (!list.is_empty()).then_some(list)
}

fn assemble(
    users: Vec<ign::User>,
    groups: Vec<ign::Group>,
    files: Vec<ign::File>,
    directories: Vec<ign::Directory>,
    links: Vec<ign::Link>,
    units: Vec<ign::Unit>,
    absent: Vec<String>,
) -> ign::Config {
    let mut config = ign::Config::default();
    if !users.is_empty() || !groups.is_empty() {
        config.passwd = Some(ign::Passwd {
            groups: non_empty(groups),
            users: non_empty(users),
        });
    }
    if !files.is_empty() || !directories.is_empty() || !links.is_empty() {
        config.storage = Some(ign::Storage {
            files: non_empty(files),
            directories: non_empty(directories),
            links: non_empty(links),
            ..Default::default()
        });
    }
    if !units.is_empty() {
        config.systemd = Some(ign::Systemd { units: Some(units) });
    }
    if !absent.is_empty() {
        config.kernel_arguments = Some(ign::KernelArguments {
            should_exist: None,
            should_not_exist: Some(absent),
        });
    }
    config
}

/// Where Flatcar's coreos-cloudinit looks for the machine's own cloud-config on ROOT: the
/// file `flatcar-install -c` writes, which `user-cloudinit@.path` runs on every boot.
pub(crate) const USER_DATA_PATH: &str = "/var/lib/flatcar-install/user_data";

/// A config whose only work is to write `cloud_config` where coreos-cloudinit runs it (root
/// only: user data often holds secrets). Ignition is the only way into ROOT on first boot.
pub fn user_data(cloud_config: &[u8]) -> ign::Config {
    ign::Config {
        storage: Some(ign::Storage {
            files: Some(vec![inline_file(USER_DATA_PATH, 0o600, cloud_config)]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A file Ignition writes whole (replacing what is there) from bytes in the config.
fn inline_file(path: &str, mode: u32, contents: &[u8]) -> ign::File {
    let mut file = ign::File::new(path.to_string());
    file.mode = Some(i64::from(mode));
    file.overwrite = Some(true);
    file.contents = Some(ign::Resource {
        source: Some(super::data_url(contents)),
        ..Default::default()
    });
    file
}

/// Pretty JSON without the `null`s the generated types write for every unset field; object
/// keys come out sorted, so the bytes depend only on the plan.
pub fn render(plan: &RolePlan) -> Result<Vec<u8>, RenderError> {
    to_bytes(&config(plan))
}

/// The bytes of `config`, as [`render`] writes them.
pub fn to_bytes(config: &ign::Config) -> Result<Vec<u8>, RenderError> {
    let error = |e: serde_json::Error| RenderError::Serialise {
        format: "Ignition",
        message: e.to_string(),
    };
    let mut value = serde_json::to_value(config).map_err(error)?;
    drop_nulls(&mut value);
    let mut bytes = serde_json::to_vec_pretty(&value).map_err(error)?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn drop_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}
