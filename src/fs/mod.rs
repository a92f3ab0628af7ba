//! Filesystems inside partitions: telling which one a partition holds, and reading what
//! kato-image needs from them.

pub mod detect;
pub mod fat;

pub use detect::{FsInfo, FsKind, detect};
