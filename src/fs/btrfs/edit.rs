//! Editing a btrfs filesystem inside a partition: read every file, change the tree, and
//! write a new filesystem with the same UUID and label over the partition. Everything that
//! was not changed comes back with the same contents, modes, owners, times and xattrs.

use super::reader::{Filesystem, Omission, ReadError};
use super::writer::{WriteError, WriteOptions, WriteSummary, write};
use crate::disk::{Tracked, Window};
use crate::fs::tree::{FileTree, Timespec};

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("reading the old filesystem: {0}")]
    Read(#[from] ReadError),
    #[error("{0}")]
    Write(#[from] WriteError),
    #[error("clearing the partition: {0}")]
    Io(#[from] std::io::Error),
}

/// The partition's filesystem as a tree, and what the tree leaves out.
pub fn list_partition(
    disk: impl std::io::Read + std::io::Seek,
    start: u64,
    len: u64,
) -> Result<(FileTree, Vec<Omission>), ReadError> {
    Filesystem::open(Window::new(disk, start, len))?.read_listing()
}

/// The partition's filesystem as a tree, with its label and UUID; refused when the tree
/// would not be the whole filesystem (writing it back would lose the rest).
pub fn read_partition(
    disk: impl std::io::Read + std::io::Seek,
    start: u64,
    len: u64,
) -> Result<(FileTree, String, [u8; 16]), ReadError> {
    let mut fs = Filesystem::open(Window::new(disk, start, len))?;
    let tree = fs.read_whole()?;
    Ok((tree, fs.superblock.label.clone(), fs.superblock.fsid))
}

/// Writes `tree` as a new btrfs filesystem over `[start, start + len)` of `disk`, with the
/// `label` and `fsid` of the one it replaces (read with `read_partition`). The partition is
/// cleared first, so nothing of the old filesystem is left in its free space.
pub fn rewrite_partition(
    disk: &mut Tracked,
    start: u64,
    len: u64,
    tree: &FileTree,
    (label, fsid): (String, [u8; 16]),
    time: Timespec,
) -> Result<WriteSummary, EditError> {
    disk.punch_hole(start, len)?;
    let options = WriteOptions {
        size: len,
        label,
        fsid,
        time,
    };
    let mut window = Window::new(disk, start, len);
    Ok(write(tree, &options, &mut window)?)
}
