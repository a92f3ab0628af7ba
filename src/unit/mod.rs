//! systemd units: the `units/` folder, unit file syntax and fleet's `[X-Fleet]` role selection.

pub mod fleet;
pub mod parse;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use fleet::{FleetSpec, RoleMatch};
pub use parse::{Section, SyntaxError};

use crate::origin::Origin;

pub(crate) const UNIT_SUFFIXES: &[&str] = &[
    "service",
    "socket",
    "device",
    "mount",
    "automount",
    "swap",
    "target",
    "path",
    "timer",
    "slice",
    "scope",
];

#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    #[error("{}: cannot read units folder: {source}", dir.display())]
    ReadDir { dir: PathBuf, source: io::Error },
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{origin}: {message}")]
    Invalid { origin: Origin, message: String },
}

/// A parsed unit file.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitFile {
    pub name: String,
    /// The file exactly as written; `[X-Fleet]` stays in (systemd ignores it).
    pub contents: String,
    pub sections: Vec<Section>,
    pub fleet: FleetSpec,
    pub origin: Origin,
}

impl UnitFile {
    /// Parses `contents` as unit `name`; `origin` is where the text starts (line 1 of it).
    pub fn parse(name: &str, contents: &str, origin: Origin) -> Result<Self, UnitError> {
        let at = |line: u64, message: String| UnitError::Invalid {
            origin: Origin::new(origin.file.clone(), origin.line.max(1) + line - 1, 0),
            message: format!("unit `{name}`: {message}"),
        };
        check_name(name).map_err(|message| UnitError::Invalid {
            origin: origin.clone(),
            message,
        })?;
        let sections = parse::parse(contents).map_err(|e| at(e.line, e.message))?;
        let fleet = FleetSpec::from_sections(&sections).map_err(|(line, m)| at(line, m))?;
        let unit = UnitFile {
            name: name.to_string(),
            contents: contents.to_string(),
            sections,
            fleet,
            origin: origin.clone(),
        };
        if name.ends_with(".service") {
            let service = unit
                .section("Service")
                .ok_or_else(|| at(1, "has no [Service] section".into()))?;
            if !service.entries.iter().any(|e| e.key == "ExecStart") {
                return Err(at(service.line, "[Service] has no ExecStart=".into()));
            }
        }
        Ok(unit)
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    pub(crate) fn is_template(&self) -> bool {
        is_template(&self.name)
    }

    /// Whether `systemctl enable` has anything to do: an `[Install]` section that hooks the
    /// unit somewhere.
    pub(crate) fn is_installable(&self) -> bool {
        self.section("Install").is_some_and(|s| {
            s.entries.iter().any(|e| {
                matches!(
                    e.key.as_str(),
                    "WantedBy" | "RequiredBy" | "UpheldBy" | "Alias"
                )
            })
        })
    }
}

/// `name@.service`: a template, instantiated as `name@INSTANCE.service`.
pub(crate) fn is_template(name: &str) -> bool {
    name.contains("@.")
}

/// The instance `instance` of template `template` (`zookeeper@.service`, `2`).
pub(crate) fn instance_name(template: &str, instance: &str) -> String {
    template.replacen("@.", &format!("@{instance}."), 1)
}

/// Checks a unit name: a plain file name with a systemd unit suffix.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.contains('/') || name.contains("..") {
        return Err(format!(
            "unit name {name:?} must be a plain file name (no `/` or `..`)"
        ));
    }
    let Some((stem, suffix)) = name.rsplit_once('.') else {
        return Err(format!(
            "unit name {name:?} has no type suffix such as .service"
        ));
    };
    if !UNIT_SUFFIXES.contains(&suffix) {
        return Err(format!(
            "unit name {name:?} has an unknown type `.{suffix}` (expected one of .{})",
            UNIT_SUFFIXES.join(", .")
        ));
    }
    let valid =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '\\' | '@');
    if stem.is_empty()
        || stem.starts_with('@')
        || !stem.chars().all(valid)
        || stem.matches('@').count() > 1
    {
        return Err(format!(
            "unit name {name:?} is not a valid systemd unit name"
        ));
    }
    Ok(())
}

/// The largest unit file read (systemd's own parser takes lines of up to 2048 bytes; a unit
/// is text, not data).
pub(crate) const MAX_UNIT_FILE: u64 = 1 << 20;

/// Every unit file in a folder, by name.
#[derive(Debug, Clone, Default)]
pub struct UnitLibrary {
    pub dir: PathBuf,
    pub units: BTreeMap<String, UnitFile>,
}

impl UnitLibrary {
    pub fn load(dir: &Path) -> Result<Self, UnitError> {
        let read_dir = |source| UnitError::ReadDir {
            dir: dir.to_path_buf(),
            source,
        };
        let confinement = crate::input::Confinement::new(&[dir]).map_err(|e| match e {
            crate::input::InputError::Io { source, .. } => read_dir(source),
            other => UnitError::Invalid {
                origin: Origin::file(dir),
                message: other.to_string(),
            },
        })?;
        let mut units = BTreeMap::new();
        for entry in fs::read_dir(dir).map_err(read_dir)? {
            let path = entry.map_err(read_dir)?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let is_unit = name
                .rsplit_once('.')
                .is_some_and(|(_, suffix)| UNIT_SUFFIXES.contains(&suffix));
            if !is_unit {
                continue;
            }
            // Something named like a unit that is not one would otherwise look missing.
            let what = match fs::metadata(&path) {
                Ok(m) if m.is_file() => None,
                Ok(m) if m.is_dir() => Some("a folder, not a unit file".to_string()),
                Ok(_) => Some("not a regular file".to_string()),
                Err(_) => Some(match fs::read_link(&path) {
                    Ok(target) => format!(
                        "a symbolic link to {}, which does not exist",
                        target.display()
                    ),
                    Err(e) => format!("cannot be read ({e})"),
                }),
            };
            if let Some(what) = what {
                return Err(UnitError::Invalid {
                    origin: Origin::file(&path),
                    message: format!("unit `{name}` is {what}"),
                });
            }
            // A unit file that links out of the folder is not one of its units.
            let bytes = confinement
                .read(&path, MAX_UNIT_FILE, "unit file")
                .map_err(|e| UnitError::Invalid {
                    origin: Origin::file(&path),
                    message: e.reason(),
                })?;
            let contents = crate::input::text(bytes, &path).map_err(|e| UnitError::Invalid {
                origin: Origin::file(&path),
                message: e.to_string(),
            })?;
            let unit = UnitFile::parse(name, &contents, Origin::new(&path, 1, 0))?;
            units.insert(name.to_string(), unit);
        }
        Ok(UnitLibrary {
            dir: dir.to_path_buf(),
            units,
        })
    }

    pub fn get(&self, name: &str) -> Option<&UnitFile> {
        self.units.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("zookeeper@.service").is_ok());
        assert!(check_name("zookeeper@3.service").is_ok());
        assert!(check_name("var-lib-kato.mount").is_ok());
        assert!(check_name("../etc.service").is_err());
        assert!(check_name("a/b.service").is_err());
        assert!(check_name("thing").is_err());
        assert!(check_name("thing.exe").is_err());
        assert_eq!(
            instance_name("zookeeper@.service", "2"),
            "zookeeper@2.service"
        );
    }
}
