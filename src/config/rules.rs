//! The checks Ignition makes of a config before it applies any of it (coreos/ignition,
//! `config/v3_3/types` and `config/validate`, v2.14 to v2.26): a config that fails one is
//! refused whole at first boot, so every machine of the role stops in the initrd. A built
//! config is held to them here, before anything is written, so that such a config is told
//! at the profile instead.
//!
//! What is checked, each in Ignition's words:
//! - storage paths absolute and fully simplified (equal to their lexical clean form);
//! - one entry per path across files, directories and links, one unit per name, one
//!   drop-in per name in a unit, one user and one group per name, no line twice in a
//!   user's SSH keys or groups, no kernel argument twice;
//! - nothing under a link the config itself creates;
//! - every link has a target;
//! - an owner given by ID or by name, not both;
//! - hashes `sha512-HEX` or `sha256-HEX` of the right length, with a source;
//! - `overwrite` only with a source;
//! - unit names with a systemd unit type, drop-in names ending in `.conf`, unit contents
//!   without lines systemd's parser refuses;
//! - no file, directory or link where a unit or drop-in with contents goes (Ignition 2.15
//!   and later).

use ignition_config::v3_3 as ign;

/// One check a config fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// What it concerns: `storage.files: /etc//x`, `systemd.units: a.service`.
    pub entry: String,
    /// The path or name the entry is keyed by, to find where it was written.
    pub key: String,
    /// Ignition's message.
    pub(crate) ignition_says: &'static str,
    /// What to write instead, where there is one answer.
    pub(crate) hint: Option<String>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: Ignition refuses the whole config (\"{}\"), so every machine of the role would stop at first boot",
            self.entry, self.ignition_says
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

/// Lexical clean form of an absolute path, as Go's `path.Clean` gives it.
pub fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Ignition's `validatePath`: `None` when the path is acceptable.
pub fn path_problem(path: &str) -> Option<(&'static str, Option<String>)> {
    if path.is_empty() {
        return Some(("path not specified", None));
    }
    if !path.starts_with('/') {
        return Some(("path not absolute", None));
    }
    let cleaned = clean(path);
    (cleaned != path).then(|| {
        (
            "path is not fully simplified",
            Some(format!("write {}", crate::origin::quoted(&cleaned))),
        )
    })
}

/// Every check `config` fails, in the order Ignition reports them.
pub fn check(config: &ign::Config) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut add = |entry: String, key: &str, says: &'static str, hint: Option<String>| {
        found.push(Violation {
            entry: crate::origin::printable(&entry),
            key: key.to_string(),
            ignition_says: says,
            hint,
        })
    };
    if let Some(storage) = &config.storage {
        storage_checks(storage, &mut add);
    }
    let units = config
        .systemd
        .as_ref()
        .and_then(|s| s.units.as_deref())
        .unwrap_or(&[]);
    unit_checks(units, &mut add);
    if let Some(storage) = &config.storage {
        for (section, path) in storage_paths(storage) {
            if unit_paths(units).any(|p| p == path) {
                add(
                    format!("{section}: {path}"),
                    path,
                    "path conflicts with systemd unit or dropin",
                    Some("give the unit's contents in systemd.units only".into()),
                );
            }
        }
    }
    if let Some(passwd) = &config.passwd {
        passwd_checks(passwd, &mut add);
    }
    if let Some(args) = &config.kernel_arguments {
        let all = args
            .should_exist
            .iter()
            .chain(&args.should_not_exist)
            .flatten();
        for arg in duplicates(all.map(String::as_str)) {
            add(
                format!("kernelArguments: {arg}"),
                arg,
                "duplicate entry defined",
                None,
            );
        }
    }
    found
}

type Add<'a> = dyn FnMut(String, &str, &'static str, Option<String>) + 'a;

