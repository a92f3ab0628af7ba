//! Checks on a merged profile that the YAML types alone cannot express.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Profile, ProfileError};
use crate::origin::Origin;

/// Files kato-image writes itself; a profile may not write them too.
pub(crate) const GENERATED_FILES: &[&str] = &["/etc/kato/role.env", "/opt/kato/bin/kato-instances"];

pub(super) fn check(profile: &Profile, _dir: &Path) -> Result<(), ProfileError> {
    check_release(profile)?;
    let mut users: BTreeMap<&str, &Origin> = BTreeMap::new();
    for user in &profile.users {
        if !is_user_name(&user.name) {
            return Err(ProfileError::invalid(
                user.origin.clone(),
                format!("users: `{}` is not a valid user name", user.name),
            ));
        }
        if let Some(first) = users.insert(&user.name, &user.origin) {
            return Err(ProfileError::invalid(
                user.origin.clone(),
                format!("users: `{}` is already defined at {first}", user.name),
            ));
        }
    }
    let mut paths: BTreeMap<&str, &Origin> = BTreeMap::new();
    for file in &profile.files {
        check_file_path(&file.path).map_err(|why| {
            ProfileError::invalid(file.origin.clone(), format!("files: `{}` {why}", file.path))
        })?;
        if GENERATED_FILES.contains(&file.path.as_str()) {
            return Err(ProfileError::invalid(
                file.origin.clone(),
                format!(
                    "files: `{}` is written by kato-image; set role metadata instead",
                    file.path
                ),
            ));
        }
        if let Some(first) = paths.insert(&file.path, &file.origin) {
            return Err(ProfileError::invalid(
                file.origin.clone(),
                format!(
                    "files: duplicate path `{}` (first defined at {first})",
                    file.path
                ),
            ));
        }
    }
    let mut units: BTreeMap<&str, &Origin> = BTreeMap::new();
    for unit in &profile.units {
        if let Some(first) = units.insert(&unit.value.name, &unit.origin) {
            return Err(ProfileError::invalid(
                unit.origin.clone(),
                format!(
                    "units: `{}` is listed twice (first at {first})",
                    unit.value.name
                ),
            ));
        }
    }
    for arg in &profile.kernel_args {
        check_kernel_arg(&arg.value).map_err(|why| {
            ProfileError::invalid(
                arg.origin.clone(),
                format!("kernel_args: {:?} {why}", arg.value),
            )
        })?;
    }
    for (key, value) in &profile.metadata {
        if !is_metadata_key(key) {
            return Err(ProfileError::invalid(
                value.origin.clone(),
                format!(
                    "metadata: key `{key}` must be lower-case letters, digits and `_`, starting with a letter"
                ),
            ));
        }
        if let Some(bad) = value.value.chars().find(|c| !is_metadata_char(*c)) {
            return Err(ProfileError::invalid(
                value.origin.clone(),
                format!("metadata: `{key}` contains {bad:?}, which role.env cannot carry"),
            ));
        }
    }
    Ok(())
}

fn check_release(profile: &Profile) -> Result<(), ProfileError> {
    let version = &profile.release.version;
    let concrete = version.split('.').count() == 3
        && version
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if version != "current" && !concrete {
        let origin = Origin::file(&profile.sources.last().expect("a profile has a file").path);
        return Err(ProfileError::invalid(
            origin,
            format!("release.version `{version}` is neither `current` nor a version like 4593.1.0"),
        ));
    }
    Ok(())
}

fn is_user_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && name.len() <= 32
}

fn check_file_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("is not an absolute path");
    }
    if path.len() == 1 || path.ends_with('/') {
        return Err("names a folder, not a file");
    }
    if path[1..]
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err("has an empty, `.` or `..` component");
    }
    if path.chars().any(|c| c.is_control()) {
        return Err("contains a control character");
    }
    Ok(())
}

/// Kernel arguments end up inside a double-quoted GRUB string and on an iPXE `kernel` line,
/// so anything that could end the string or start a new statement is refused.
pub(crate) fn check_kernel_arg(arg: &str) -> Result<(), &'static str> {
    if arg.is_empty() {
        return Err("is empty");
    }
    if arg.chars().any(|c| c.is_whitespace()) {
        return Err("contains white space; give each argument as its own list item");
    }
    if arg
        .chars()
        .any(|c| c.is_control() || matches!(c, '"' | '\'' | '\\' | '$' | ';' | '`' | '{' | '}'))
    {
        return Err(
            "contains a quote, `\\`, `$`, `;`, backquote or brace, which would break grub.cfg",
        );
    }
    Ok(())
}

fn is_metadata_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Values are written double-quoted to role.env, which systemd and sh both read.
fn is_metadata_char(c: char) -> bool {
    !c.is_control() && !matches!(c, '"' | '\\' | '$' | '`')
}
