//! Config fragments: Butane (`variant: flatcar`) and Ignition files a profile lists under
//! `ignition:`, translated by our own code into what the role's Ignition config adds.
//!
//! Fragments merge in order (the profile an `extends` chain starts from first, then each
//! file's list), by Ignition's rules: a later storage entry at a path replaces the earlier
//! one; a later unit, user or group of the same name overrides the fields it sets, and its
//! lists (drop-ins by name, groups, SSH keys) add to the earlier ones. Conflicts with what
//! the role itself writes are found when the role is planned (`role::plan`), where both
//! sides are known.

mod butane;
pub(super) mod doc;
mod ignition;
mod translate;

use std::path::{Path, PathBuf};

use ignition_config::v3_3 as ign;
use serde_saphyr::Spanned;

use super::{Located, ProfileError, SourceFile};
use crate::input::Confinement;
use crate::origin::Origin;

pub use translate::MAX_LOCAL_FILE;

/// The largest fragment file read.
pub(crate) const MAX_FRAGMENT: u64 = 4 << 20;

/// What the fragments of a profile add to its role, merged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fragments {
    /// Files, directories and links, one per path, in the order first written.
    pub nodes: Vec<Located<Node>>,
    /// One per name.
    pub units: Vec<Located<ign::Unit>>,
    /// One per name.
    pub users: Vec<Located<ign::User>>,
    /// One per name.
    pub groups: Vec<Located<ign::Group>>,
    /// Baked into the image's kernel command line.
    pub kernel_args: Vec<Located<String>>,
    /// Left to Ignition's kargs stage: arguments from elsewhere that must be removed.
    pub(crate) kernel_args_absent: Vec<Located<String>>,
}

/// A storage entry: the three kinds share one namespace of paths.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    File(ign::File),
    Directory(ign::Directory),
    Link(ign::Link),
}

impl Node {
    pub fn path(&self) -> &str {
        match self {
            Node::File(f) => &f.path,
            Node::Directory(d) => &d.path,
            Node::Link(l) => &l.path,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Node::File(_) => "file",
            Node::Directory(_) => "directory",
            Node::Link(_) => "link",
        }
    }
}

impl Fragments {
    pub fn is_empty(&self) -> bool {
        *self == Fragments::default()
    }

    /// Where the first thing a fragment adds was written, for messages about fragments as a
    /// whole.
    pub(crate) fn first_origin(&self) -> Option<&Origin> {
        let nodes = self.nodes.iter().map(|n| &n.origin);
        let units = self.units.iter().map(|u| &u.origin);
        let users = self.users.iter().map(|u| &u.origin);
        let groups = self.groups.iter().map(|g| &g.origin);
        let args = self.kernel_args.iter().chain(&self.kernel_args_absent);
        nodes
            .chain(units)
            .chain(users)
            .chain(groups)
            .chain(args.map(|a| &a.origin))
            .next()
    }

