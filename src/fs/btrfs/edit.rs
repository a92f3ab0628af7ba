//! Editing a btrfs filesystem inside a partition: read every file, change the tree, and
//! write a new filesystem with the same UUID and label over the partition. Everything that
//! was not changed comes back with the same contents, modes, owners, times and xattrs.

use std::fs::File;

use super::reader::{Filesystem, ReadError};
use super::writer::{WriteError, WriteOptions, WriteSummary, write};
use crate::disk::Window;
use crate::disk::sparse::punch_hole;
use crate::fs::tree::{FileTree, Timespec};

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("reading the old filesystem: {0}")]
    Read(#[from] ReadError),
    #[error("{0}")]
    Write(#[from] WriteError),
    #[error("{0}")]
    Change(String),
    #[error("clearing the partition: {0}")]
    Io(#[from] std::io::Error),
}

/// The partition's filesystem as a tree, with its label and UUID.
pub fn read_partition(
    disk: &File,
    start: u64,
    len: u64,
) -> Result<(FileTree, String, [u8; 16]), ReadError> {
    let mut fs = Filesystem::open(Window::new(disk, start, len))?;
    let tree = fs.read_tree()?;
    Ok((tree, fs.superblock.label.clone(), fs.superblock.fsid))
}

/// Rewrites the btrfs filesystem in `[start, start + len)` of `disk` after `change` has
/// edited its tree. The partition is rewritten in place: work on a copy of the image.
pub fn edit_partition(
    disk: &mut File,
    start: u64,
    len: u64,
    time: Timespec,
    change: impl FnOnce(&mut FileTree) -> Result<(), String>,
) -> Result<WriteSummary, EditError> {
    let (mut tree, label, fsid) = read_partition(disk, start, len)?;
    change(&mut tree).map_err(EditError::Change)?;
    punch_hole(disk, start, len)?;
    let options = WriteOptions {
        size: len,
        label,
        fsid,
        time,
    };
    let mut window = Window::new(&*disk, start, len);
    Ok(write(&tree, &options, &mut window)?)
}
