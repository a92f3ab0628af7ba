use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::schema::ProfileDoc;
use super::{Profile, ProfileError, merge};
use crate::input::Confinement;
use crate::origin::Origin;

/// The largest profile file read: a profile is settings, not data.
pub(crate) const MAX_PROFILE: u64 = 4 << 20;

/// The profiles in one folder, by name. Each file is read and parsed once, the first time
/// it is needed, however many roles extend it.
#[derive(Debug, Clone)]
pub struct ProfileSet {
    dir: PathBuf,
    files: BTreeMap<String, ProfileFile>,
    /// Where the profiles and every file they name may come from.
    confinement: Confinement,
}

#[derive(Debug, Clone)]
struct ProfileFile {
    path: PathBuf,
    parsed: OnceLock<Arc<Layer>>,
}

/// One parsed profile file.
#[derive(Debug)]
pub(super) struct Layer {
    pub path: PathBuf,
    /// SHA-256 of the bytes parsed.
    pub sha256: String,
    pub doc: ProfileDoc,
}

impl ProfileSet {
    /// The profiles in `dir`; they may name files inside it only.
    pub fn open(dir: &Path) -> Result<Self, ProfileError> {
        Self::open_with(dir, None)
    }

    /// The profiles in `dir`; they may name files inside it, and inside `files_dir`.
    pub(crate) fn open_with(dir: &Path, files_dir: Option<&Path>) -> Result<Self, ProfileError> {
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
            let file = ProfileFile {
                path: path.clone(),
                parsed: OnceLock::new(),
            };
            if let (true, Some(stem)) = (is_yaml, path.file_stem().and_then(|s| s.to_str()))
                && let Some(other) = files.insert(stem.to_string(), file)
            {
                return Err(ProfileError::invalid(
                    Origin::file(&path),
                    format!(
                        "profile `{stem}` is also defined by {}",
                        other.path.display()
                    ),
                ));
            }
        }
        let mut allowed = vec![dir];
        allowed.extend(files_dir);
        Ok(ProfileSet {
            dir: dir.to_path_buf(),
            files,
            confinement: Confinement::new(&allowed)?,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every profile that is a role (not `abstract`), sorted by name.
    pub fn roles(&self) -> Result<Vec<String>, ProfileError> {
        let mut roles = Vec::new();
        for (name, file) in &self.files {
            if !self.parsed(file)?.doc.is_abstract.unwrap_or(false) {
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
        let leaf = self.parsed(self.files.get(role).ok_or_else(unknown)?)?;
        if leaf.doc.is_abstract.unwrap_or(false) {
            return Err(unknown());
        }
        let chain = self.chain(role, leaf)?;
        let merged = merge::merge(role, &chain, &self.confinement)?;
        super::validate::check(&merged, &self.dir)?;
        Ok(merged)
    }

    /// The file parsed, once.
    fn parsed(&self, file: &ProfileFile) -> Result<Arc<Layer>, ProfileError> {
        if let Some(layer) = file.parsed.get() {
            return Ok(layer.clone());
        }
        let layer = Arc::new(parse(&file.path, &self.confinement)?);
        Ok(file.parsed.get_or_init(|| layer).clone())
    }

    /// The `extends` chain of a profile, root first.
    fn chain(&self, name: &str, leaf: Arc<Layer>) -> Result<Vec<Arc<Layer>>, ProfileError> {
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
            let file = self
                .files
                .get(&parent)
                .ok_or_else(|| ProfileError::UnknownParent {
                    origin,
                    name: parent.clone(),
                    known: self.files.keys().cloned().collect::<Vec<_>>().join(", "),
                })?;
            chain.push(self.parsed(file)?);
            names.push(parent);
        }
        chain.reverse();
        Ok(chain)
    }
}

fn parse(path: &Path, confinement: &Confinement) -> Result<Layer, ProfileError> {
    let bytes = confinement.read(path, MAX_PROFILE, "profile")?;
    let text = crate::input::text(bytes, path)?;
    if text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---"
    }) {
        return Err(ProfileError::invalid(
            Origin::file(path),
            "the profile is empty: give its settings, or remove the file",
        ));
    }
    let doc: ProfileDoc = serde_saphyr::from_str(&final_block_as_written(&text))
        .map_err(|e| parse_error(path, &e))?;
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
    } else if let Some(breach) = message.strip_prefix("budget breached: ") {
        budget_words(breach)
    } else {
        message.to_string()
    };
    crate::wording::in_words(&ours, crate::wording::Notation::Yaml)
}