    /// Adds `later` on top of what is here, by Ignition's merge rules.
    pub fn merge(&mut self, later: Fragments) -> Result<(), ProfileError> {
        for node in later.nodes {
            match self
                .nodes
                .iter_mut()
                .find(|n| n.value.path() == node.value.path())
            {
                Some(slot) => *slot = node,
                None => self.nodes.push(node),
            }
        }
        for unit in later.units {
            match self
                .units
                .iter_mut()
                .find(|u| u.value.name == unit.value.name)
            {
                Some(slot) => merge_unit(slot, unit),
                None => self.units.push(unit),
            }
        }
        for user in later.users {
            match self
                .users
                .iter_mut()
                .find(|u| u.value.name == user.value.name)
            {
                Some(slot) => merge_user(&mut slot.value, user.value),
                None => self.users.push(user),
            }
        }
        for group in later.groups {
            match self
                .groups
                .iter_mut()
                .find(|g| g.value.name == group.value.name)
            {
                Some(slot) => merge_group(&mut slot.value, group.value),
                None => self.groups.push(group),
            }
        }
        for arg in later.kernel_args {
            if !self.kernel_args.iter().any(|a| a.value == arg.value) {
                self.kernel_args.push(arg);
            }
        }
        for arg in later.kernel_args_absent {
            if !self.kernel_args_absent.iter().any(|a| a.value == arg.value) {
                self.kernel_args_absent.push(arg);
            }
        }
        for wanted in &self.kernel_args {
            if let Some(absent) = self
                .kernel_args_absent
                .iter()
                .find(|a| a.value == wanted.value)
            {
                return Err(ProfileError::invalid(
                    absent.origin.clone(),
                    format!(
                        "kernel_arguments: `{}` must not exist here, but {} says it should",
                        crate::origin::printable(&absent.value),
                        wanted.origin
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Ignition's merge of two entries with one key: the later one's set fields win.
macro_rules! take_set {
    ($into:expr, $from:expr, $($field:ident),*) => {
        $( if $from.$field.is_some() { $into.$field = $from.$field; } )*
    };
}

fn merge_unit(slot: &mut Located<ign::Unit>, later: Located<ign::Unit>) {
    let into = &mut slot.value;
    let from = later.value;
    take_set!(into, from, contents, enabled, mask);
    for dropin in from.dropins.into_iter().flatten() {
        let dropins = into.dropins.get_or_insert_with(Vec::new);
        match dropins.iter_mut().find(|d| d.name == dropin.name) {
            Some(d) => take_set!(d, dropin, contents),
            None => dropins.push(dropin),
        }
    }
}

/// Adds `user`'s set fields and list items to `into` (also used for the role's own users).
pub(crate) fn merge_user(into: &mut ign::User, from: ign::User) {
    take_set!(
        into,
        from,
        uid,
        gecos,
        home_dir,
        no_create_home,
        primary_group,
        no_user_group,
        no_log_init,
        shell,
        system,
        should_exist,
        password_hash
    );
    append_new(&mut into.groups, from.groups);
    append_new(&mut into.ssh_authorized_keys, from.ssh_authorized_keys);
}

fn merge_group(into: &mut ign::Group, from: ign::Group) {
    take_set!(into, from, gid, password_hash, system, should_exist);
}

fn append_new(into: &mut Option<Vec<String>>, from: Option<Vec<String>>) {
    for item in from.into_iter().flatten() {
        let list = into.get_or_insert_with(Vec::new);
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

/// One entry of a profile's `ignition:` list, as written.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FragmentDoc {
    /// A Butane config (`variant: flatcar`, version 1.0.0 or 1.1.0).
    pub butane: Option<Spanned<String>>,
    /// An Ignition config (spec 3.0.0 to 3.4.0).
    pub ignition: Option<Spanned<String>>,
}

/// Reads and translates one `ignition:` entry of the profile at `profile_path`; every file
/// read is added to `sources`.
pub(super) fn load(
    entry: &Spanned<FragmentDoc>,
    profile_path: &Path,
    confinement: &Confinement,
    sources: &mut Vec<SourceFile>,
) -> Result<Fragments, ProfileError> {
    let at = Origin::from_location(profile_path, entry.referenced);
    let folder = profile_path.parent().unwrap_or(Path::new("."));
    let (language, name) = match (&entry.value.butane, &entry.value.ignition) {
        (Some(path), None) => (Language::Butane, path),
        (None, Some(path)) => (Language::Ignition, path),
        _ => {
            return Err(ProfileError::invalid(
                at,
                "ignition: each entry is `butane: FILE` or `ignition: FILE` (a path from the profile's folder)",
            ));
        }
    };
    let path = folder.join(&name.value);
    let text = confinement
        .read(&path, MAX_FRAGMENT, "fragment")
        .map_err(|e| {
            ProfileError::invalid(
                Origin::from_location(profile_path, name.referenced),
                format!("ignition: {e}"),
            )
        })?;
    let text = String::from_utf8(text).map_err(|e| {
        ProfileError::invalid(
            Origin::file(&path),
            format!(
                "not UTF-8 text (byte {} is not part of a character)",
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    sources.push(source_file(&path, text.as_bytes()));
    translate_text(&text, language, &path, confinement, sources)
}

/// Translates the text of the fragment file at `path` (whose folder holds its local
/// files, which must also lie inside `confinement`); every local file read is added to
/// `sources`.
pub fn translate_text(
    text: &str,
    language: Language,
    path: &Path,
    confinement: &Confinement,
    sources: &mut Vec<SourceFile>,
) -> Result<Fragments, ProfileError> {
    let mut cx = translate::Cx {
        file: path.to_path_buf(),
        files_dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        confinement,
        language,
        butane: None,
        sources,
        out: Fragments::default(),
    };
    match language {
        Language::Butane => butane::translate(text, &mut cx)?,
        Language::Ignition => ignition::translate(text, &mut cx)?,
    }
    Ok(cx.out)
}

pub(super) fn source_file(path: &Path, bytes: &[u8]) -> SourceFile {
    SourceFile {
        path: PathBuf::from(path),
        sha256: crate::cache::hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes)),
    }
}

/// The language a fragment is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// Butane, `variant: flatcar`.
    Butane,
    Ignition,
}

/// The Ignition config a fragment file alone translates to (spec 3.3.0), as `butane` would
/// print it for a Butane file: for checking the translation against the Butane spec.
pub fn translate_file(path: &Path) -> Result<ign::Config, ProfileError> {
    let language = if path.extension().is_some_and(|e| e == "ign" || e == "json") {
        "ignition"
    } else {
        "butane"
    };
    let doc = format!("{language}: {:?}\n", path.file_name().unwrap_or_default());
    let entry: Spanned<FragmentDoc> = serde_saphyr::from_str(&doc)
        .map_err(|e| ProfileError::invalid(Origin::file(path), format!("fragment name: {e}")))?;
    let mut sources = Vec::new();
    let folder = path.parent().unwrap_or(Path::new("."));
    let confinement = Confinement::new(&[folder])?;
    let fragments = load(&entry, path, &confinement, &mut sources)?;
    Ok(crate::config::ignition::fragments_config(&fragments))
}
