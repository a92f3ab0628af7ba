//! A role's disk image: a copy of the cached vendor image whose OEM btrfs is rewritten with
//! the role's config and kernel arguments, with KATO-DATA added when the role bakes images.
//! Every other byte stays the vendor's, and the digests prove it: partitions and leaves the
//! build did not write keep the vendor image's values, so the cost follows what was written.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::data::{self, DataError};
use super::oem::{self, OemError, PlatformOem};
use super::package::{self, PackageError};
use crate::cache::hex;
use crate::disk::{self, DiskError, ImageDigests, Window, WorkingCopy, ZeroLeaves};
use crate::fs::btrfs::{self, EditError, ReadError, WriteError};
use crate::fs::tree::Timespec;
use crate::fs::{self as filesystems, FsKind};
use crate::manifest::{DiskRecord, PartitionRecord, PlatformRecord};
use crate::oci::BakedImage;
use crate::profile::DataSettings;

#[derive(Debug, thiserror::Error)]
pub enum RawError {
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error(
        "{file}: the OEM partition holds {found}, not btrfs: Flatcar 2983 and later keep the baked config on a btrfs OEM, and GRUB under UEFI reads only FAT and btrfs"
    )]
    OemNotBtrfs { file: String, found: String },
    #[error(
        "role {role}: the OEM partition is {size} bytes but its files and the config need {needed}"
    )]
    OemTooSmall {
        role: String,
        needed: u64,
        size: u64,
    },
    #[error("role {role}: reading the OEM filesystem: {source}")]
    ReadOem { role: String, source: ReadError },
    #[error("role {role}: {source}")]
    Oem { role: String, source: OemError },
    #[error("role {role}: writing the OEM filesystem: {source}")]
    WriteOem { role: String, source: EditError },
    #[error("role {role}: {source}")]
    Data { role: String, source: DataError },
    #[error("role {role}: {source}")]
    Package { role: String, source: PackageError },
}

/// The vendor image a role's disk is made from.
pub struct Base<'a> {
    /// The vendor file's name (`flatcar_production_image.bin.bz2`) and SHA-512.
    pub file: &'a str,
    pub sha512: &'a str,
    pub image: &'a disk::CachedImage,
}

/// What goes into a role's disk besides the base.
pub struct RawInputs<'a> {
    pub role: &'a str,
    pub config: &'a [u8],
    pub kernel_args: &'a [String],
    pub images: &'a [BakedImage],
    pub data: &'a DataSettings,
    /// Times of the files the build writes.
    pub time: Timespec,
    /// For a platform disk: the OEM to install (the disk is then grown to the platform's
    /// size and packaged in its format).
    pub platform: Option<PlatformOem<'a>>,
}

/// Writes `output` from `base`, renamed into place only when complete, and describes it.
pub fn build(
    base: &Base,
    inputs: &RawInputs,
    output: &Path,
    zeros: &mut ZeroLeaves,
) -> Result<DiskRecord, RawError> {
    let role = inputs.role;
    let mut copy = WorkingCopy::create(&base.image.path, output, &["OEM"])?;
    let oem = copy.table.by_name("OEM").map_err(|source| DiskError::Gpt {
        file: base.image.path.display().to_string(),
        source,
    })?;
    let found = filesystems::detect(&mut Window::new(copy.reader(), oem.start(), oem.len()))
        .map_err(DiskError::io(&base.image.path))?;
    if found.as_ref().map(|f| f.kind) != Some(FsKind::Btrfs) {
        return Err(RawError::OemNotBtrfs {
            file: base.file.to_string(),
            found: found.map_or_else(
                || "no filesystem kato-image knows".into(),
                |f| f.kind.name().to_string(),
            ),
        });
    }
    let (mut tree, label, fsid) = btrfs::read_partition(copy.reader(), oem.start(), oem.len())
        .map_err(|source| RawError::ReadOem {
            role: role.into(),
            source,
        })?;
    if let Some(platform) = &inputs.platform {
        oem::install_platform(&mut tree, platform, inputs.time).map_err(|source| {
            RawError::Oem {
                role: role.into(),
                source,
            }
        })?;
    }
    oem::bake(
        &mut tree,
        inputs.config,
        role,
        inputs.kernel_args,
        inputs.time,
    )
    .map_err(|source| RawError::Oem {
        role: role.into(),
        source,
    })?;
    btrfs::rewrite_partition(
        &mut copy.tracked(),
        oem.start(),
        oem.len(),
        &tree,
        (label, fsid),
        inputs.time,
    )
    .map_err(|source| match source {
        EditError::Write(WriteError::TooSmall { needed, size }) => RawError::OemTooSmall {
            role: role.to_string(),
            needed,
            size,
        },
        source => RawError::WriteOem {
            role: role.into(),
            source,
        },
    })?;
    if !inputs.images.is_empty() {
        let seed = format!(
            "{}\0{role}\0{}",
            base.sha512,
            hex(&Sha256::digest(inputs.config))
        );
        data::add_data_partition(&mut copy, inputs.images, inputs.data, &seed, inputs.time)
            .map_err(|source| RawError::Data {
                role: role.into(),
                source,
            })?;
    }
    let package_error = |source| RawError::Package {
        role: role.into(),
        source,
    };
    if let Some(platform) = &inputs.platform {
        package::grow(&mut copy, platform.platform).map_err(package_error)?;
    }
    let digests = copy.digests(&base.image.digests, zeros)?;
    let partitions = partition_records(&copy, &base.image.digests, &digests);
    let disk = package::Disk {
        size: digests.leaves.len,
        blake3: disk::digest::hex(&digests.leaves.root()),
    };
    let (path, file) = match &inputs.platform {
        None => {
            let path = copy.commit()?;
            (path, disk.clone())
        }
        Some(platform) => package::write(copy, platform.platform, &digests, inputs.time, zeros)
            .map_err(package_error)?,
    };
    Ok(DiskRecord {
        file: file_name(&path),
        from: base.file.to_string(),
        size: file.size,
        blake3: file.blake3,
        changed_partitions: partitions
            .iter()
            .filter(|p| p.changed)
            .map(|p| p.name.clone())
            .collect(),
        partitions,
        ami: None,
        platform: inputs.platform.as_ref().map(|p| PlatformRecord {
            name: p.platform,
            format: p.platform.container(),
            oem_id: p.platform.oem_id().to_string(),
            disk_size: disk.size,
            disk_blake3: disk.blake3,
            oem: p.record.clone(),
        }),
    })
}

/// Each partition's digest before and after, by slot.
fn partition_records(
    copy: &WorkingCopy,
    before: &ImageDigests,
    after: &ImageDigests,
) -> Vec<PartitionRecord> {
    copy.table
        .partitions()
        .into_iter()
        .map(|p| {
            let find = |digests: &ImageDigests| {
                digests
                    .partitions
                    .iter()
                    .find(|d| d.slot == p.slot)
                    .map(|d| d.blake3.clone())
            };
            let (was, now) = (find(before), find(after).unwrap_or_default());
            PartitionRecord {
                slot: p.slot,
                changed: was.as_deref() != Some(now.as_str()),
                name: p.name,
                blake3_before: was,
                blake3_after: now,
            }
        })
        .collect()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