/// The parser's limit that was reached (`Nodes { nodes: 250001 }`), in the words of someone
/// who writes YAML: what was too large, too deep or too many.
fn budget_words(breach: &str) -> String {
    let name = breach
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or("");
    let count: u64 = breach
        .split(|c: char| !c.is_ascii_digit())
        .find(|d| !d.is_empty())
        .and_then(|d| d.parse().ok())
        .unwrap_or(0);
    let over = count.saturating_sub(1);
    match name {
        "Nodes" | "Events" => format!("too large: more than {over} values (maps, lists and texts) in one file"),
        "ScalarBytes" => format!(
            "too large: its values add up to more than {over} bytes of text, counting each use of an alias (`*name`) again"
        ),
        "InputBytes" => format!("too large: more than {over} bytes"),
        "CommentBytes" => format!("too large: more than {over} bytes of comments"),
        "Depth" | "PropertyExpansionDepth" | "InclusionDepth" => {
            format!("nested too deep: more than {over} levels of maps and lists")
        }
        "Aliases" | "Anchors" | "AliasAnchorRatio" | "MergeKeys" | "RecordedAnchorEvents"
        | "RecordedAnchorBytes" => {
            "too many aliases, anchors or merge keys (`*name`, `&name`, `<<`): a profile may use a few, not expand into a large document".into()
        }
        "Documents" => "a profile is one YAML document, but this file has more than one (`---`)".into(),
        _ => "too large or too deeply nested to be a profile".into(),
    }
}

