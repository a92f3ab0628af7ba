use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::schema::ProfileDoc;
use super::{Profile, ProfileError, merge};
use crate::origin::Origin;

/// The profiles in one folder, by name.
#[derive(Debug, Clone)]
pub struct ProfileSet {
    dir: PathBuf,
    files: BTreeMap<String, PathBuf>,
}

/// One parsed profile file.
pub(super) struct Layer {
    pub path: PathBuf,
    /// SHA-256 of the bytes parsed.
    pub sha256: String,
    pub doc: ProfileDoc,
}

impl ProfileSet {
    pub fn open(dir: &Path) -> Result<Self, ProfileError> {
        let read_dir = |source| ProfileError::ReadDir {
            dir: dir.to_path_buf(),
            source,
        };
        let mut files = BTreeMap::new();
        for entry in fs::read_dir(dir).map_err(read_dir)? {
            let path = entry.map_err(read_dir)?.path();
            let is_yaml = matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            );
            if let (true, Some(stem)) = (is_yaml, path.file_stem().and_then(|s| s.to_str()))
                && let Some(other) = files.insert(stem.to_string(), path.clone())
            {
                return Err(ProfileError::invalid(
                    Origin::file(&path),
                    format!("profile `{stem}` is also defined by {}", other.display()),
                ));
            }
        }
        Ok(ProfileSet {
            dir: dir.to_path_buf(),
            files,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every profile that is a role (not `abstract`), sorted by name.
    pub fn roles(&self) -> Result<Vec<String>, ProfileError> {
        let mut roles = Vec::new();
        for (name, path) in &self.files {
            if !parse(path)?.doc.is_abstract.unwrap_or(false) {
                roles.push(name.clone());
            }
        }
        Ok(roles)
    }

    /// Loads, merges and checks the profile of `role`.
    pub fn load(&self, role: &str) -> Result<Profile, ProfileError> {
        let unknown = || -> ProfileError {
            let known = self
                .roles()
                .map(|r| r.join(", "))
                .unwrap_or_else(|_| self.files.keys().cloned().collect::<Vec<_>>().join(", "));
            ProfileError::UnknownRole {
                role: role.to_string(),
                known: if known.is_empty() {
                    format!("none in {}", self.dir.display())
                } else {
                    known
                },
            }
        };
        let path = self.files.get(role).ok_or_else(unknown)?;
        let leaf = parse(path)?;
        if leaf.doc.is_abstract.unwrap_or(false) {
            return Err(unknown());
        }
        let chain = self.chain(role, leaf)?;
        let merged = merge::merge(role, &chain)?;
        super::validate::check(&merged, &self.dir)?;
        Ok(merged)
    }

    /// The `extends` chain of a profile, root first.
    fn chain(&self, name: &str, leaf: Layer) -> Result<Vec<Layer>, ProfileError> {
        let mut names = vec![name.to_string()];
        let mut chain = vec![leaf];
        loop {
            let last = chain.last().expect("chain starts with the leaf");
            let Some(parent) = &last.doc.extends else {
                break;
            };
            let origin = Origin::from_location(&last.path, parent.referenced);
            let parent = parent.value.clone();
            if names.contains(&parent) {
                names.push(parent);
                return Err(ProfileError::Cycle {
                    origin,
                    chain: names.join(" -> "),
                });
            }
            let path = self
                .files
                .get(&parent)
                .ok_or_else(|| ProfileError::UnknownParent {
                    origin,
                    name: parent.clone(),
                    known: self.files.keys().cloned().collect::<Vec<_>>().join(", "),
                })?;
            chain.push(parse(path)?);
            names.push(parent);
        }
        chain.reverse();
        Ok(chain)
    }
}

fn parse(path: &Path) -> Result<Layer, ProfileError> {
    let text = fs::read_to_string(path).map_err(|source| ProfileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---"
    }) {
        return Err(ProfileError::invalid(
            Origin::file(path),
            "the profile is empty: give its settings, or remove the file",
        ));
    }
    let doc: ProfileDoc = serde_saphyr::from_str(&text).map_err(|e| parse_error(path, &e))?;
    Ok(Layer {
        path: path.to_path_buf(),
        sha256: crate::cache::hex(&<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes())),
        doc,
    })
}

/// One line: our own `file:line:column` prefix and the parser's message without its
/// rendered snippet or its own position suffix.
pub(super) fn parse_error(path: &Path, error: &serde_saphyr::Error) -> ProfileError {
    let origin = match error.location() {
        Some(location) => Origin::from_location(path, location),
        None => Origin::file(path),
    };
    let text = error.without_snippet().to_string();
    let first = text.lines().next().unwrap_or("invalid YAML").trim();
    let message = match first.rfind(" at line ") {
        Some(cut) => &first[..cut],
        None => first,
    };
    ProfileError::Parse {
        origin,
        message: in_words(message),
    }
}

/// The parser's messages that speak of its own API, in the profile writer's words.
fn in_words(message: &str) -> String {
    let ours = if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(',').next().unwrap_or(rest).trim();
        format!("`{key}` is given twice here; a key may appear once in a map")
    } else if message.starts_with("multiple YAML documents") {
        "a profile is one YAML document, but this file has more than one (`---`)".into()
    } else {
        message.to_string()
    };
    crate::wording::in_words(&ours, crate::wording::Notation::Yaml)
}
