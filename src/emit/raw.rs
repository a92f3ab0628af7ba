//! A role's disk image: a copy of the cached vendor image whose OEM btrfs is rewritten with
//! the role's config and kernel arguments, with KATO-DATA added when the role bakes images.
//! Every other byte stays the vendor's, and the digests prove it: partitions and leaves the
//! build did not write keep the vendor image's values, so the cost follows what was written.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ami::AmiRecord;
use super::kato_data::{self, DataError};
use super::oem::{self, OemError, OemRecord, PlatformOem};
use super::package::{self, PackageError};
use crate::disk::{self, DiskError, ImageDigests, VendorImage, Window, WorkingCopy};
use crate::fs::btrfs::{self, EditError, ReadError, WriteError};
use crate::fs::tree::Timespec;
use crate::fs::{self as filesystems, FsKind};
use crate::io::At;
use crate::oci::BakedImage;
use crate::platform::{Container, Platform};
use crate::profile::DataSettings;

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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionRecord {
    pub slot: u32,
    pub name: String,
    /// The vendor image's (absent for a partition the build added).
    pub blake3_before: Option<String>,
    pub blake3_after: String,
    pub changed: bool,
}

/// What can go wrong making a role's disk (the build says which role).
#[derive(Debug, thiserror::Error)]
pub enum RawError {
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error(
        "{file}: the OEM partition holds {found}, not btrfs: Flatcar 2983 and later keep the baked config on a btrfs OEM, and GRUB under UEFI reads only FAT and btrfs"
    )]
    OemNotBtrfs { file: String, found: String },
    #[error("the OEM partition is {size} bytes but its files and the config need {needed}")]
    OemTooSmall { needed: u64, size: u64 },
    #[error("reading the OEM filesystem: {0}")]
    ReadOem(ReadError),
    #[error(transparent)]
    Oem(#[from] OemError),
    #[error("writing the OEM filesystem: {0}")]
    WriteOem(EditError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Package(#[from] PackageError),
}

impl RawError {
    /// Whether it is about this role's disk (so its message names the role), rather than
    /// the vendor image every role shares.
    pub(crate) fn is_the_roles(&self) -> bool {
        !matches!(self, RawError::Disk(_) | RawError::OemNotBtrfs { .. })
    }
}

/// What goes into a role's disk besides the vendor image.
pub struct RawInputs<'a> {
    pub role: &'a str,
    pub config: &'a crate::config::RenderedConfig,
    pub kernel_args: &'a [String],
    pub images: &'a [BakedImage],
    pub data: &'a DataSettings,
    /// Times of the files the build writes.
    pub time: Timespec,
    /// For a platform disk: the OEM to install (the disk is then grown to the platform's
    /// size and packaged in its format).
    pub platform: Option<PlatformOem<'a>>,
}

/// Writes `output` from `vendor`, renamed into place only when complete, and describes it.
pub fn build(
    vendor: &VendorImage,
    inputs: &RawInputs,
    output: &Path,
) -> Result<DiskRecord, RawError> {
    let role = inputs.role;
    let base = &vendor.image;
    let (vendor_file, sha512) = (&vendor.artifact.record.file, &vendor.artifact.record.sha512);
    let mut copy = WorkingCopy::create(&base.path, output, &["OEM"])?;
    let oem = copy.table.by_name("OEM").map_err(|source| DiskError::Gpt {
        file: base.path.display().to_string(),
        source,
    })?;
    let found = filesystems::detect(&mut Window::new(copy.reader(), oem.start(), oem.len()))
        .at(&base.path)
        .map_err(DiskError::from)?;
    if found.as_ref().map(|f| f.kind) != Some(FsKind::Btrfs) {
        return Err(RawError::OemNotBtrfs {
            file: vendor_file.to_string(),
            found: found.map_or_else(
                || "no filesystem kato-image knows".into(),
                |f| f.kind.name().to_string(),
            ),
        });
    }
    let (mut tree, label, fsid) =
        btrfs::read_partition(copy.reader(), oem.start(), oem.len()).map_err(RawError::ReadOem)?;
    if let Some(platform) = &inputs.platform {
        oem::install_platform(&mut tree, platform, inputs.time)?;
    }
    oem::bake(
        &mut tree,
        &inputs.config.bytes,
        role,
        inputs.kernel_args,
        inputs.time,
    )?;
    btrfs::rewrite_partition(
        &mut copy.tracked(),
        oem.start(),
        oem.len(),
        &tree,
        (label, fsid),
        inputs.time,
    )
    .map_err(|source| match source {
        EditError::Write(WriteError::TooSmall { needed, size }) => {
            RawError::OemTooSmall { needed, size }
        }
        source => RawError::WriteOem(source),
    })?;
    if !inputs.images.is_empty() {
        let seed = format!("{}\0{role}\0{}", sha512, inputs.config.sha256);
        kato_data::add_data_partition(&mut copy, inputs.images, inputs.data, &seed, inputs.time)?;
    }
    if let Some(platform) = &inputs.platform {
        package::grow(&mut copy, platform.platform)?;
    }
    let digests = copy.digests(&base.digests)?;
    let partitions = partition_records(&copy, &base.digests, &digests);
    let disk = package::Disk {
        size: digests.leaves.len,
        blake3: disk::digest::hex(&digests.leaves.root()),
    };
    let (path, file) = match &inputs.platform {
        None => {
            let path = copy.commit()?;
            (path, disk.clone())
        }
        Some(platform) => package::write(copy, platform.platform, &digests, inputs.time)?,
    };
    Ok(DiskRecord {
        file: file_name(&path),
        from: vendor_file.to_string(),
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
