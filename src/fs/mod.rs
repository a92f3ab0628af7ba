//! Filesystems inside partitions: telling which one a partition holds, and reading what
//! kato-image needs from them.

pub mod btrfs;
pub(crate) mod codec;
pub mod detect;
pub mod erofs;
pub(crate) mod fat;
pub mod image;
pub mod lz4;
pub mod squashfs;
pub mod tree;

pub use detect::{FsInfo, FsKind, detect};
