//! The build manifest: what went in (vendor artifact, signature, profiles, config), what came
//! out (image digest, per-partition digests), and a build ID derived from the inputs. Field
//! order is fixed and nothing depends on when or where the build ran.

use serde::Serialize;

use crate::verify::SignatureInfo;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Manifest {
    pub tool: Tool,
    pub build_id: String,
    pub role: String,
    /// The disk image the raw output was made from (absent without a raw output).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<Base>,
    /// The PXE kernel and initramfs (with an iPXE output).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pxe: Option<Vec<Base>>,
    pub profiles: Vec<FileDigest>,
    pub config: Config,
    pub kernel_args: Vec<String>,
    /// Seconds since the epoch used for files the build writes (SOURCE_DATE_EPOCH, else the
    /// vendor signature's time).
    pub timestamp: i64,
    pub partitions: Vec<PartitionDigest>,
    pub changed_partitions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Output>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipxe: Option<crate::emit::ipxe::IpxeRecord>,
    /// Container images baked into KATO-DATA.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<super::images::BakedImage>,
    /// The AMI this image was published as (`--output ami`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ami: Option<crate::emit::ami::AmiRecord>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Tool {
    pub name: &'static str,
    pub version: &'static str,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Base {
    pub channel: String,
    pub board: String,
    pub version: String,
    pub file: String,
    pub url: String,
    pub sha512: String,
    pub size: u64,
    pub signature: Option<SignatureInfo>,
    pub digests_asc_verified: bool,
    pub insecure_skip_signature: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileDigest {
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Config {
    pub format: &'static str,
    pub spec: &'static str,
    /// Where in the OEM filesystem it was written.
    pub path: &'static str,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PartitionDigest {
    pub slot: u32,
    pub name: String,
    pub sha256_before: String,
    pub sha256_after: String,
    pub changed: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Output {
    pub file: String,
    pub size: u64,
    pub sha256: String,
}
