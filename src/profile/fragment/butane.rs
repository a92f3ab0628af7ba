//! Butane `variant: flatcar`, versions 1.0.0 (which Butane translates to Ignition 3.3.0)
//! and 1.1.0 (to 3.4.0; it adds `contents_local` for units and drop-ins and
//! `ssh_authorized_keys_local` for users). kato-image renders 3.3.0: what a 1.1.0 fragment
//! could only say in 3.4.0 (setuid, setgid and sticky modes) is refused where it is written.

use std::path::Path;

use super::doc;
use super::translate;
use crate::origin::printable;

doc::sections!("snake_case");
translate::conversions!();

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V1_0,
    V1_1,
}

/// Enough of a Butane file to know which language and version the rest is in.
#[derive(Deserialize)]
struct Header {
    variant: Option<Spanned<String>>,
    version: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigDoc {
    #[allow(dead_code)]
    variant: Spanned<String>,
    #[allow(dead_code)]
    version: Spanned<String>,
    ignition: Option<IgnitionDoc>,
    storage: Option<StorageDoc>,
    systemd: Option<SystemdDoc>,
    passwd: Option<PasswdDoc>,
    kernel_arguments: Option<KernelArgumentsDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IgnitionDoc {
    config: Refused,
    timeouts: Refused,
    security: Refused,
    proxy: Refused,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResourceDoc {
    inline: Option<String>,
    local: Option<Spanned<String>>,
    source: Option<Spanned<String>>,
    compression: Option<Spanned<String>>,
    verification: Option<VerificationDoc>,
    http_headers: Refused,
}

/// The most entries one tree may hold; a larger folder is refused before it is read.
const MAX_TREE_ENTRIES: usize = 10_000;

pub(super) fn translate(text: &str, cx: &mut Cx) -> Result<(), ProfileError> {
    let mut options = serde_saphyr::Options::default();
    // Butane reads YAML as go-yaml does: `mode: 0644` is octal, as every Butane example
    // writes it.
    options.legacy_octal_numbers = true;
    let parse_error = |e: serde_saphyr::Error| crate::profile::load::parse_error(&cx.file, &e);
    let text = &*crate::profile::load::final_block_as_written(text);
    let header: Header =
        serde_saphyr::from_str_with_options(text, options.clone()).map_err(parse_error)?;
    let at = |l: Option<&Spanned<String>>| l.map_or(Location::UNKNOWN, |s| s.referenced);
    match header.variant.as_ref().map(|v| v.value.as_str()) {
        Some("flatcar") => {}
        other => {
            return Err(cx.error(
                at(header.variant.as_ref()),
                format!(
                    "variant: {} is not a Butane variant kato-image translates (it takes `variant: flatcar`)",
                    other.map_or("missing".into(), crate::origin::quoted)
                ),
            ));
        }
    }
    cx.butane = Some(match header.version.as_ref().map(|v| v.value.as_str()) {
        Some("1.0.0") => Version::V1_0,
        Some("1.1.0") => Version::V1_1,
        other => {
            return Err(cx.error(
                at(header.version.as_ref()),
                format!(
                    "version: {} is not a Butane flatcar version kato-image translates (1.0.0 or 1.1.0)",
                    other.map_or("missing".into(), crate::origin::quoted)
                ),
            ));
        }
    });
    let config: ConfigDoc =
        serde_saphyr::from_str_with_options(text, options).map_err(parse_error)?;
    if let Some(i) = &config.ignition {
        cx.refuse_ignition_section([&i.config, &i.timeouts, &i.security, &i.proxy])?;
    }
    if let Some(storage) = &config.storage {
        storage.add(cx)?;
        for tree in storage.trees.iter().flatten() {
            add_tree(cx, tree)?;
        }
        // A link entry no tree gave a target to has none (Butane's own check of its output).
        if let Some(node) = cx.out.nodes.iter().find(
            |n| matches!(&n.value, Node::Link(l) if l.target.as_deref().is_none_or(str::is_empty)),
        ) {
            return Err(ProfileError::invalid(
                node.origin.clone(),
                format!(
                    "storage.links: `{}` has no `target`, and no tree has a link at that path",
                    printable(node.value.path())
                ),
            ));
        }
    }
    if let Some(systemd) = &config.systemd {
        systemd.add(cx)?;
    }
    if let Some(passwd) = &config.passwd {
        passwd.add(cx)?;
    }
    if let Some(args) = &config.kernel_arguments {
        args.add(cx, "kernel_arguments")?;
    }
    Ok(())
}

impl ResourceDoc {
    fn to_ign(
        &self,
        cx: &mut Cx,
        location: Location,
    ) -> Result<Option<ign::Resource>, ProfileError> {
        let hash = resource_hash(cx, &self.http_headers, &self.verification)?;
        let bytes = match (&self.inline, &self.local, &self.source) {
            (None, None, None) => return Ok(None),
            (None, None, Some(source)) => {
                return cx
                    .data_source(source, self.compression.as_ref(), hash)
                    .map(Some);
            }
            (Some(text), None, None) => text.clone().into_bytes(),
            (None, Some(name), None) => cx.read_local("local", name)?,
            _ => {
                return Err(cx.error(
                    location,
                    "contents: give one of `inline`, `local` and `source`",
                ));
            }
        };
        if let Some(compression) = &self.compression {
            return Err(cx.error(
                compression.referenced,
                "contents: `compression` goes with a `source:` data URL of compressed bytes; kato-image encodes inline and local contents itself",
            ));
        }
        cx.verify(location, hash, &bytes)?;
        let mut resource = translate::inline_resource(&bytes);
        resource.verification = hash.map(|h| ign::Verification {
            hash: Some(h.to_string()),
        });
        Ok(Some(resource))
    }
}

/// A local folder's files and symbolic links under `path` (`/` by default), as Butane
/// copies them: a file keeps the mode a `storage.files` entry without contents gives it,
/// else 0755 when anyone may execute it and 0644 otherwise; any other entry at one of
/// its paths is an error; folders themselves are not entries.
fn add_tree(cx: &mut Cx, tree: &Spanned<TreeDoc>) -> Result<(), ProfileError> {
    let root = cx.local_path("local", &tree.value.local, tree.referenced)?;
    // The folder itself may be a link, but not to outside (what is under it is read as it
    // is: links stay links, and are never followed).
    cx.confinement
        .resolve(&root)
        .map_err(|e| cx.error(tree.referenced, format!("storage.trees: {e}")))?;
    if !root.is_dir() {
        return Err(cx.error(
            tree.referenced,
            format!("storage.trees: {} is not a folder", root.display()),
        ));
    }
    let dest = tree.value.path.clone().unwrap_or_else(|| "/".into());
    if !dest.starts_with('/') {
        return Err(cx.error(
            tree.referenced,
            format!(
                "storage.trees: path {} must be absolute",
                crate::origin::quoted(&dest)
            ),
        ));
    }
    let mut entries = Vec::new();
    walk(&root, Path::new(""), &mut entries)
        .map_err(|why| cx.error(tree.referenced, format!("storage.trees: {why}")))?;
    for (relative, kind) in entries {
        let path = format!(
            "{}/{}",
            dest.trim_end_matches('/'),
            relative.to_string_lossy()
        );
        let full = root.join(&relative);
        let node_exists = || {
            format!(
                "storage.trees: {} from {} is also given as a storage entry",
                printable(&path),
                full.display()
            )
        };
        match kind {
            Kind::File { executable } => {
                let bytes = cx.read_file("local", &full, tree.referenced)?;
                let mode = if executable { 0o755 } else { 0o644 };
                match cx.out.nodes.iter_mut().find(|n| n.value.path() == path) {
                    Some(node) => match &mut node.value {
                        Node::File(file) if file.contents.is_none() => {
                            file.contents = Some(translate::inline_resource(&bytes));
                            file.mode.get_or_insert(mode);
                        }
                        _ => return Err(cx.error(tree.referenced, node_exists())),
                    },
                    None => {
                        let mut file = ign::File::new(path);
                        file.mode = Some(mode);
                        file.contents = Some(translate::inline_resource(&bytes));
                        cx.add_node(tree.referenced, Node::File(file))?;
                    }
                }
            }
            Kind::Link(target) => match cx.out.nodes.iter_mut().find(|n| n.value.path() == path) {
                // An entry that only gives the link's owner: the tree gives its target.
                Some(node) => match &mut node.value {
                    Node::Link(link) if link.target.as_deref().is_none_or(str::is_empty) => {
                        link.target = Some(target);
                    }
                    _ => return Err(cx.error(tree.referenced, node_exists())),
                },
                None => {
                    let mut link = ign::Link::new(path);
                    link.target = Some(target);
                    cx.add_node(tree.referenced, Node::Link(link))?;
                }
            },
        }
    }
    Ok(())
}

enum Kind {
    File { executable: bool },
    Link(String),
}

/// Every file and link under `root/relative`, sorted by path so that the config does not
/// depend on the order the folder lists them in.
fn walk(
    root: &Path,
    relative: &Path,
    out: &mut Vec<(std::path::PathBuf, Kind)>,
) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let dir = root.join(relative);
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", dir.display());
    let mut names = std::fs::read_dir(&dir)
        .map_err(cannot)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(cannot)?;
    names.sort();
    for name in names {
        if out.len() >= MAX_TREE_ENTRIES {
            return Err(format!(
                "{} holds more than {MAX_TREE_ENTRIES} files and links",
                root.display()
            ));
        }
        let relative = relative.join(&name);
        let full = root.join(&relative);
        let meta = std::fs::symlink_metadata(&full).map_err(cannot)?;
        let kind = meta.file_type();
        if kind.is_dir() {
            walk(root, &relative, out)?;
        } else if kind.is_file() {
            let executable = meta.permissions().mode() & 0o111 != 0;
            out.push((relative, Kind::File { executable }));
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&full).map_err(cannot)?;
            out.push((relative, Kind::Link(target.to_string_lossy().into_owned())));
        } else {
            return Err(format!(
                "{} is neither a file, a folder nor a symbolic link",
                full.display()
            ));
        }
    }
    Ok(())
}
