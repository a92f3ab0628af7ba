//! Baked container images: each of the role's images made into one verified tar (pulled and
//! archived into the cache, or imported from a local archive), then a KATO-DATA btrfs
//! partition holding the tars and an index, inserted before ROOT.

use std::path::PathBuf;

use super::BuildError;
use crate::cache::Cache;
use crate::disk::layout::{self, NewPartition};
use crate::disk::{Guid, Window, WorkingCopy};
use crate::fs::btrfs::{self, WriteError, WriteOptions};
use crate::fs::tree::{Contents, Entry, FileTree, Kind, Meta, Timespec};
use crate::oci::archive::{self, Archive};
use crate::oci::local::{self, ArchiveFormat};
use crate::oci::{PullOptions, Registry};
use crate::origin::Origin;
use crate::profile::{Board, DataSettings, ImageSource, Located, Profile};
use crate::progress::Progress;

pub const DATA_LABEL: &str = "KATO-DATA";
/// After Flatcar's slots (1-4, 6, 7, 9); 5 and 8 stay free as in Flatcar's own layout.
pub const DATA_SLOT: u32 = 10;
/// "Linux filesystem data".
const LINUX_DATA: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
/// Room for btrfs's own structures (superblocks, system and metadata chunks).
const FS_OVERHEAD: u64 = 16 << 20;

/// One image as baked, as the manifest and the on-disk index record it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BakedImage {
    /// Pinned: `registry/repository[:tag]@sha256:...`, or the archive's path.
    pub reference: String,
    pub source: &'static str,
    /// What the reference resolved to in the registry (the index digest for multi-platform
    /// images).
    #[serde(skip_serializing_if = "Option::is_none")]
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

pub fn architecture(board: Board) -> &'static str {
    match board {
        Board::Amd64 => "amd64",
        Board::Arm64 => "arm64",
    }
}

/// Refuses registry images named by tag alone (before anything is downloaded).
pub fn check_pinned(profile: &Profile) -> Result<(), BuildError> {
    for image in &profile.images {
        if let ImageSource::Registry(reference) = &image.value
            && reference.digest.is_none()
        {
            return Err(BuildError::Image {
                origin: image.origin.clone(),
                message: format!(
                    "images: `{reference}` is not pinned by digest; pin it (`{reference}@sha256:...`) or build with --allow-unpinned, which records the digest it resolves to"
                ),
            });
        }
    }
    Ok(())
}

