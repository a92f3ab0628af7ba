//! Filesystems inside partitions: telling which one a partition holds, and reading what
//! kato-image needs from them.

pub mod btrfs;
pub mod detect;
pub(crate) mod fat;
pub mod tree;

pub use detect::{FsInfo, FsKind, detect};