fn storage_paths(storage: &ign::Storage) -> impl Iterator<Item = (&'static str, &str)> {
    let dirs = storage
        .directories
        .iter()
        .flatten()
        .map(|d| ("storage.directories", d.path.as_str()));
    let files = storage
        .files
        .iter()
        .flatten()
        .map(|f| ("storage.files", f.path.as_str()));
    let links = storage
        .links
        .iter()
        .flatten()
        .map(|l| ("storage.links", l.path.as_str()));
    dirs.chain(files).chain(links)
}

fn storage_checks(storage: &ign::Storage, add: &mut Add) {
    for (section, path) in storage_paths(storage) {
        if let Some((says, hint)) = path_problem(path) {
            add(format!("{section}: {path}"), path, says, hint);
        }
    }
    for path in duplicates(storage_paths(storage).map(|(_, p)| p)) {
        add(
            format!("storage: {path}"),
            path,
            "duplicate entry defined",
            Some("give each path once, as one file, directory or link".into()),
        );
    }
    let links: Vec<&str> = storage
        .links
        .iter()
        .flatten()
        .map(|l| l.path.as_str())
        .collect();
    for (section, path) in storage_paths(storage) {
        let says = match section {
            "storage.files" => "file path includes link in config",
            "storage.directories" => "directory path includes link in config",
            _ => "link path includes link in config",
        };
        if let Some(link) = links.iter().find(|l| {
            path.strip_prefix(**l)
                .is_some_and(|rest| rest.starts_with('/'))
        }) {
            add(
                format!("{section}: {path}"),
                path,
                says,
                Some(format!(
                    "it lies under the link {}; write it where the link points",
                    crate::origin::quoted(link)
                )),
            );
        }
    }
    for link in storage.links.iter().flatten() {
        if link.target.as_deref().is_none_or(str::is_empty) {
            add(
                format!("storage.links: {}", link.path),
                &link.path,
                "link target is required",
                None,
            );
        }
    }
    let owners = storage
        .files
        .iter()
        .flatten()
        .map(|f| ("storage.files", &f.path, &f.user, &f.group))
        .chain(
            storage
                .directories
                .iter()
                .flatten()
                .map(|d| ("storage.directories", &d.path, &d.user, &d.group)),
        )
        .chain(
            storage
                .links
                .iter()
                .flatten()
                .map(|l| ("storage.links", &l.path, &l.user, &l.group)),
        );
    for (section, path, user, group) in owners {
        let both_user = user
            .as_ref()
            .is_some_and(|u| u.id.is_some() && u.name.as_deref().is_some_and(|n| !n.is_empty()));
        let both_group = group
            .as_ref()
            .is_some_and(|g| g.id.is_some() && g.name.as_deref().is_some_and(|n| !n.is_empty()));
        if both_user || both_group {
            add(
                format!("{section}: {path}"),
                path,
                "cannot set both id and name",
                Some("name the owner by id or by name".into()),
            );
        }
    }
    for file in storage.files.iter().flatten() {
        let source = file.contents.as_ref().and_then(|c| c.source.as_ref());
        if file.overwrite == Some(true) && source.is_none() {
            add(
                format!("storage.files: {}", file.path),
                &file.path,
                "overwrite must be false if source is unspecified",
                None,
            );
        }
        let resources = file.contents.iter().chain(file.append.iter().flatten());
        for resource in resources {
            if let Some((says, hint)) = hash_problem(resource) {
                add(
                    format!("storage.files: {}", file.path),
                    &file.path,
                    says,
                    hint,
                );
            }
        }
    }
}

/// Ignition's `Verification.Validate` and `validateVerification`.
fn hash_problem(resource: &ign::Resource) -> Option<(&'static str, Option<String>)> {
    let hash = resource.verification.as_ref()?.hash.as_deref()?;
    if resource.source.is_none() {
        return Some((
            "source must be specified if verification is specified",
            None,
        ));
    }
    let expected = "sha512-HEX (128 digits) or sha256-HEX (64 digits)";
    let Some((function, sum)) = hash.split_once('-') else {
        return Some((
            "malformed hash specifier",
            Some(format!("write {expected}")),
        ));
    };
    let length = match function {
        "sha512" => 128,
        "sha256" => 64,
        _ => {
            return Some((
                "unrecognized hash function",
                Some(format!("write {expected}")),
            ));
        }
    };
    if sum.len() != length {
        return Some((
            "incorrect size for hash sum",
            Some(format!("write {expected}")),
        ));
    }
    None
}

