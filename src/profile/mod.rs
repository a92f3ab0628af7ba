//! Role profiles: YAML files that say what each role's machines get.
//!
//! A folder holds one profile per file (`master.yaml` is the profile `master`). A profile may
//! `extends:` another; the chain is merged from the root down with three rules: maps merge key
//! by key, lists append, scalars override. Profiles marked `abstract: true` (such as `base`)
//! are building blocks, not roles.

mod error;
pub mod fragment;
mod load;
mod merge;
pub mod schema;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use error::ProfileError;
pub use load::ProfileSet;
pub use schema::{
    AmiBootMode, Board, Channel, ImdsSupport, InstanceSource, IpxePreset, UnknownMachine,
    VolumeType,
};

use crate::origin::Origin;

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub origin: Origin,
}

/// A role's profile after merging its `extends` chain and checking it.
#[derive(Debug, Clone)]
pub struct Profile {
    pub role: String,
    pub description: Option<String>,
    pub release: Release,
    pub users: Vec<User>,
    pub files: Vec<FileSpec>,
    pub units: Vec<Located<UnitSpec>>,
    pub kernel_args: Vec<Located<String>>,
    pub images: Vec<Located<ImageSource>>,
    pub data: DataSettings,
    pub outputs: Outputs,
    pub metadata: BTreeMap<String, Located<String>>,
    /// The machines that boot this role from `boot.ipxe`.
    pub machines: Vec<Located<Machine>>,
    /// What the Butane and Ignition fragments under `ignition:` add, merged.
    pub fragments: fragment::Fragments,
    /// The profile files merged into this one, root first, then the fragments and the local
    /// files they read.
    pub sources: Vec<SourceFile>,
}

impl Profile {
    /// The profile as a whole, for messages about no line in particular: the last file read
    /// for it.
    pub fn origin(&self) -> Origin {
        self.sources
            .last()
            .map(|s| Origin::file(&s.path))
            .unwrap_or_else(|| Origin::file(std::path::Path::new(&self.role)))
    }
}

/// A machine of a role: its MAC address (lower case) and what `boot.ipxe` tells it on its
/// kernel command line (`kato.instance=`, `kato.hostname=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub mac: String,
    pub instance: Option<u32>,
    pub hostname: Option<String>,
}

/// A file read as input, and the SHA-256 of the bytes that were read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub path: PathBuf,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    pub channel: Channel,
    /// `current` or a concrete version such as `4593.1.0`.
    pub version: String,
    pub board: Board,
    pub url: Option<String>,
    /// Where a profile set the board, if one did.
    pub(crate) board_origin: Option<Origin>,
}

