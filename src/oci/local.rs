//! Image archives the user already has (`docker save`, `skopeo copy ... docker-archive:` or
//! `oci-archive:`): copied into the cache while hashed, then checked member by member. We never
//! unpack them, but a machine's `docker load` will, so paths that leave the archive are refused
//! here.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, Read};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::archive::Archive;
use crate::cache::{Cache, hex};
use crate::io::{At, PathError, Sha256Writer};
use crate::wording::JsonFault;

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("{}: SHA-256 is {actual}, not the expected {expected}", path.display())]
    Digest {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{}: member `{member}`: {why}", path.display())]
    Member {
        path: PathBuf,
        member: String,
        why: String,
    },
    #[error("{}: {why}", path.display())]
    Format { path: PathBuf, why: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArchiveFormat {
    DockerArchive,
    OciArchive,
}

#[derive(Debug, Clone)]
pub struct LocalImage {
    pub archive: Archive,
    pub format: ArchiveFormat,
    /// `sha256:...` of the image config: the image ID `docker load` gives it.
    pub config_digest: String,
    pub(crate) repo_tags: Vec<String>,
}

/// Small JSON members kept while scanning (manifests, indexes, configs are all small).
const JSON_LIMIT: u64 = 4 << 20;

pub fn import(
    path: &Path,
    expected: Option<&str>,
    cache: &Cache,
) -> Result<LocalImage, LocalError> {
    let io_error = |source| {
        LocalError::Io(PathError {
            path: path.to_path_buf(),
            source,
        })
    };
    let dir = cache.root().join("archives");
    std::fs::create_dir_all(&dir).at(&dir)?;
    let temp = crate::atomic::temp_path(&dir.join("import.tar"));
    let result = (|| {
        // Reads go straight into the reader's buffer (no zeroed MiB for every archive), and
        // each side's errors name its own file.
        // A regular file only (a FIFO or a device would never end), read to its length.
        let (file, len) = crate::input::open_regular(path).map_err(|e| match e {
            crate::input::InputError::Io { source, .. } => io_error(source),
            other => io_error(io::Error::other(other.reason())),
        })?;
        let mut source = io::BufReader::with_capacity(1 << 20, io::Read::take(file, len));
        let out = File::create(&temp).at(&temp)?;
        let mut out = Sha256Writer::new(out);
        loop {
            let chunk = source.fill_buf().at(path)?;
            let n = chunk.len();
            if n == 0 {
                break;
            }
            io::Write::write_all(&mut out, chunk).at(&temp)?;
            source.consume(n);
        }
        let (sha256, size) = out.finish();
        if let Some(expected) = expected {
            let expected = expected.trim_start_matches("sha256:").to_ascii_lowercase();
            if expected != sha256 {
                return Err(LocalError::Digest {
                    path: path.to_path_buf(),
                    expected,
                    actual: sha256,
                });
            }
        }
        let (format, config_digest, repo_tags) = inspect(path, &temp)?;
        let final_path = dir.join(format!("{sha256}.tar"));
        crate::atomic::commit(&temp, &final_path).at(&final_path)?;
        Ok(LocalImage {
            archive: Archive {
                path: final_path,
                sha256,
                size,
            },
            format,
            config_digest,
            repo_tags,
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Checks every member's path and link target, and reads what the archive says it is.
fn inspect(shown: &Path, copy: &Path) -> Result<(ArchiveFormat, String, Vec<String>), LocalError> {
    let member_error = |member: &str, why: &str| LocalError::Member {
        path: shown.to_path_buf(),
        member: member.to_string(),
        why: why.to_string(),
    };
    let format_error = |why: String| LocalError::Format {
        path: shown.to_path_buf(),
        why,
    };
    let io_error = |source: io::Error| LocalError::Format {
        path: shown.to_path_buf(),
        why: format!("not a readable tar: {source}"),
    };
    let file = File::open(copy).map_err(io_error)?;
    let mut archive = tar::Archive::new(file);
    let mut json: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut members = 0usize;
    for entry in archive.entries().map_err(io_error)? {
        let mut entry = entry.map_err(io_error)?;
        members += 1;
        let name = entry
            .path()
            .map_err(io_error)?
            .to_string_lossy()
            .into_owned();
        let normal = normalize(&name).ok_or_else(|| {
            member_error(
                &name,
                "absolute paths and `..` would write outside the folder it is loaded into",
            )
        })?;
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(io_error)?
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            // A link is resolved from its own folder (hard links from the archive's root).
            let base = if kind.is_symlink() {
                Path::new(&normal)
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default()
            } else {
                PathBuf::new()
            };
            if target.starts_with('/') || resolve_within(&base.join(&target)).is_none() {
                return Err(member_error(
                    &name,
                    &format!("links to `{target}`, outside the archive"),
                ));
            }
        } else if !(kind.is_file()
            || kind.is_dir()
            || kind.is_pax_global_extensions()
            || kind.is_pax_local_extensions()
            || kind.is_gnu_longname())
        {
            return Err(member_error(
                &name,
                "is a device, FIFO or other special file",
            ));
        }
        let small_json = kind.is_file() && entry.size() <= JSON_LIMIT;
        if small_json
            && (normal == "manifest.json"
                || normal == "index.json"
                || normal.starts_with("blobs/sha256/")
                || normal.ends_with(".json"))
        {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(io_error)?;
            json.insert(normal, bytes);
        }
    }
    if members == 0 {
        return Err(format_error("an empty tar is not an image archive".into()));
    }
    if let Some(bytes) = json.get("manifest.json") {
        #[derive(serde::Deserialize)]
        struct Entry {
            #[serde(rename = "Config")]
            config: String,
            #[serde(rename = "RepoTags", default)]
            repo_tags: Option<Vec<String>>,
        }
        let entries: Vec<Entry> = serde_json::from_slice(bytes)
            .map_err(|e| format_error(format!("manifest.json: {}", JsonFault::from(e))))?;
        let [entry] = entries.as_slice() else {
            return Err(format_error(format!(
                "manifest.json lists {} images; bake one image per archive",
                entries.len()
            )));
        };
        let config = json
            .get(entry.config.trim_start_matches("./"))
            .ok_or_else(|| {
                format_error(format!(
                    "manifest.json names config `{}`, which is not in the archive",
                    entry.config
                ))
            })?;
        return Ok((
            ArchiveFormat::DockerArchive,
            format!("sha256:{}", hex(&Sha256::digest(config))),
            entry.repo_tags.clone().unwrap_or_default(),
        ));
    }
    let index = json.get("index.json").ok_or_else(|| {
        format_error(
            "neither manifest.json (docker-archive) nor index.json (oci-archive) is in it".into(),
        )
    })?;
    let index: super::manifest::Index = serde_json::from_slice(index)
        .map_err(|e| format_error(format!("index.json: {}", JsonFault::from(e))))?;
    let [descriptor] = index.manifests.as_slice() else {
        return Err(format_error(format!(
            "index.json lists {} manifests; bake one image per archive",
            index.manifests.len()
        )));
    };
    let blob = |digest: &str| {
        super::reference::check_digest(digest).map_err(&format_error)?;
        json.get(&format!("blobs/sha256/{}", &digest[7..]))
            .ok_or_else(|| format_error(format!("blob {digest} is not in the archive")))
    };
    let manifest: super::manifest::ImageManifest =
        serde_json::from_slice(blob(&descriptor.digest)?).map_err(|e| {
            format_error(format!(
                "manifest {}: {}",
                descriptor.digest,
                JsonFault::from(e)
            ))
        })?;
    blob(&manifest.config.digest)?;
    Ok((
        ArchiveFormat::OciArchive,
        manifest.config.digest,
        Vec::new(),
    ))
}

/// Where a link target leads, `..` resolved; `None` if it climbs above the archive's root.
fn resolve_within(path: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// `a/./b/` → `a/b`; `None` for absolute paths or any `..`.
fn normalize(name: &str) -> Option<String> {
    let mut parts = Vec::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_may_climb_only_within_the_archive() {
        assert_eq!(
            resolve_within(Path::new("abc/../x.tar")).as_deref(),
            Some("x.tar")
        );
        assert_eq!(resolve_within(Path::new("abc/../../x")), None);
        assert_eq!(resolve_within(Path::new("/etc")), None);
        assert_eq!(normalize("./a/b"), Some("a/b".into()));
        assert_eq!(normalize("a/../b"), None);
    }

    fn archive_of(path: &Path, members: &[(&str, &[u8])]) {
        let mut tar = tar::Builder::new(File::create(path).unwrap());
        for (name, data) in members {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, *data).unwrap();
        }
        tar.into_inner().unwrap();
    }

    /// A docker-archive with a layer of several MiB, so that the copy takes many reads.
    fn docker_archive(path: &Path) {
        let layer: Vec<u8> = (0..3_000_123u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        archive_of(
            path,
            &[
                (
                    "manifest.json",
                    br#"[{"Config":"c.json","RepoTags":["kato/x:1"],"Layers":["l.tar"]}]"#,
                ),
                ("c.json", b"{}"),
                ("l.tar", &layer),
            ],
        );
    }

    /// A `manifest.json` or `index.json` of the wrong shape is told in JSON's words, at the
    /// line and column, never in serde's ("a sequence", "struct Entry").
    #[test]
    fn a_listing_of_the_wrong_shape_is_told_in_json_words() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("cache")).unwrap();
        let source = dir.path().join("x.tar");
        for (member, text, expected) in [
            (
                "manifest.json",
                r#"{"Config":"c.json"}"#,
                "manifest.json: line 1: expected an array, found an object",
            ),
            ("manifest.json", "[5]", "expected an object, found 5"),
            (
                "manifest.json",
                r#"[{"Config":7}]"#,
                "expected a string, found 7",
            ),
            (
                "manifest.json",
                r#"[{"Config":"c.json","RepoTags":"kato/x:1"}]"#,
                "expected an array, found \"kato/x:1\"",
            ),
            (
                "index.json",
                r#"{"manifests":{}}"#,
                "index.json: line 1, column 13: expected an array, found an object",
            ),
        ] {
            archive_of(&source, &[(member, text.as_bytes()), ("c.json", b"{}")]);
            let error = import(&source, None, &cache).unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
            let said = &error[error.find("x.tar").unwrap()..];
            for word in ["sequence", "struct", "map"] {
                assert!(!said.contains(word), "{text}: {error}");
            }
        }
    }

    #[test]
    fn an_import_keeps_the_archive_byte_for_byte_under_its_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("x.tar");
        docker_archive(&source);
        let bytes = std::fs::read(&source).unwrap();
        let sha256 = hex(&Sha256::digest(&bytes));
        let cache = Cache::open(&dir.path().join("cache")).unwrap();
        let image = import(&source, Some(&format!("sha256:{sha256}")), &cache).unwrap();
        assert_eq!(image.archive.sha256, sha256);
        assert_eq!(image.archive.size, bytes.len() as u64);
        assert_eq!(std::fs::read(&image.archive.path).unwrap(), bytes);
        assert_eq!(image.format, ArchiveFormat::DockerArchive);
        assert_eq!(image.repo_tags, ["kato/x:1"]);
        assert_eq!(
            image.config_digest,
            format!("sha256:{}", hex(&Sha256::digest(b"{}")))
        );

        // Another digest: refused, and nothing is left in the cache but the first.
        let wrong = "0".repeat(64);
        match import(&source, Some(&wrong), &cache) {
            Err(LocalError::Digest { actual, .. }) => assert_eq!(actual, sha256),
            other => panic!("{:?}", other.map(|i| i.archive.path)),
        }
        let left: Vec<_> = std::fs::read_dir(cache.root().join("archives"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [std::ffi::OsString::from(format!("{sha256}.tar"))]);
    }
}
