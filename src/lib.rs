//! kato-image: builds per-role boot artifacts for CoreOS-family fleets.
//!
//! The library does the work and returns typed errors; the `kato-image` binary parses
//! arguments, reports, and chooses exit codes.

pub mod config;
pub mod origin;
pub mod profile;
pub mod project;
pub mod role;
pub mod ssh;
pub mod unit;
