//! kato-image: builds per-role boot artifacts for CoreOS-family fleets.
//!
//! The library does the work and returns typed errors; the `kato-image` binary parses
//! arguments, reports, and chooses exit codes.
//!
//! A build runs `profile` (load and merge) and `role` (units, files) into `plan`, then
//! `gather` (`release` fetches and `verify` checks the vendor files, `disk` decompresses and
//! hashes them, `oci` pulls images), then `emit` (a copy of the vendor disk with `fs` writing
//! its OEM btrfs; iPXE payloads; AMIs), `manifest` records it all and `provenance` states
//! and signs it; `build` drives them.

pub mod build;
pub mod cache;
pub mod config;
pub mod disk;
pub mod emit;
pub mod fs;
pub mod fsutil;
pub mod gather;
pub mod input;
pub mod inspect;
pub mod io;
pub mod manifest;
pub mod oci;
pub mod origin;
pub mod plan;
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
pub mod unit;
pub mod url;
pub mod verify;
pub mod wording;