/// Ignition takes every unit type systemd has, and `snapshot`, which systemd dropped in 228.
fn ignition_unit_type(kind: &str) -> bool {
    crate::unit::UNIT_SUFFIXES.contains(&kind) || kind == "snapshot"
}

fn unit_checks(units: &[ign::Unit], add: &mut Add) {
    for unit in units {
        let name = &unit.name;
        let kind = name.rsplit_once('.').map(|(_, k)| k);
        if !kind.is_some_and(ignition_unit_type) {
            add(
                format!("systemd.units: {name}"),
                name,
                "invalid systemd unit extension",
                None,
            );
        }
        if let Some(contents) = &unit.contents
            && let Some(says) = unit_contents_problem(contents)
        {
            add(format!("systemd.units: {name}"), name, says, None);
        }
        let dropins = unit.dropins.as_deref().unwrap_or(&[]);
        for dropin in dropins {
            if !dropin.name.ends_with(".conf") {
                add(
                    format!("systemd.units: {name}: dropins: {}", dropin.name),
                    name,
                    "invalid systemd drop-in extension",
                    None,
                );
            }
            if let Some(contents) = &dropin.contents
                && let Some(says) = unit_contents_problem(contents)
            {
                add(
                    format!("systemd.units: {name}: dropins: {}", dropin.name),
                    name,
                    says,
                    None,
                );
            }
        }
        for dup in duplicates(dropins.iter().map(|d| d.name.as_str())) {
            add(
                format!("systemd.units: {name}: dropins: {dup}"),
                name,
                "duplicate entry defined",
                None,
            );
        }
    }
    for dup in duplicates(units.iter().map(|u| u.name.as_str())) {
        add(
            format!("systemd.units: {dup}"),
            dup,
            "duplicate entry defined",
            None,
        );
    }
}

/// Where Ignition writes units and drop-ins that have contents.
fn unit_paths(units: &[ign::Unit]) -> impl Iterator<Item = String> + '_ {
    units.iter().flat_map(|unit| {
        let own = unit
            .contents
            .as_ref()
            .map(|_| format!("/etc/systemd/system/{}", unit.name));
        let dropins = unit
            .dropins
            .iter()
            .flatten()
            .filter(|d| d.contents.is_some())
            .map(move |d| format!("/etc/systemd/system/{}.d/{}", unit.name, d.name));
        own.into_iter().chain(dropins)
    })
}

/// What go-systemd's unit parser (which Ignition runs on contents) refuses: a line of 2048
/// bytes or more, a section header with text after it, and an option line without `=`.
fn unit_contents_problem(contents: &str) -> Option<&'static str> {
    let mut continued = false;
    for raw in contents.split('\n') {
        if raw.len() >= 2048 {
            return Some("invalid unit content: line too long (max 2048 bytes)");
        }
        let line = raw.trim();
        if continued {
            // A value continued from the line before (it ended in a backslash).
            continued = line.ends_with('\\');
            continue;
        }
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            match line.find(']') {
                None => return Some("invalid unit content: unable to find end of section"),
                Some(end) if end + 1 != line.len() => {
                    return Some("invalid unit content: found garbage after section name");
                }
                Some(_) => {}
            }
            continue;
        }
        if !line.contains('=') {
            return Some(
                "invalid unit content: unexpected newline encountered while parsing option name",
            );
        }
        continued = line.ends_with('\\');
    }
    None
}

