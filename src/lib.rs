//! kato-image: builds per-role boot artifacts for CoreOS-family fleets.
//!
//! The library does the work and returns typed errors; the `kato-image` binary parses
//! arguments, reports, and chooses exit codes.
//!
//! A build (`build`, whose folder lists its stages in order) runs `profile` (load and merge)
//! and `role` (units, files) into `build::plan`, then `build::gather` (`release` fetches and
//! `trust` checks the vendor files, `disk` decompresses and hashes them, `oci` pulls images),
//! then `emit` for each role (`build::role`: a copy of the vendor disk with `fs` writing its
//! OEM btrfs; iPXE payloads; AMIs); `build::manifest` records it all and `provenance` states
//! and signs it.

pub mod atomic;
pub mod build;
pub mod cache;
pub mod config;
pub mod disk;
pub mod emit;
pub mod fs;
pub mod input;
pub mod inspect;
pub mod io;
pub mod oci;
pub mod origin;
pub mod platform;
pub mod profile;
pub mod progress;
pub mod project;
pub mod provenance;
pub mod qemu;
pub mod release;
pub mod role;
pub mod serve;
pub mod ssh;
pub mod sysext;
pub mod trust;
pub mod unit;
pub mod url;
pub(crate) mod wording;
