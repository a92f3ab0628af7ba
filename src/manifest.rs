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
use sha2::{Digest, Sha256};

use crate::cache::{ArtifactRecord, hex};
use crate::emit::ami::AmiRecord;
use crate::emit::ipxe::IpxeRecord;
use crate::gather::Gathered;
use crate::oci::BakedImage;
use crate::plan::PlannedRole;
use crate::platform::{Container, Platform};
use crate::release::ReleaseInfo;

/// The largest manifest read (one role's is a few KiB).
pub const MAX_MANIFEST: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{source}")]
    Read {
        path: PathBuf,
        source: crate::input::InputError,
    },
    #[error("{}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
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

/// One disk image a build wrote.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DiskRecord {
    /// Its name in the output folder.
    pub file: String,
    /// The vendor file it was made from.
    pub from: String,
    pub size: u64,
    /// BLAKE3 of the whole file (`b3sum FILE`).
    pub blake3: String,
    pub partitions: Vec<PartitionRecord>,
    pub changed_partitions: Vec<String>,
    /// The AMI this image was published as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ami: Option<AmiRecord>,
    /// For a platform disk: the platform, its OEM and the disk inside the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformRecord>,
}

/// What makes a disk a platform's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlatformRecord {
    pub name: Platform,
    pub format: Container,
    /// GRUB's `oem_id`, the kernel's `flatcar.oem.id`.
    pub oem_id: String,
    /// The disk the container holds: its size and the BLAKE3 of its bytes (what
    /// `qemu-img convert -O raw` of the file gives; the partitions above are its).
    pub disk_size: u64,
    pub disk_blake3: String,
    pub oem: OemRecord,
}

/// The OEM sysext installed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OemRecord {
    /// The release file (`oem-gce.raw`), its SHA-512, size and signature.
    #[serde(flatten)]
    pub artifact: ArtifactRecord,
    /// Where it is in the OEM filesystem.
    pub installed_as: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionRecord {
    pub slot: u32,
    pub name: String,
    /// The vendor image's (absent for a partition the build added).
    pub blake3_before: Option<String>,
    pub blake3_after: String,
    pub changed: bool,
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
    pub fn read_bytes(path: &Path) -> Result<(Manifest, Vec<u8>), ManifestError> {
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

    /// Writes the manifest to `path`, replacing it whole.
    pub fn write(&self, path: &Path) -> Result<(), ManifestError> {
        crate::fsutil::write_atomic(path, &self.to_bytes()).map_err(|source| ManifestError::Write {
            path: path.to_path_buf(),
            source,
        })
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

    /// The vendor file a disk was made from.
    pub fn vendor_file(&self, file: &str) -> Option<&ArtifactRecord> {
        self.vendor.iter().find(|a| a.file == file)
    }
}

/// What a role's outputs are named and stamped with, known before any of them is written:
/// the time its files get, its build ID, and the vendor files it uses.
#[derive(Debug, Clone)]
pub struct RoleFacts {
    pub timestamp: i64,
    pub build_id: String,
    pub vendor: Vec<ArtifactRecord>,
}

impl RoleFacts {
    /// The time is `SOURCE_DATE_EPOCH`, else the first vendor file's signature time. The
    /// build ID is derived from everything that decides the outputs' bytes and how they are
    /// published: same ID, same build.
    pub fn new(role: &PlannedRole, gathered: &Gathered, source_date_epoch: Option<i64>) -> Self {
        let mut vendor: Vec<ArtifactRecord> = role
            .disks
            .iter()
            .map(|&kind| gathered.image(&role.release, kind).artifact.record.clone())
            .collect();
        // Platform disks share the generic image; their OEM sysexts are vendor files too.
        let mut seen = std::collections::BTreeSet::new();
        vendor.retain(|a| seen.insert((a.file.clone(), a.sha512.clone())));
        for platform in role.disks.iter().filter_map(|d| d.platform()) {
            vendor.push(gathered.oem(&role.release, platform).record.clone());
        }
        if role.ipxe.is_some() {
            let pxe = gathered.pxe(&role.release);
            vendor.push(pxe.kernel.record.clone());
            vendor.push(pxe.initramfs.record.clone());
        }
        let signed = vendor
            .iter()
            .find_map(|a| a.signature.as_ref())
            .map(|s| s.created as i64);
        let timestamp = source_date_epoch.or(signed).unwrap_or(0);
        let inputs = serde_json::json!({
            "tool": env!("CARGO_PKG_VERSION"),
            "role": role.name(),
            "vendor": vendor.iter().map(|a| &a.sha512).collect::<Vec<_>>(),
            "profiles": role.profile.sources.iter().map(|s| &s.sha256).collect::<Vec<_>>(),
            "config": hex(&Sha256::digest(&role.config)),
            "kernel_args": role.plan.kernel_args,
            "timestamp": timestamp,
            "images": gathered.baked(role.name()).iter().map(|i| &i.sha256).collect::<Vec<_>>(),
            "disks": role.disks,
            "ipxe": role.ipxe.as_ref().map(|i| serde_json::json!({
                "preset": i.preset, "console": i.console, "base_url": i.base_url,
                "autologin": i.autologin, "unknown": i.unknown,
            })),
            "ami": role.ami.as_ref().map(|a| serde_json::json!({
                "regions": a.regions, "boot_mode": a.boot_mode, "imds_v2": a.imds_v2,
                "tpm": a.tpm, "public": a.public, "volume_type": a.volume_type,
                "volume_size_gib": a.volume_size_gib, "iops": a.iops, "throughput": a.throughput,
            })),
        });
        RoleFacts {
            timestamp,
            build_id: hex(&Sha256::digest(inputs.to_string().as_bytes()))[..32].to_string(),
            vendor,
        }
    }
}

impl Manifest {
    /// The manifest of a role whose outputs are all written.
    pub fn assemble(
        role: &PlannedRole,
        gathered: &Gathered,
        facts: &RoleFacts,
        profiles_dir: &Path,
        disks: Vec<DiskRecord>,
        ipxe: Option<IpxeRecord>,
    ) -> Manifest {
        Manifest {
            tool: Tool::this(),
            build_id: facts.build_id.clone(),
            role: role.name().to_string(),
            release: gathered.release(&role.release).clone(),
            vendor: facts.vendor.clone(),
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
                format: role.config_format.name().into(),
                spec: crate::config::ignition::SPEC_VERSION.into(),
                path: crate::emit::oem::CONFIG_PATH.into(),
                sha256: hex(&Sha256::digest(&role.config)),
            },
            kernel_args: role.plan.kernel_args.clone(),
            timestamp: facts.timestamp,
            images: gathered.baked(role.name()).to_vec(),
            disks,
            ipxe,
        }
    }
}
