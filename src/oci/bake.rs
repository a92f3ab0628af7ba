//! A role's container images made ready to bake: each pulled (pinned, verified, cached) or
//! imported from a local archive, and turned into one tar a machine can `docker load`.

use std::path::PathBuf;

use super::archive::{self, Archive};
use super::local::{self, ArchiveFormat};
use super::{PullOptions, PulledImage, Registry, RegistryError};
use crate::cache::Cache;
use crate::origin::Origin;
use crate::profile::{ImageSource, Located};
use crate::progress::Progress;
use crate::release::Board;

/// One image as baked, as the manifest and the on-disk index record it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BakedImage {
    /// Pinned: `registry/repository[:tag]@sha256:...`, or the archive's path.
    pub reference: String,
    pub source: ImageOrigin,
    /// What the reference resolved to in the registry (the index digest for multi-platform
    /// images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The image ID `docker load` gives it.
    pub config_digest: String,
    /// Path on KATO-DATA.
    pub file: String,
    pub sha256: String,
    pub size: u64,
    #[serde(skip)]
    pub path: PathBuf,
}

/// Where a baked image came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageOrigin {
    Registry,
    DockerArchive,
    OciArchive,
}

/// Why an image could not be made ready, at the profile line that names it.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {kind}")]
pub struct BakeError {
    pub origin: Origin,
    pub kind: Box<BakeErrorKind>,
}

#[derive(Debug, thiserror::Error)]
pub enum BakeErrorKind {
    #[error("{0}")]
    Registry(#[from] RegistryError),
    #[error("{0}")]
    Archive(#[from] local::LocalError),
    #[error("archiving the image in the cache: {0}")]
    Cache(std::io::Error),
}

/// Makes every image ready: pulled for `board`, verified, archived.
pub fn prepare(
    images: &[Located<ImageSource>],
    board: Board,
    options: &PullOptions,
    progress: &dyn Progress,
) -> Result<Vec<BakedImage>, BakeError> {
    let mut baked = Vec::new();
    let mut registry = None;
    for (n, image) in images.iter().enumerate() {
        let at = |kind: BakeErrorKind| BakeError {
            origin: image.origin.clone(),
            kind: Box::new(kind),
        };
        let made = match &image.value {
            ImageSource::Registry(reference) => {
                if registry.is_none() {
                    registry = Some(Registry::new(options).map_err(|e| at(e.into()))?);
                }
                let registry = registry.as_ref().expect("made above");
                let pulled = registry
                    .pull(reference, board.oci_architecture(), progress)
                    .map_err(|e| at(e.into()))?;
                let archive = cached_archive(&options.net.cache, &pulled)
                    .map_err(|e| at(BakeErrorKind::Cache(e)))?;
                if reference.digest.is_none() {
                    progress.note(&format!("{reference} resolved to {}", pulled.digest));
                }
                BakedImage {
                    file: file_name(n, &reference.familiar_name(), reference.tag.as_deref()),
                    reference: reference.pinned(&pulled.digest).to_string(),
                    source: ImageOrigin::Registry,
                    digest: Some(pulled.digest.clone()),
                    config_digest: pulled.manifest.config.digest.clone(),
                    sha256: archive.sha256,
                    size: archive.size,
                    path: archive.path,
                }
            }
            ImageSource::Archive { path, sha256 } => {
                progress.note(&format!("checking image archive {}", path.display()));
                let local = local::import(path, sha256.as_deref(), &options.net.cache)
                    .map_err(|e| at(e.into()))?;
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "image".into());
                BakedImage {
                    file: file_name(n, &stem, None),
                    reference: local
                        .repo_tags
                        .first()
                        .cloned()
                        .unwrap_or_else(|| path.display().to_string()),
                    source: match local.format {
                        ArchiveFormat::DockerArchive => ImageOrigin::DockerArchive,
                        ArchiveFormat::OciArchive => ImageOrigin::OciArchive,
                    },
                    digest: None,
                    config_digest: local.config_digest,
                    sha256: local.archive.sha256,
                    size: local.archive.size,
                    path: local.archive.path,
                }
            }
        };
        baked.push(made);
    }
    Ok(baked)
}

/// `images/01-zookeeper-3.9.tar`: ordered as in the profile, readable by people.
fn file_name(n: usize, name: &str, tag: Option<&str>) -> String {
    let mut stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if let Some(tag) = tag {
        stem.push('-');
        stem.push_str(tag);
    }
    format!("images/{:02}-{stem}.tar", n + 1)
}

/// The archive for a pulled image, made once and kept in the cache.
fn cached_archive(cache: &Cache, pulled: &PulledImage) -> std::io::Result<Archive> {
    let (path, record_path) = cache.archive_paths(&archive::cache_key(pulled));
    if let Some(record) = std::fs::read(&record_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Archive>(&b).ok())
        && record.path == path
        && std::fs::metadata(&path).is_ok_and(|m| m.len() == record.size)
    {
        return Ok(record);
    }
    let record = archive::write_file(pulled, &path)?;
    crate::atomic::write_atomic(
        &record_path,
        &serde_json::to_vec(&record).expect("serialises"),
    )?;
    Ok(record)
}
