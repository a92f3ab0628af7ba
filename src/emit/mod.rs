//! Artifacts a build emits beyond the raw image.

pub mod ami;
pub mod cpio;
pub mod ipxe;
