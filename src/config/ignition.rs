//! Ignition spec 3.3.0, the version Flatcar and Fedora CoreOS both accept.

use ignition_config::v3_3 as ign;

use super::RenderError;
use crate::role::RolePlan;

pub const SPEC_VERSION: &str = "3.3.0";

pub fn config(plan: &RolePlan) -> ign::Config {
    let users = plan
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
    let files = plan
        .files
        .iter()
        .map(|file| {
            let mut out = ign::File::new(file.path.clone());
            out.mode = Some(i64::from(file.mode));
            out.overwrite = Some(true);
            let mut contents = ign::Resource::default();
            contents.source = Some(super::data_url(&file.contents));
            out.contents = Some(contents);
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
    let units = plan
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

    let mut config = ign::Config::default();
    if !users.is_empty() {
        config.passwd = Some(ign::Passwd {
            groups: None,
            users: Some(users),
        });
    }
    if !files.is_empty() {
        config.storage = Some(ign::Storage {
            files: Some(files),
            ..Default::default()
        });
    }
    if !units.is_empty() {
        config.systemd = Some(ign::Systemd { units: Some(units) });
    }
    config
}

/// Pretty JSON without the `null`s the generated types write for every unset field; object
/// keys come out sorted, so the bytes depend only on the plan.
pub fn render(plan: &RolePlan) -> Result<Vec<u8>, RenderError> {
    let error = |e: serde_json::Error| RenderError::Serialise {
        format: "Ignition",
        message: e.to_string(),
    };
    let mut value = serde_json::to_value(config(plan)).map_err(error)?;
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
