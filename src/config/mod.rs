//! Rendering a role's plan as a machine config: Ignition (Flatcar, Fedora CoreOS) or legacy
//! cloud-config (CoreOS Container Linux era hosts).

pub(crate) mod cloud_config;
pub(crate) mod data_url;
pub mod ignition;
pub mod rules;

pub use data_url::encode as data_url;

use crate::role::RolePlan;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Ignition spec 3.3.0 JSON.
    Ignition,
    /// `#cloud-config` YAML for coreos-cloudinit.
    CloudConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot serialise the {format} config: {message}")]
    Serialise {
        format: &'static str,
        message: String,
    },
    #[error("{0}")]
    Unsupported(String),
}

impl Format {
    /// The name in manifests and messages.
    pub fn name(self) -> &'static str {
        match self {
            Format::Ignition => "ignition",
            Format::CloudConfig => "cloud-config",
        }
    }
}

/// The config a build bakes, made once: its bytes, their SHA-256 (which the build ID, the
/// manifest, the provenance and KATO-DATA's UUIDs all use) and what the machines run it as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedConfig {
    pub bytes: Vec<u8>,
    pub sha256: String,
    pub format: Format,
}

/// The Ignition config a build bakes for `plan` in `format`: the role's own config, or (for
/// cloud-config) one that writes the role's cloud-config where coreos-cloudinit runs it.
pub fn baked(plan: &RolePlan, format: Format) -> Result<RenderedConfig, RenderError> {
    let bytes = match format {
        Format::Ignition => ignition::render(plan)?,
        Format::CloudConfig => {
            ignition::to_bytes(&ignition::user_data(&cloud_config::render(plan)?))?
        }
    };
    let sha256 = crate::cache::hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    Ok(RenderedConfig {
        bytes,
        sha256,
        format,
    })
}

/// Renders `plan` in `format`. The same plan always gives the same bytes.
pub fn render(plan: &RolePlan, format: Format) -> Result<Vec<u8>, RenderError> {
    match format {
        Format::Ignition => ignition::render(plan),
        Format::CloudConfig => cloud_config::render(plan),
    }
}
