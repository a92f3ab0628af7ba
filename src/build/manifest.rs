//! The build manifest, one per role, written once when the role is complete: what went in
//! (the vendor files and who signed them, the profile files, the rendered config, the images)
//! and what came out (each disk image with its digest and its partitions' digests before and
//! after, the iPXE payload, the AMI). Field order is fixed and nothing in it depends on when
//! or where the build ran, so the same inputs give the same bytes.
//!
//! Digests of disk images and partitions are BLAKE3 (`b3sum` prints the same); the config,
//! profile files and container images are SHA-256; vendor files SHA-512, as Flatcar signs
//! them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::facts::RoleFacts;
use super::gather::RoleInputs;
use super::plan::PlannedRole;
use crate::cache::ArtifactRecord;
use crate::emit::ipxe::IpxeRecord;
use crate::emit::raw::DiskRecord;
use crate::io::{At, PathError};
use crate::oci::BakedImage;
use crate::platform::Platform;
use crate::release::ReleaseInfo;

/// The largest manifest read (one role's is a few KiB).
pub(crate) const MAX_MANIFEST: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{source}")]
    Read {
        path: PathBuf,
        source: crate::input::InputError,
    },
    #[error(transparent)]
    Write(#[from] PathError),
    #[error("{}: not a kato-image build manifest: {why}", path.display())]
    Invalid { path: PathBuf, why: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub tool: Tool,
    /// Derived from every input and output setting: the same build always has the same ID.
    pub build_id: String,
    pub role: String,
    /// The Flatcar release the vendor files come from.
    pub release: ReleaseInfo,
    /// Every vendor file the outputs were made from, as fetched and verified.
    pub vendor: Vec<ArtifactRecord>,
    pub profiles: Vec<FileDigest>,
    /// The unit files taken from the units folder, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<FileDigest>,
    pub config: ConfigRecord,
    pub kernel_args: Vec<String>,
    /// Seconds since the epoch used for files the build writes (SOURCE_DATE_EPOCH, else the
    /// vendor signature's time).
    pub timestamp: i64,
    /// Container images baked into KATO-DATA.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<BakedImage>,
    /// The disk images made (a raw image; the image an AMI was uploaded from).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<DiskRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipxe: Option<IpxeRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

impl Tool {
    pub fn this() -> Tool {
        Tool {
            name: "kato-image".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileDigest {
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConfigRecord {
    pub format: String,
    pub spec: String,
    /// Where in the OEM filesystem it was written.
    pub path: String,
    pub sha256: String,
}

impl Manifest {
    /// `OUT/<role>.manifest.json`.
    pub fn path(out_dir: &Path, role: &str) -> PathBuf {
        out_dir.join(format!("{role}.manifest.json"))
    }

    /// The manifest beside a disk image: `OUT/<role>.manifest.json` for `OUT/<role>.raw` and
    /// `OUT/<role>-ami.raw`.
    pub fn beside(image: &Path) -> PathBuf {
        let name = Manifest::image_name(image);
        let platform_stem = Platform::ALL
            .iter()
            .find_map(|p| name.strip_suffix(&format!("-{p}.{}", p.container().extension())));
        let stem = platform_stem
            .or_else(|| name.strip_suffix("-ami.raw"))
            .or_else(|| name.strip_suffix(".raw"))
            .unwrap_or(&name);
        image.with_file_name(format!("{stem}.manifest.json"))
    }

    /// Reads a manifest a build wrote.
    pub fn read(path: &Path) -> Result<Manifest, ManifestError> {
        Ok(Self::read_bytes(path)?.0)
    }

    /// The manifest at `path` and the bytes it was read from.
    pub(crate) fn read_bytes(path: &Path) -> Result<(Manifest, Vec<u8>), ManifestError> {
        let bytes =
            crate::input::read_regular(path, MAX_MANIFEST, "build manifest").map_err(|source| {
                ManifestError::Read {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        let manifest = serde_json::from_slice(&bytes).map_err(|e| ManifestError::Invalid {
            path: path.to_path_buf(),
            why: crate::wording::JsonFault::from(e).to_string(),
        })?;
        Ok((manifest, bytes))
    }

    /// The manifest as pretty JSON with a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut json = serde_json::to_vec_pretty(self).expect("manifests serialise");
        json.push(b'\n');
        json
    }

    /// Writes the manifest to `path`, replacing it whole; returns the bytes written, which
    /// are what its signature and provenance are made over.
    pub fn write(&self, path: &Path) -> Result<Vec<u8>, ManifestError> {
        let bytes = self.to_bytes();
        crate::atomic::write_atomic(path, &bytes).at(path)?;
        Ok(bytes)
    }

    /// The record of the disk image named `file`.
    /// The name a manifest records an image by: its file name in the output folder.
    pub fn image_name(image: &Path) -> String {
        image
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub fn disk(&self, file: &str) -> Option<&DiskRecord> {
        self.disks.iter().find(|d| d.file == file)
    }
}

impl Manifest {
    /// The manifest of a role whose outputs are all written.
    pub(crate) fn assemble(
        role: &PlannedRole,
        inputs: &RoleInputs,
        facts: &RoleFacts,
        profiles_dir: &Path,
        disks: Vec<DiskRecord>,
        ipxe: Option<IpxeRecord>,
    ) -> Manifest {
        Manifest {
            tool: Tool::this(),
            build_id: facts.build_id.clone(),
            role: role.name().to_string(),
            release: inputs.release.clone(),
            vendor: inputs.vendor.clone(),
            profiles: role
                .profile
                .sources
                .iter()
                .map(|s| FileDigest {
                    path: s
                        .path
                        .strip_prefix(profiles_dir)
                        .unwrap_or(&s.path)
                        .display()
                        .to_string(),
                    sha256: s.sha256.clone(),
                })
                .collect(),
            units: role
                .plan
                .unit_sources
                .iter()
                .map(|s| FileDigest {
                    path: s.path.display().to_string(),
                    sha256: s.sha256.clone(),
                })
                .collect(),
            config: ConfigRecord {
                format: role.config.format.name().into(),
                spec: crate::config::ignition::SPEC_VERSION.into(),
                path: crate::emit::oem::CONFIG_PATH.into(),
                sha256: role.config.sha256.clone(),
            },
            kernel_args: role.plan.kernel_args.clone(),
            timestamp: facts.timestamp,
            images: inputs.images.to_vec(),
            disks,
            ipxe,
        }
    }
}
