//! The integration tests, one module per area, in one binary: linked once, and the
//! helpers in `common` (fixtures built once, one VM at a time) shared by all of them.
//! `scripts/test --test it build::` runs one area.

mod common;

mod bad_input;
mod boot;
mod btrfs;
mod btrfs_edges;
mod build;
mod digests;
mod disk;
mod docs;
mod fetch;
mod fragments;
mod hardening;
mod identity;
mod images;
mod ipxe;
mod merge_rules;
mod node;
mod oem_edit;
mod platforms;
mod provenance;
mod publish;
mod render;
mod run;
mod serve;
mod snapshot;
mod sysext;
