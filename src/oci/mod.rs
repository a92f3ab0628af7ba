//! Container images to bake into a role's disk: pulled from registries (pinned by digest) or
//! taken from local archives, each becoming one verified tar a machine can `docker load`.

pub mod archive;
pub mod auth;
pub mod bake;
pub mod local;
pub mod manifest;
pub mod reference;
pub mod registry;

pub use bake::{BakeError, BakedImage};
pub use reference::Reference;
pub use registry::{PullOptions, PulledImage, Registry, RegistryError};
