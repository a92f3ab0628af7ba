//! The profile file format, exactly as written in YAML. Every field is optional here so that a
//! role profile can add to the profile it extends; `Profile` is the merged, checked result.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

pub use crate::release::{Board, Channel};

/// `Deserialize` for an entry written either as a string or as a map, whose errors say
/// what was expected in the user's words (serde's untagged enums say only that nothing
/// matched).
macro_rules! string_or_map {
    ($name:ident, $string:ident, $map:ident, $expected:literal) => {
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl<'de> serde::de::Visitor<'de> for Visitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str($expected)
                    }
                    fn visit_str<E>(self, v: &str) -> Result<$name, E> {
                        Ok($name::$string(v.to_string()))
                    }
                    fn visit_map<M: serde::de::MapAccess<'de>>(
                        self,
                        map: M,
                    ) -> Result<$name, M::Error> {
                        Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                            .map($name::$map)
                    }
                }
                deserializer.deserialize_any(Visitor)
            }
        }
    };
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProfileDoc {
    /// The profile this one adds to (by name: `base` is `base.yaml`).
    pub extends: Option<Spanned<String>>,
    /// An abstract profile (such as `base`) is not a role. Not inherited.
    #[serde(rename = "abstract")]
    pub(crate) is_abstract: Option<bool>,
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
    /// The machines that boot this role over iPXE (`boot.ipxe`).
    pub machines: Option<Vec<Spanned<MachineDoc>>>,
    /// Butane and Ignition files whose config the role's config adds, in order.
    pub ignition: Option<Vec<Spanned<super::fragment::FragmentDoc>>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReleaseDoc {
    pub channel: Option<Channel>,
    pub version: Option<Spanned<String>>,
    pub board: Option<Spanned<Board>>,
    /// URL template with `{channel}`, `{board}` and `{version}`.
    pub url: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserDoc {
    pub name: Spanned<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub ssh_authorized_keys: Vec<Spanned<String>>,
    /// Allow `authorized_keys` options (`command=`, `from=`, ...) in front of keys.
    #[serde(default)]
    pub ssh_key_options: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileDoc {
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
#[derive(Debug, Clone)]
pub(crate) enum UnitEntryDoc {
    Name(String),
    Full(UnitDoc),
}

string_or_map!(
    UnitEntryDoc,
    Name,
    Full,
    "a unit name such as cadvisor.service, or a map with `name:` (and `contents:`, `enabled:`, `instances:` or `instance_from:`)"
);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UnitDoc {
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
    /// Chosen by the machine at boot: `kato.instance=` on its kernel command line (set by
    /// `boot.ipxe`), else its EC2 `kato:instance` tag, else the trailing number of its host
    /// name (`master-2` gives `2`). `hostname` is the older name for it.
    #[serde(alias = "hostname")]
    Machine,
}

/// A container image to bake in: a registry reference, or a local archive.
#[derive(Debug, Clone)]
pub(crate) enum ImageDoc {
    Reference(String),
    Full(ImageSpecDoc),
}

string_or_map!(
    ImageDoc,
    Reference,
    Full,
    "an image reference such as docker.io/library/zookeeper:3.9@sha256:..., or a map with `archive:` (and `sha256:`) or `reference:`"
);

/// A machine that boots the role: its MAC address, or the address with its member number
/// and hostname (given to it on the kernel command line by `boot.ipxe`).
#[derive(Debug, Clone)]
pub(crate) enum MachineDoc {
    Mac(String),
    Full(MachineSpecDoc),
}

string_or_map!(
    MachineDoc,
    Mac,
    Full,
    "a MAC address such as 52:54:00:12:34:56, or a map with `mac:` (and `instance:`, `hostname:`)"
);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MachineSpecDoc {
    pub mac: String,
    /// The machine's member number (ZooKeeper's `myid`), 1 to 255.
    pub instance: Option<u32>,
    pub hostname: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImageSpecDoc {
    pub reference: Option<String>,
    pub archive: Option<String>,
    pub sha256: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DataDoc {
    /// The whole partition, fixed (`4GiB`); the images must fit.
    pub size: Option<Spanned<Scalar>>,
    /// Free space on top of the images when the size is not fixed.
    pub(crate) headroom: Option<Spanned<Scalar>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OutputsDoc {
    pub raw: Option<RawOutputDoc>,
    pub ami: Option<AmiOutputDoc>,
    pub ipxe: Option<IpxeOutputDoc>,
    /// Platform disks (`[gce, azure, openstack]`): Flatcar's generic image with each
    /// platform's OEM, in its format.
    pub platforms: Option<Vec<crate::platform::Platform>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutputDoc {}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AmiOutputDoc {
    pub regions: Option<Vec<String>>,
    pub boot_mode: Option<AmiBootMode>,
    pub imds_v2: Option<ImdsSupport>,
    pub tpm: Option<bool>,
    pub public: Option<bool>,
    pub volume_type: Option<VolumeType>,
    /// The root volume's size in GiB (at least the image's).
    pub volume_size: Option<u64>,
    /// Provisioned IOPS: required for io1 and io2, optional for gp3.
    pub iops: Option<u32>,
    /// gp3 throughput in MiB/s.
    pub throughput: Option<u32>,
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
pub(crate) struct IpxeOutputDoc {
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
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a single value (text, a number, true or false), not a list or map")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Scalar, E> {
                i64::try_from(v)
                    .map(Scalar::Int)
                    .map_err(|_| E::custom(format!("{v} is too large a number")))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::String(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
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