fn passwd_checks(passwd: &ign::Passwd, add: &mut Add) {
    let users = passwd.users.as_deref().unwrap_or(&[]);
    for dup in duplicates(users.iter().map(|u| u.name.as_str())) {
        add(
            format!("passwd.users: {dup}"),
            dup,
            "duplicate entry defined",
            None,
        );
    }
    let groups = passwd.groups.as_deref().unwrap_or(&[]);
    for dup in duplicates(groups.iter().map(|g| g.name.as_str())) {
        add(
            format!("passwd.groups: {dup}"),
            dup,
            "duplicate entry defined",
            None,
        );
    }
    for user in users {
        let keys = user
            .ssh_authorized_keys
            .iter()
            .flatten()
            .map(String::as_str);
        for dup in duplicates(keys) {
            add(
                format!("passwd.users: {}: sshAuthorizedKeys", user.name),
                &user.name,
                "duplicate entry defined",
                Some(format!(
                    "the key {} is given twice",
                    crate::origin::quoted(dup)
                )),
            );
        }
        for dup in duplicates(user.groups.iter().flatten().map(String::as_str)) {
            add(
                format!("passwd.users: {}: groups: {dup}", user.name),
                &user.name,
                "duplicate entry defined",
                None,
            );
        }
    }
}

/// Each value that appears more than once, once, in order of its second appearance.
fn duplicates<'a>(values: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = std::collections::BTreeSet::new();
    let mut twice = Vec::new();
    for value in values {
        if !seen.insert(value) && !twice.contains(&value) {
            twice.push(value);
        }
    }
    twice
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> ign::Config {
        serde_json::from_str(json).unwrap()
    }

    fn says(json: &str) -> Vec<&'static str> {
        check(&config(json))
            .into_iter()
            .map(|v| v.ignition_says)
            .collect()
    }

    #[test]
    fn paths_are_judged_as_path_clean_judges_them() {
        for (path, fine) in [
            ("/etc/kato/role.env", true),
            ("/", true),
            ("/etc/kato/./role.env", false),
            ("/etc//kato/role.env", false),
            ("/etc/kato/", false),
            ("/etc/../etc/x", false),
            ("etc/x", false),
        ] {
            assert_eq!(path_problem(path).is_none(), fine, "{path}");
        }
        assert_eq!(clean("/etc//kato/./role.env"), "/etc/kato/role.env");
        assert_eq!(clean("/a/../../b/"), "/b");
    }

    #[test]
    fn entries_under_links_and_duplicates_are_refused() {
        let found = says(
            r#"{"ignition":{"version":"3.3.0"},"storage":{
                "links":[{"path":"/opt/evil","target":"/etc/kato"},{"path":"/opt/t"}],
                "files":[{"path":"/opt/evil/role.env"},{"path":"/x"}],
                "directories":[{"path":"/x"}]}}"#,
        );
        assert!(
            found.contains(&"file path includes link in config"),
            "{found:?}"
        );
        assert!(found.contains(&"duplicate entry defined"), "{found:?}");
        assert!(found.contains(&"link target is required"), "{found:?}");
    }

    #[test]
    fn owners_hashes_units_and_keys_are_checked() {
        let found = says(
            r#"{"ignition":{"version":"3.3.0"},
                "storage":{"files":[
                  {"path":"/a","user":{"id":1,"name":"core"}},
                  {"path":"/b","contents":{"source":"data:,x","verification":{"hash":"sha512-zz"}}},
                  {"path":"/c","overwrite":true},
                  {"path":"/etc/systemd/system/x.service"}]},
                "systemd":{"units":[{"name":"x.service","contents":"[Unit]\nDescription=x\n"},
                                    {"name":"y.sevice"},
                                    {"name":"z.service","contents":"[Unit]\nbroken line\n"}]},
                "passwd":{"users":[{"name":"core","sshAuthorizedKeys":["k","k"]}]}}"#,
        );
        for expected in [
            "cannot set both id and name",
            "incorrect size for hash sum",
            "overwrite must be false if source is unspecified",
            "path conflicts with systemd unit or dropin",
            "invalid systemd unit extension",
            "invalid unit content: unexpected newline encountered while parsing option name",
            "duplicate entry defined",
        ] {
            assert!(found.contains(&expected), "{expected}: {found:?}");
        }
    }
}
