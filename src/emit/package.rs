//! A platform disk's last steps: grown to the platform's size, then packaged in its format
//! (raw as it is, a fixed VHD by appending a footer, qcow2 or GCE's tar.gz written beside
//! it from the raw copy's data extents).

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use super::format::{gce, qcow2, vhd};
use crate::disk::layout::{self, LayoutError};
use crate::disk::{DiskError, ImageDigests, WorkingCopy, digest, sparse};
use crate::fs::tree::Timespec;
use crate::io::{At, PathError};
use crate::platform::{Container, Layout, Platform};

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{platform}: {source}")]
    Layout {
        platform: Platform,
        source: LayoutError,
    },
    #[error(
        "{platform}: the disk is {size} bytes, more than the {limit} bytes {} takes (baked images make it larger)",
        .platform.title()
    )]
    TooLarge {
        platform: Platform,
        size: u64,
        limit: u64,
    },
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error(transparent)]
    Io(#[from] PathError),
}

/// A file's size and BLAKE3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub size: u64,
    pub blake3: String,
}

const GIB: u64 = 1 << 30;

/// The size `platform` wants for a disk now `len` bytes long whose ROOT is `root_len`.
pub(crate) fn target_len(platform: Platform, len: u64, root_len: u64) -> Result<u64, PackageError> {
    let grown = match platform.layout() {
        Layout::Base => len,
        Layout::RootAtLeast(sectors) => {
            let want = sectors * 512;
            let extra = want.saturating_sub(root_len).div_ceil(layout::ALIGN) * layout::ALIGN;
            len + extra
        }
        Layout::DiskAtLeast(sectors) => len.max(sectors * 512),
        Layout::Exactly(bytes) if len > bytes => {
            return Err(PackageError::TooLarge {
                platform,
                size: len,
                limit: bytes,
            });
        }
        Layout::Exactly(bytes) => bytes,
    };
    let too_large = |limit| PackageError::TooLarge {
        platform,
        size: grown,
        limit,
    };
    match platform.container() {
        // Azure takes whole MiB; the geometry must cover the disk for CHS readers.
        Container::VhdFixed => vhd::exact_size(grown).ok_or_else(|| too_large(vhd::MAX_SIZE)),
        // GCE imports disks of whole GiB.
        Container::GceTar => Ok(grown.div_ceil(GIB) * GIB),
        Container::Qcow2 if grown > qcow2::MAX_SIZE => Err(too_large(qcow2::MAX_SIZE)),
        Container::Qcow2 | Container::Raw => Ok(grown),
    }
}

/// Grows the copy to the platform's size.
pub fn grow(copy: &mut WorkingCopy, platform: Platform) -> Result<(), PackageError> {
    let layout_error = |source| PackageError::Layout { platform, source };
    let len = copy.file().metadata().at(copy.temp_path())?.len();
    let root = copy
        .table
        .by_name("ROOT")
        .map_err(|e| layout_error(e.into()))?;
    let new_len = target_len(platform, len, root.len())?;
    let mut table = copy.table.clone();
    layout::grow_disk(&mut copy.tracked(), &mut table, new_len).map_err(layout_error)?;
    copy.table = table;
    Ok(())
}

