//! Flatcar releases: where an artifact lives, and getting it verified into the cache.
//!
//! `https://{channel}.release.flatcar-linux.net/{board}/{version}/` holds each artifact `F`
//! with `F.sig` (detached OpenPGP signature), `F.DIGESTS` and, usually, `F.DIGESTS.asc`;
//! `version.txt` holds `FLATCAR_VERSION=`, which is how `current` becomes a version.

pub mod digests;
mod fetch;
pub(crate) mod known_issues;
pub mod transport;

pub use fetch::{
    FetchOptions, FetchedArtifact, FetchedRelease, Fetcher, PxeFiles, ReleaseError, ReleaseInfo,
    fetch,
};

/// A Flatcar release channel.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Stable,
    Beta,
    Alpha,
    Lts,
}

impl Channel {
    /// The name in release URLs, profiles and manifests.
    pub fn name(self) -> &'static str {
        match self {
            Channel::Stable => "stable",
            Channel::Beta => "beta",
            Channel::Alpha => "alpha",
            Channel::Lts => "lts",
        }
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A Flatcar board: the machine architecture an image is built for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Board {
    #[serde(rename = "amd64-usr")]
    Amd64,
    #[serde(rename = "arm64-usr")]
    Arm64,
}

impl Board {
    /// The name in release URLs, profiles and manifests.
    pub fn name(self) -> &'static str {
        match self {
            Board::Amd64 => "amd64-usr",
            Board::Arm64 => "arm64-usr",
        }
    }

    /// The OCI platform architecture of container images for this board.
    pub fn oci_architecture(self) -> &'static str {
        match self {
            Board::Amd64 => "amd64",
            Board::Arm64 => "arm64",
        }
    }

    /// EC2's name for this board's architecture.
    pub(crate) fn ec2_architecture(self) -> &'static str {
        match self {
            Board::Amd64 => "x86_64",
            Board::Arm64 => "arm64",
        }
    }

    /// systemd's name for this board's architecture (`ARCHITECTURE=` in extension-release).
    pub fn sysext_architecture(self) -> &'static str {
        match self {
            Board::Amd64 => "x86-64",
            Board::Arm64 => "arm64",
        }
    }
}

impl std::fmt::Display for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

pub const DEFAULT_URL_TEMPLATE: &str =
    "https://{channel}.release.flatcar-linux.net/{board}/{version}/";

/// The generic disk image.
pub(crate) const IMAGE_FILE: &str = "flatcar_production_image.bin.bz2";
/// The EC2 flavour of the disk image.
pub const AMI_IMAGE_FILE: &str = "flatcar_production_ami_image.bin.bz2";
/// The PXE kernel (its initrd is built in).
pub(crate) const PXE_KERNEL_FILE: &str = "flatcar_production_pxe.vmlinuz";
/// The PXE root, appended to the kernel's initrd.
pub(crate) const PXE_INITRAMFS_FILE: &str = "flatcar_production_pxe_image.cpio.gz";

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    /// The generic disk image.
    Image,
    /// The EC2 flavour of the disk image.
    Ami,
    /// The PXE kernel and initramfs.
    Pxe,
}

impl ArtifactKind {
    pub fn files(self) -> &'static [&'static str] {
        match self {
            ArtifactKind::Image => &[IMAGE_FILE],
            ArtifactKind::Ami => &[AMI_IMAGE_FILE],
            ArtifactKind::Pxe => &[PXE_KERNEL_FILE, PXE_INITRAMFS_FILE],
        }
    }
}

/// Which release to fetch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReleaseSpec {
    pub channel: Channel,
    /// `current` or a version such as `4593.1.0`.
    pub version: String,
    pub board: Board,
    /// URL template with `{channel}`, `{board}` and `{version}`.
    pub url_template: String,
}

impl ReleaseSpec {
    /// The folder URL for `version` (always ending in `/`).
    pub fn base_url(&self, version: &str) -> Result<String, ReleaseError> {
        let mut url = String::new();
        let mut rest = self.url_template.as_str();
        while let Some(open) = rest.find('{') {
            url.push_str(&rest[..open]);
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| self.template_error("an unclosed `{`"))?;
            let name = &rest[open + 1..open + close];
            url.push_str(match name {
                "channel" => self.channel.name(),
                "board" => self.board.name(),
                "version" => version,
                other => {
                    return Err(self.template_error(&format!("unknown placeholder {{{other}}}")));
                }
            });
            rest = &rest[open + close + 1..];
        }
        url.push_str(rest);
        if !url.ends_with('/') {
            url.push('/');
        }
        Ok(url)
    }

    fn template_error(&self, why: &str) -> ReleaseError {
        ReleaseError::Template {
            template: self.url_template.clone(),
            why: why.to_string(),
        }
    }
}

/// Reads `FLATCAR_VERSION=` (or `COREOS_VERSION=`) from a `version.txt`.
pub fn parse_version_txt(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| line.trim().split_once('='))
        .find(|(key, _)| matches!(*key, "FLATCAR_VERSION" | "COREOS_VERSION"))
        .map(|(_, value)| value.trim().trim_matches('"').to_string())
        .filter(|v| is_version(v))
}

/// `4593.1.0`: three dot-separated numbers (an optional `+suffix` is allowed).
pub fn is_version(text: &str) -> bool {
    let core = text.split_once('+').map_or(text, |(core, _)| core);
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_the_url_template() {
        let spec = ReleaseSpec {
            channel: Channel::Beta,
            version: "current".into(),
            board: Board::Arm64,
            url_template: DEFAULT_URL_TEMPLATE.into(),
        };
        assert_eq!(
            spec.base_url("4593.1.0").unwrap(),
            "https://beta.release.flatcar-linux.net/arm64-usr/4593.1.0/"
        );
        let mirror = ReleaseSpec {
            url_template: "file:///srv/m/{board}/{version}".into(),
            ..spec.clone()
        };
        assert_eq!(
            mirror.base_url("1.2.3").unwrap(),
            "file:///srv/m/arm64-usr/1.2.3/"
        );
        let bad = ReleaseSpec {
            url_template: "http://x/{chanel}/".into(),
            ..spec
        };
        assert!(bad.base_url("1.2.3").is_err());
    }

    #[test]
    fn reads_version_txt() {
        let text = "FLATCAR_BUILD=4593\nFLATCAR_VERSION=4593.1.0\nFLATCAR_VERSION_ID=4593.1.0\n";
        assert_eq!(parse_version_txt(text).as_deref(), Some("4593.1.0"));
        assert_eq!(parse_version_txt("FLATCAR_VERSION=../../etc"), None);
    }
}
