//! A platform disk's last steps: grown to the platform's size, then packaged in its format
//! (raw as it is, a fixed VHD by appending a footer, qcow2 or GCE's tar.gz written beside
//! it from the raw copy's data extents).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use super::container::{gce, qcow2, vhd};
use crate::disk::layout::{self, LayoutError};
use crate::disk::{DiskError, ImageDigests, WorkingCopy, ZeroLeaves, digest, sparse};
use crate::fs::tree::Timespec;
use crate::platform::{Container, Layout, Platform};

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{platform}: {source}")]
    Layout {
        platform: Platform,
        source: LayoutError,
    },
    #[error(
        "{platform}: the disk is {size} bytes, more than the {limit} bytes {title} takes (baked images make it larger)"
    )]
    TooLarge {
        platform: Platform,
        title: &'static str,
        size: u64,
        limit: u64,
    },
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A file's size and BLAKE3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub size: u64,
    pub blake3: String,
}

const GIB: u64 = 1 << 30;

/// The size `platform` wants for a disk now `len` bytes long whose ROOT is `root_len`.
pub fn target_len(platform: Platform, len: u64, root_len: u64) -> Result<u64, PackageError> {
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
                title: platform.title(),
                size: len,
                limit: bytes,
            });
        }
        Layout::Exactly(bytes) => bytes,
    };
    let too_large = |limit| PackageError::TooLarge {
        platform,
        title: platform.title(),
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
    let len = copy
        .file()
        .metadata()
        .map_err(DiskError::io(copy.temp_path()))?
        .len();
    let root = copy
        .table
        .by_name("ROOT")
        .map_err(|e| layout_error(e.into()))?;
    let new_len = target_len(platform, len, root.len())?;
    let mut table = copy.table.clone();
    layout::grow_root(&mut copy.tracked(), &mut table, new_len).map_err(layout_error)?;
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
    zeros: &mut ZeroLeaves,
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
            appended.map_err(DiskError::io(&temp))?;
            // Only the footer's leaves are new.
            let file = copy.digests(digests, zeros)?;
            let blake3 = digest::hex(&file.leaves.root());
            let size = file.leaves.len;
            let path = copy.commit()?;
            Ok((path, Disk { size, blake3 }))
        }
        Container::Qcow2 | Container::GceTar => {
            let output = copy.output().to_path_buf();
            let temp = crate::fsutil::temp_path(&output);
            let io_error = |source| PackageError::Io {
                path: output.clone(),
                source,
            };
            let written = (|| {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&temp)?;
                let disk = match platform.container() {
                    Container::Qcow2 => qcow2_file(copy.file(), disk_len, &file, zeros)?,
                    _ => gce_file(copy.file(), disk_len, time.sec, &file)?,
                };
                file.sync_all()?;
                std::fs::rename(&temp, &output)?;
                Ok(disk)
            })();
            match written {
                Ok(disk) => Ok((output, disk)),
                Err(e) => {
                    let _ = std::fs::remove_file(&temp);
                    Err(io_error(e))
                }
            }
        }
    }
}

fn qcow2_file(
    source: &File,
    len: u64,
    out: &File,
    zeros: &mut ZeroLeaves,
) -> std::io::Result<Disk> {
    let written = qcow2::write(source, len, out)?;
    // The metadata at the front is written last, so the file is hashed once it is whole.
    let blake3 = digest::hash_range(out, 0, written.len, zeros)?;
    Ok(Disk {
        size: written.len,
        blake3: digest::hex(&blake3),
    })
}

fn gce_file(source: &File, len: u64, mtime: i64, out: &File) -> std::io::Result<Disk> {
    let extents = sparse::data_extents(source, 0, len)?;
    let hashed = crate::io::Blake3Writer::new(BufWriter::with_capacity(1 << 20, out));
    let mut gz = gce::gzip(hashed);
    gce::write_tar(source, len, &extents, mtime, &mut gz)?;
    let hashed = gz.finish()?;
    let (mut inner, hash, size) = hashed.finish();
    inner.flush()?;
    Ok(Disk {
        size,
        blake3: digest::hex(&hash),
    })
}
