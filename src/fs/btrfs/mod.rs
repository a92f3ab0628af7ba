//! btrfs in pure Rust: a writer that makes a new filesystem from a file tree, and a reader
//! for filesystems written by anyone (mkfs, the kernel, or us). The kernel, GRUB and
//! `btrfs check` are the judges; `docs/btrfs-format.md` is the format reference.

pub mod crc;
pub mod format;
pub(crate) mod pack;
pub mod writer;

pub use writer::{WriteError, WriteOptions, WriteSummary, write};
pub mod lzo;
pub mod reader;

pub use reader::{Filesystem, Omission, ReadError};
pub mod edit;

pub use edit::{EditError, list_partition, read_partition, rewrite_partition};