impl Default for Release {
    fn default() -> Self {
        Release {
            channel: Channel::Stable,
            version: "current".into(),
            board: Board::Amd64,
            url: None,
            board_origin: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
    pub ssh_authorized_keys: Vec<String>,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileSpec {
    /// Absolute path on the machine.
    pub path: String,
    pub mode: u32,
    pub user: Option<String>,
    pub group: Option<String>,
    pub contents: Vec<u8>,
    pub origin: Origin,
}

/// What a profile says about one unit.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitSpec {
    pub name: String,
    /// Inline unit file; `None` means "from the units folder".
    pub contents: Option<String>,
    pub enabled: Option<bool>,
    pub instances: Instances,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instances {
    /// Not said: a template then has no instance and the role check fails.
    Unspecified,
    Fixed(Vec<String>),
    FromNode(InstanceSource),
}

/// A container image to bake in.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// From a registry; pinned unless the build allows otherwise.
    Registry(crate::oci::Reference),
    /// A `docker-archive` or `oci-archive` tar (path resolved from the profile's folder).
    Archive {
        path: PathBuf,
        sha256: Option<String>,
    },
}

/// Sizing of the KATO-DATA partition, in bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataSettings {
    pub size: Option<Located<u64>>,
    pub(crate) headroom: Option<Located<u64>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outputs {
    pub raw: bool,
    /// Platform disks, in the order listed.
    pub platforms: Vec<crate::platform::Platform>,
    pub ami: Option<AmiOutput>,
    pub ipxe: Option<IpxeOutput>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AmiOutput {
    pub regions: Vec<String>,
    pub boot_mode: AmiBootMode,
    pub imds_v2: ImdsSupport,
    pub tpm: bool,
    pub public: bool,
    pub volume_type: VolumeType,
    /// The root volume's size in GiB; instances get this much disk, and Flatcar grows ROOT
    /// to it on first boot.
    pub volume_size_gib: u64,
    pub iops: Option<u32>,
    pub throughput: Option<u32>,
}

/// Flatcar registers its AMIs with a 16 GiB root volume (mantle, `platform/api/aws`).
pub(crate) const FLATCAR_AMI_VOLUME_GIB: u64 = 16;

impl AmiOutput {
    /// Why these settings cannot boot on `board`, if they cannot: EC2 starts arm64
    /// instances with UEFI only.
    pub fn unbootable(&self, board: Board) -> Option<String> {
        (board == Board::Arm64 && self.boot_mode == AmiBootMode::LegacyBios).then(|| {
            format!(
                "legacy-bios cannot boot {board} (EC2 starts arm64 instances with UEFI only); use uefi or uefi-preferred"
            )
        })
    }

    /// The setting RegisterImage would refuse, and why (EBS's limits per volume type), so
    /// that it is told before anything is uploaded.
    pub fn volume_problem(&self) -> Option<(&'static str, String)> {
        let kind = self.volume_type;
        let size = self.volume_size_gib;
        let max_size = if kind == VolumeType::Standard {
            1024
        } else {
            16384
        };
        if !(1..=max_size).contains(&size) {
            return Some((
                "volume_size",
                format!("{size} GiB: a {kind} volume is 1 to {max_size} GiB"),
            ));
        }
        // (lowest, highest, most per GiB) provisioned IOPS, per EBS's volume types.
        let iops_range = match kind {
            VolumeType::Gp3 => Some((3000, 80_000, 500)),
            VolumeType::Io1 => Some((100, 64_000, 50)),
            VolumeType::Io2 => Some((100, 256_000, 1000)),
            VolumeType::Gp2 | VolumeType::Standard => None,
        };
        match (self.iops, iops_range) {
            (None, _) if matches!(kind, VolumeType::Io1 | VolumeType::Io2) => {
                return Some((
                    "iops",
                    format!(
                        "a {kind} volume needs its provisioned IOPS (RegisterImage requires Iops for io1 and io2)"
                    ),
                ));
            }
            (Some(_), None) => {
                return Some(("iops", format!("a {kind} volume takes no provisioned IOPS")));
            }
            (Some(iops), Some((low, high, per_gib))) => {
                let most = high.min(per_gib * size.min(u64::from(u32::MAX)) as u32);
                if iops < low || iops > most {
                    return Some((
                        "iops",
                        format!("{iops}: a {size} GiB {kind} volume takes {low} to {most} IOPS"),
                    ));
                }
            }
            (None, _) => {}
        }
        match (self.throughput, kind) {
            (Some(t), VolumeType::Gp3) if !(125..=2000).contains(&t) => Some((
                "throughput",
                format!("{t} MiB/s: a gp3 volume takes 125 to 2000 MiB/s"),
            )),
            (Some(_), VolumeType::Gp3) | (None, _) => None,
            (Some(_), _) => Some((
                "throughput",
                format!("only gp3 volumes take a throughput, not {kind}"),
            )),
        }
    }
}

/// What a profile gets for every `outputs.ami` setting it leaves out (and a build with
/// `--output ami` for a profile without the section).
impl Default for AmiOutput {
    fn default() -> Self {
        AmiOutput {
            regions: Vec::new(),
            boot_mode: AmiBootMode::UefiPreferred,
            imds_v2: ImdsSupport::Required,
            tpm: false,
            public: false,
            volume_type: VolumeType::Gp3,
            volume_size_gib: FLATCAR_AMI_VOLUME_GIB,
            iops: None,
            throughput: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct IpxeOutput {
    pub preset: IpxePreset,
    pub console: Option<String>,
    pub base_url: Option<String>,
    pub autologin: bool,
    pub unknown: UnknownMachine,
}

/// What a profile gets for every `outputs.ipxe` setting it leaves out (and a build with
/// `--output ipxe` for a profile without the section).
impl Default for IpxeOutput {
    fn default() -> Self {
        IpxeOutput {
            preset: IpxePreset::Metal,
            console: None,
            base_url: None,
            autologin: false,
            unknown: UnknownMachine::Error,
        }
    }
}

/// Loads the profile of `role` from `dir`: shorthand for `ProfileSet::open(dir)?.load(role)`.
pub fn load_role(dir: &Path, role: &str) -> Result<Profile, ProfileError> {
    ProfileSet::open(dir)?.load(role)
}
