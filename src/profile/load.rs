use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::schema::ProfileDoc;
use super::{Profile, ProfileError, merge};
use crate::input::Confinement;
use crate::origin::Origin;

/// The largest profile file read: a profile is settings, not data.
pub const MAX_PROFILE: u64 = 4 << 20;

/// The profiles in one folder, by name.
#[derive(Debug, Clone)]
pub struct ProfileSet {
    dir: PathBuf,
    files: BTreeMap<String, PathBuf>,
    /// Where the profiles and every file they name may come from.
    confinement: Confinement,
}

/// One parsed profile file.
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
    pub fn open_with(dir: &Path, files_dir: Option<&Path>) -> Result<Self, ProfileError> {
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
        for (name, path) in &self.files {
            if !parse(path, &self.confinement)?
                .doc
                .is_abstract
                .unwrap_or(false)
            {
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
        let leaf = parse(path, &self.confinement)?;
        if leaf.doc.is_abstract.unwrap_or(false) {
            return Err(unknown());
        }
        let chain = self.chain(role, leaf)?;
        let merged = merge::merge(role, &chain, &self.confinement)?;
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
            chain.push(parse(path, &self.confinement)?);
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
        "ScalarBytes" => format!("too large: more than {over} bytes of text in its values"),
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
    use super::final_block_as_written;
    use std::collections::BTreeMap;

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
