//! The profile file format, exactly as written in YAML. Every field is optional here so that a
//! role profile can add to the profile it extends; `Profile` is the merged, checked result.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

pub use crate::release::{Board, Channel};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileDoc {
    /// The profile this one adds to (by name: `base` is `base.yaml`).
    pub extends: Option<Spanned<String>>,
    /// An abstract profile (such as `base`) is not a role. Not inherited.
    #[serde(rename = "abstract")]
    pub is_abstract: Option<bool>,
    pub description: Option<String>,
    pub release: Option<ReleaseDoc>,
    pub users: Option<Vec<UserDoc>>,
    pub files: Option<Vec<FileDoc>>,
    pub units: Option<Vec<Spanned<UnitEntryDoc>>>,
    pub kernel_args: Option<Vec<Spanned<String>>>,
    pub images: Option<Vec<Spanned<ImageDoc>>>,
    /// The KATO-DATA partition that holds the images.
    pub data: Option<DataDoc>,
    pub outputs: Option<OutputsDoc>,
    pub metadata: Option<BTreeMap<String, Spanned<Scalar>>>,
    /// MAC addresses of the machines that boot this role over iPXE (`boot.ipxe`).
    pub machines: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseDoc {
    pub channel: Option<Channel>,
    pub version: Option<Spanned<String>>,
    pub board: Option<Board>,
    /// URL template with `{channel}`, `{board}` and `{version}`.
    pub url: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserDoc {
    pub name: Spanned<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub ssh_authorized_keys: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDoc {
    pub path: Spanned<String>,
    /// Octal permission bits as a string, e.g. "0644".
    pub mode: Option<Spanned<String>>,
    pub user: Option<String>,
    pub group: Option<String>,
    /// Inline contents.
    pub contents: Option<String>,
    /// Contents read from this file, relative to the profile's folder.
    pub source: Option<Spanned<String>>,
}

/// A unit is named (from `units/`) or written inline.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum UnitEntryDoc {
    Name(String),
    Full(UnitDoc),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitDoc {
    pub name: String,
    /// Inline unit file; without it the unit comes from `units/`.
    pub contents: Option<String>,
    pub enabled: Option<bool>,
    /// Fixed instances of a template unit (`zookeeper@.service` with `[1]`).
    pub instances: Option<Vec<String>>,
    /// Where a template's single instance comes from at boot.
    pub instance_from: Option<InstanceSource>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceSource {
    /// The trailing number of the node's short hostname (`master-2` gives `2`).
    Hostname,
}

/// A container image to bake in: a registry reference, or a local archive.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ImageDoc {
    Reference(String),
    Full(ImageSpecDoc),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpecDoc {
    pub reference: Option<String>,
    pub archive: Option<String>,
    pub sha256: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataDoc {
    /// The whole partition, fixed (`4GiB`); the images must fit.
    pub size: Option<Spanned<Scalar>>,
    /// Free space on top of the images when the size is not fixed.
    pub headroom: Option<Spanned<Scalar>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputsDoc {
    pub raw: Option<RawOutputDoc>,
    pub ami: Option<AmiOutputDoc>,
    pub ipxe: Option<IpxeOutputDoc>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutputDoc {}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmiOutputDoc {
    pub regions: Option<Vec<String>>,
    pub boot_mode: Option<AmiBootMode>,
    pub imds_v2: Option<ImdsSupport>,
    pub tpm: Option<bool>,
    pub public: Option<bool>,
    pub volume_type: Option<VolumeType>,
}

/// The EBS volume types an AMI's root volume can be (st1 and sc1 cannot boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeType {
    Gp3,
    Gp2,
    Io1,
    Io2,
    Standard,
}

impl std::fmt::Display for VolumeType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for AmiBootMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl VolumeType {
    /// The name in profiles, which is also EC2's `VolumeType` value.
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeType::Gp3 => "gp3",
            VolumeType::Gp2 => "gp2",
            VolumeType::Io1 => "io1",
            VolumeType::Io2 => "io2",
            VolumeType::Standard => "standard",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AmiBootMode {
    UefiPreferred,
    Uefi,
    LegacyBios,
}

impl AmiBootMode {
    /// The name in profiles, which is also EC2's `BootMode` value.
    pub fn as_str(self) -> &'static str {
        match self {
            AmiBootMode::UefiPreferred => "uefi-preferred",
            AmiBootMode::Uefi => "uefi",
            AmiBootMode::LegacyBios => "legacy-bios",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImdsSupport {
    Required,
    Optional,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpxeOutputDoc {
    pub preset: Option<IpxePreset>,
    pub console: Option<String>,
    pub base_url: Option<String>,
    pub autologin: Option<bool>,
    /// What `boot.ipxe` does with a machine whose MAC no role lists.
    pub unknown: Option<UnknownMachine>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownMachine {
    /// Print an error on the console and stop.
    Error,
    /// Offer a menu of roles.
    Menu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IpxePreset {
    Metal,
    Packet,
}

/// Role metadata values are scalars; they end up as strings in `/etc/kato/role.env`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::Bool(v) => write!(f, "{v}"),
            Scalar::Int(v) => write!(f, "{v}"),
            Scalar::Float(v) => write!(f, "{v}"),
            Scalar::String(v) => f.write_str(v),
        }
    }
}