/// Makes every image of `profile` ready: pinned, pulled, verified, archived.
pub fn prepare(
    profile: &Profile,
    options: &PullOptions,
    progress: &dyn Progress,
) -> Result<Vec<BakedImage>, BuildError> {
    let mut baked = Vec::new();
    let mut registry = None;
    for (n, image) in profile.images.iter().enumerate() {
        let at = |message: String| BuildError::Image {
            origin: image.origin.clone(),
            message,
        };
        let made = match &image.value {
            ImageSource::Registry(reference) => {
                if registry.is_none() {
                    registry = Some(Registry::new(options).map_err(|e| at(e.to_string()))?);
                }
                let registry = registry.as_ref().expect("made above");
                let pulled = registry
                    .pull(reference, architecture(profile.release.board), progress)
                    .map_err(|e| at(e.to_string()))?;
                let archive =
                    cached_archive(&options.cache, &pulled).map_err(|e| at(e.to_string()))?;
                let pinned = reference.pinned(&pulled.digest);
                if reference.digest.is_none() {
                    progress.note(&format!("{reference} resolved to {}", pulled.digest));
                }
                BakedImage {
                    file: file_name(n, &reference.familiar_name(), reference.tag.as_deref()),
                    reference: pinned.to_string(),
                    source: "registry",
                    digest: Some(pulled.digest.clone()),
                    config_digest: pulled.manifest.config.digest.clone(),
                    sha256: archive.sha256,
                    size: archive.size,
                    path: archive.path,
                }
            }
            ImageSource::Archive { path, sha256 } => {
                progress.note(&format!("checking image archive {}", path.display()));
                let local = local::import(path, sha256.as_deref(), &options.cache)
                    .map_err(|e| at(e.to_string()))?;
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
                        ArchiveFormat::DockerArchive => "docker-archive",
                        ArchiveFormat::OciArchive => "oci-archive",
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
fn cached_archive(cache: &Cache, pulled: &crate::oci::PulledImage) -> std::io::Result<Archive> {
    let dir = cache.root().join("archives");
    std::fs::create_dir_all(&dir)?;
    let key = archive::cache_key(pulled);
    let path = dir.join(format!("{key}.tar"));
    let record_path = dir.join(format!("{key}.json"));
    if let Some(record) = std::fs::read(&record_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Archive>(&b).ok())
        && record.path == path
        && std::fs::metadata(&path).is_ok_and(|m| m.len() == record.size)
    {
        return Ok(record);
    }
    let record = archive::write_file(pulled, &path)?;
    crate::fsutil::write_atomic(
        &record_path,
        &serde_json::to_vec(&record).expect("serialises"),
    )?;
    Ok(record)
}

/// What KATO-DATA holds: the tars, `index.json` for tools, `index.tsv` for the preload
/// script (`sha256 TAB image-id TAB file TAB reference`).
pub fn data_tree(images: &[BakedImage], time: Timespec) -> FileTree {
    let dir = Meta::new(0o755, time);
    let mut tree = FileTree::new(dir.clone());
    let mut tsv = String::from("# Written by kato-image: sha256, image ID, file, reference\n");
    for image in images {
        tree.insert(
            &image.file,
            Entry {
                meta: Meta::new(0o644, time),
                kind: Kind::File(Contents::Host {
                    path: image.path.clone(),
                    len: image.size,
                }),
            },
            &dir,
        )
        .expect("image file names are plain relative paths");
        tsv.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            image.sha256, image.config_digest, image.file, image.reference
        ));
    }
    let mut json = serde_json::to_vec_pretty(images).expect("serialises");
    json.push(b'\n');
    for (name, bytes) in [("index.json", json), ("index.tsv", tsv.into_bytes())] {
        tree.insert(name, Entry::file(Meta::new(0o644, time), bytes), &dir)
            .expect("plain names");
    }
    tree
}

/// The partition size: fixed by the profile, or the images plus headroom (default: a tenth
/// of the images, at least 64 MiB).
fn data_size(
    images: &[BakedImage],
    settings: &DataSettings,
    role: &str,
) -> Result<u64, BuildError> {
    let content: u64 = images.iter().map(|i| i.size).sum::<u64>() + FS_OVERHEAD;
    match &settings.size {
        Some(Located { value, origin }) => {
            if content > *value {
                return Err(too_small(role, origin, content, *value));
            }
            Ok(*value)
        }
        None => {
            let headroom = settings
                .headroom
                .as_ref()
                .map_or_else(|| (content / 10).max(64 << 20), |h| h.value);
            Ok(content + headroom)
        }
    }
}

fn too_small(role: &str, origin: &Origin, needed: u64, size: u64) -> BuildError {
    BuildError::Image {
        origin: origin.clone(),
        message: format!(
            "role {role}: the images need {needed} bytes of KATO-DATA but data.size allows {size}; raise data.size or bake fewer images"
        ),
    }
}

/// Inserts KATO-DATA before ROOT in `copy` and writes the images' filesystem into it.
pub fn add_data_partition(
    copy: &mut WorkingCopy,
    images: &[BakedImage],
    settings: &DataSettings,
    role: &str,
    seed: &str,
    time: Timespec,
) -> Result<(), BuildError> {
    let size = data_size(images, settings, role)?;
    let derived = |purpose: &str| crate::disk::guid::derive(seed.as_bytes(), purpose);
    let new = NewPartition {
        slot: DATA_SLOT,
        name: DATA_LABEL.into(),
        type_guid: LINUX_DATA.parse::<Guid>().expect("a valid GUID"),
        unique_guid: Guid(derived("partition")),
        size,
    };
    let added =
        layout::insert_before_root(&mut copy.file, &mut copy.table, &new).map_err(|source| {
            BuildError::Layout {
                role: role.into(),
                source,
            }
        })?;
    let options = WriteOptions {
        size: added.len(),
        label: DATA_LABEL.into(),
        fsid: derived("filesystem"),
        time,
    };
    let mut window = Window::new(&copy.file, added.start(), added.len());
    btrfs::write(&data_tree(images, time), &options, &mut window).map_err(|e| match e {
        WriteError::TooSmall { needed, size } => match &settings.size {
            Some(fixed) => too_small(role, &fixed.origin, needed, size),
            None => BuildError::Edit {
                role: role.into(),
                source: btrfs::EditError::Write(WriteError::TooSmall { needed, size }),
            },
        },
        e => BuildError::Edit {
            role: role.into(),
            source: btrfs::EditError::Write(e),
        },
    })?;
    Ok(())
}
