//! kato-image: builds per-role boot artifacts for CoreOS-family fleets.
//!
//! The library does the work and returns typed errors; the `kato-image` binary parses
//! arguments, reports, and chooses exit codes.

pub mod build;
pub mod cache;
pub mod config;
pub mod disk;
pub mod emit;
pub mod fs;
pub mod fsutil;
pub mod inspect;
pub mod io;
pub mod oci;
pub mod origin;
pub mod profile;
pub mod progress;
pub mod project;
pub mod release;
pub mod role;
pub mod serve;
pub mod ssh;
pub mod unit;
pub mod url;
pub mod verify;