/// `text` read as libyaml reads it: a block scalar that ends the file without a line break
/// (`contents: |` and text up to the end, no newline) has no final line break, which the
/// parser would add. Such a scalar's default (clip) chomping is made explicit as strip
/// (`|-`), which reads the same here and in libyaml; anything else is left as written.
pub(crate) fn final_block_as_written(text: &str) -> std::borrow::Cow<'_, str> {
    use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};
    if text.is_empty() || text.ends_with('\n') {
        return text.into();
    }
    let mut last_block = None;
    for event in Parser::new_from_str(text) {
        let Ok((event, span)) = event else {
            return text.into();
        };
        if let Event::Scalar(_, style, _, _) = event {
            let block = matches!(style, ScalarStyle::Literal | ScalarStyle::Folded);
            last_block = block.then_some(span);
        }
    }
    let Some(span) = last_block else {
        return text.into();
    };
    let (Some(start), Some(end)) = (span.start.byte_offset(), span.end.byte_offset()) else {
        return text.into();
    };
    if end < text.trim_end_matches([' ', '\t']).len() {
        return text.into();
    }
    // The indicator: where the span starts, or else the last `|` or `>` of the header line
    // (the line before the one the content starts on), outside a comment.
    let start = start.min(text.len());
    let at_indicator = if matches!(text.as_bytes().get(start), Some(b'|' | b'>')) {
        Some(start)
    } else {
        text[..start].rfind('\n').and_then(|header_end| {
            let header_start = text[..header_end].rfind('\n').map_or(0, |n| n + 1);
            let header = &text[header_start..header_end];
            let header = header.split(" #").next().unwrap_or(header);
            header.rfind(['|', '>']).map(|i| header_start + i)
        })
    };
    let Some(indicator) = at_indicator else {
        return text.into();
    };
    let chomping = text[indicator + 1..]
        .chars()
        .take_while(|c| !matches!(c, ' ' | '\t' | '\r' | '\n' | '#'))
        .any(|c| c == '+' || c == '-');
    if chomping {
        return text.into();
    }
    format!("{}-{}", &text[..indicator + 1], &text[indicator + 1..]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A profile folder from `(file name, yaml)`.
    fn folder(files: &[(&str, &str)]) -> (tempfile::TempDir, ProfileSet) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let set = ProfileSet::open(dir.path()).unwrap();
        (dir, set)
    }

    #[test]
    fn a_chain_merges_maps_appends_lists_and_overrides_scalars_root_first() {
        let (_dir, set) = folder(&[
            (
                "base.yaml",
                "abstract: true\ndescription: base\nkernel_args: [a=1]\nmetadata: {x: base, y: base}\n",
            ),
            (
                "mid.yaml",
                "abstract: true\nextends: base\nkernel_args: [b=2]\nmetadata: {y: mid}\n",
            ),
            (
                "top.yaml",
                "extends: mid\ndescription: top\nkernel_args: [c=3]\nmetadata: {z: top}\n",
            ),
        ]);
        let top = set.load("top").unwrap();
        assert_eq!(top.description.as_deref(), Some("top"));
        let args: Vec<&str> = top.kernel_args.iter().map(|a| a.value.as_str()).collect();
        assert_eq!(args, ["a=1", "b=2", "c=3"]);
        let meta: Vec<(&str, &str)> = top
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.value.as_str()))
            .collect();
        assert_eq!(meta, [("x", "base"), ("y", "mid"), ("z", "top")]);
        // Abstract profiles are not roles, and cannot be built as one.
        assert_eq!(set.roles().unwrap(), ["top"]);
        let text = set.load("base").unwrap_err().to_string();
        assert_eq!(text, "unknown role `base` (known roles: top)");
    }

    #[test]
    fn each_file_is_parsed_once_however_many_roles_extend_it() {
        let (dir, set) = folder(&[
            ("base.yaml", "abstract: true\ndescription: first\n"),
            ("a.yaml", "extends: base\n"),
            ("b.yaml", "extends: base\n"),
        ]);
        assert_eq!(set.load("a").unwrap().description.as_deref(), Some("first"));
        // What was parsed is what every later role sees: one run, one reading.
        std::fs::write(
            dir.path().join("base.yaml"),
            "description: [not, a, string]\n",
        )
        .unwrap();
        assert_eq!(set.load("b").unwrap().description.as_deref(), Some("first"));
        assert_eq!(set.roles().unwrap(), ["a", "b"]);
    }

    #[test]
    fn cycles_unknown_parents_and_names_given_twice_are_refused_where_they_are() {
        let (_dir, set) = folder(&[
            ("a.yaml", "description: a\nextends: b\n"),
            ("b.yaml", "extends: a\n"),
            ("c.yaml", "extends: nowhere\n"),
        ]);
        let cycle = set.load("a").unwrap_err().to_string();
        assert!(
            cycle.contains("b.yaml:1:") && cycle.ends_with("`extends` cycle: a -> b -> a"),
            "{cycle}"
        );
        let unknown = set.load("c").unwrap_err().to_string();
        assert!(
            unknown.contains("c.yaml:1:")
                && unknown.contains("`extends: nowhere` names no profile"),
            "{unknown}"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("web.yaml"), "description: x\n").unwrap();
        std::fs::write(dir.path().join("web.yml"), "description: y\n").unwrap();
        let twice = ProfileSet::open(dir.path()).unwrap_err().to_string();
        assert!(
            twice.contains("profile `web` is also defined by"),
            "{twice}"
        );
    }

    #[test]
    fn an_empty_profile_is_refused_rather_than_read_as_defaults() {
        let (_dir, set) = folder(&[("empty.yaml", "# nothing yet\n---\n")]);
        let text = set.load("empty").unwrap_err().to_string();
        assert!(text.contains("the profile is empty"), "{text}");
    }

    fn read(text: &str) -> BTreeMap<String, String> {
        serde_saphyr::from_str(&final_block_as_written(text)).unwrap()
    }

    #[test]
    fn a_block_scalar_ending_the_file_gets_no_line_break_it_does_not_have() {
        // As libyaml (and so PyYAML and Ignition's Butane) reads each of these.
        for (text, value) in [
            ("a: |\n  text", "text"),
            ("a: |\n  text\n", "text\n"),
            ("a: >\n  one\n  two", "one two"),
            ("a: |2\n   text", " text"),
            ("a: |-\n  text", "text"),
            ("a: plain", "plain"),
            ("b: |\n  first\na: |\n  text", "text"),
        ] {
            assert_eq!(read(text)["a"], value, "{text:?}");
        }
        assert_eq!(read("b: |\n  first\na: x")["b"], "first\n");
    }
}