/// Packages the finished copy (whose disk digests are `digests`) in the platform's format
/// under its output name; returns the path and the file's size and BLAKE3.
pub fn write(
    mut copy: WorkingCopy,
    platform: Platform,
    digests: &ImageDigests,
    time: Timespec,
) -> Result<(PathBuf, Disk), PackageError> {
    let disk_len = digests.leaves.len;
    match platform.container() {
        Container::Raw => {
            let blake3 = digest::hex(&digests.leaves.root());
            let path = copy.commit()?;
            Ok((
                path,
                Disk {
                    size: disk_len,
                    blake3,
                },
            ))
        }
        Container::VhdFixed => {
            let root = digests.leaves.root();
            let mut unique_id = [0u8; 16];
            unique_id.copy_from_slice(&root.as_bytes()[..16]);
            let footer = vhd::Footer {
                size: disk_len,
                time: time.sec,
                unique_id,
            };
            let temp = copy.temp_path().to_path_buf();
            let appended = {
                use std::io::{Seek, SeekFrom};
                let mut tracked = copy.tracked();
                tracked
                    .seek(SeekFrom::Start(disk_len))
                    .and_then(|_| tracked.write_all(&footer.to_bytes()))
            };
            appended.at(&temp)?;
            // Only the footer's leaves are new.
            let file = copy.digests(digests)?;
            let blake3 = digest::hex(&file.leaves.root());
            let size = file.leaves.len;
            let path = copy.commit()?;
            Ok((path, Disk { size, blake3 }))
        }
        Container::Qcow2 | Container::GceTar => {
            let output = copy.output().to_path_buf();
            let temp = crate::atomic::temp_path(&output);
            let written = (|| {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&temp)?;
                let disk = match platform.container() {
                    Container::Qcow2 => qcow2_file(copy.file(), disk_len, &file)?,
                    _ => gce_file(copy.file(), disk_len, time.sec, &file)?,
                };
                drop(file);
                crate::atomic::commit(&temp, &output)?;
                Ok(disk)
            })();
            match written {
                Ok(disk) => Ok((output, disk)),
                Err(e) => {
                    let _ = std::fs::remove_file(&temp);
                    Err(e).at(&output)?
                }
            }
        }
    }
}

/// Writes `source` (a raw disk of `len` bytes) into `out` as qcow2; its size and BLAKE3.
pub fn qcow2_file(source: &File, len: u64, out: &File) -> std::io::Result<Disk> {
    let written = qcow2::write(source, len, out)?;
    Ok(Disk {
        size: written.len,
        blake3: digest::hex(&written.blake3),
    })
}

/// Writes `source` into `out` as GCE's tar.gz of `disk.raw`; its size and BLAKE3.
pub fn gce_file(source: &File, len: u64, mtime: i64, out: &File) -> std::io::Result<Disk> {
    let extents = sparse::data_extents(source, 0, len)?;
    let mut gz = gce::gzip(crate::io::Blake3Writer::new(out));
    gce::write_tar(source, len, &extents, mtime, &mut gz)?;
    let (_, hash, size) = gz.finish()?.finish()?;
    Ok(Disk {
        size,
        blake3: digest::hex(&hash),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 16_515_072 * 512;
    const BASE_ROOT: u64 = 3_653_632 * 512;

    #[test]
    fn each_layout_sizes_the_disk_as_flatcars_does() {
        // vm: ROOT grows to 12943360 sectors, in whole 2 MiB steps.
        let vm = target_len(Platform::Openstack, BASE, BASE_ROOT).unwrap();
        assert_eq!(
            vm - BASE,
            (12_943_360 * 512 - BASE_ROOT).div_ceil(2 << 20) * (2 << 20)
        );
        // A ROOT already that large is left alone.
        assert_eq!(
            target_len(Platform::Hetzner, BASE, 13_000_000 * 512).unwrap(),
            BASE
        );
        // base: as it is.
        assert_eq!(
            target_len(Platform::Digitalocean, BASE, BASE_ROOT).unwrap(),
            BASE
        );
        // azure: at least the azure disk, whole MiB, covered by its geometry.
        let azure = target_len(Platform::Azure, BASE, BASE_ROOT).unwrap();
        assert!(azure >= 63_737_856 * 512 && azure.is_multiple_of(1 << 20));
        assert_eq!(vhd::geometry(azure).sectors_total() * 512, azure);
        // gce: vm, then whole GiB.
        let gce = target_len(Platform::Gce, BASE, BASE_ROOT).unwrap();
        assert!(gce >= vm && gce.is_multiple_of(GIB) && gce - vm < GIB);
        // exoscale: exactly 10 GiB, and a larger disk is refused with both sizes.
        assert_eq!(
            target_len(Platform::Exoscale, BASE, BASE_ROOT).unwrap(),
            10 * GIB
        );
        let refused = target_len(Platform::Exoscale, 11 * GIB, BASE_ROOT).unwrap_err();
        let text = refused.to_string();
        assert!(
            text.contains(&(11 * GIB).to_string()) && text.contains("Exoscale"),
            "{text}"
        );
    }
}
