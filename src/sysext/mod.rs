//! System extension images (systemd-sysext): which filesystem an image holds, and what its
//! `extension-release` file says it extends, read without mounting.
//!
//! An image is a bare squashfs or EROFS filesystem, or a GPT image (a "DDI") whose root
//! partition, found by its discoverable partition type, holds one. `systemd-sysext` merges
//! an image named `NAME.raw` only if it has `usr/lib/extension-release.d/extension-release.NAME`
//! (the image's name is the link's in `/etc/extensions`).

pub mod release;

use std::fs::File;
use std::io::Seek;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::disk::gpt::PartitionTable;
use crate::fs::FsKind;
use crate::fs::erofs::Erofs;
use crate::fs::image::{ImageError, ReadOnlyImage};
use crate::fs::squashfs::Squashfs;
use crate::io::Window;
pub use release::{ExtensionRelease, Host};

const RELEASE_DIR: [&str; 3] = ["usr", "lib", "extension-release.d"];
const RELEASE_PREFIX: &str = "extension-release.";
/// More extension-release files than this in one image are not read.
const RELEASES_MAX: usize = 16;

/// The discoverable partition types of a DDI's root, verity and verity signature partitions
/// (UAPI Discoverable Partitions Specification), by architecture.
const DDI_TYPES: [(&str, &str, &str); 6] = [
    ("x86-64", "root", "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"),
    ("arm64", "root", "B921B045-1DF0-41C3-AF44-4C6F280D3FAE"),
    ("x86-64", "verity", "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5"),
    ("arm64", "verity", "DF3300CE-D69F-4C92-978C-9BFB0F38D820"),
    (
        "x86-64",
        "signature",
        "41092B05-9FC8-4523-994F-2DEF0408B176",
    ),
    ("arm64", "signature", "6DB69DE6-29F4-4758-A7A5-962190F00CE3"),
];

#[derive(Debug, thiserror::Error)]
pub enum SysextError {
    #[error("{}: {source}", .file.display())]
    Image { file: PathBuf, source: ImageError },
    #[error("{}: cannot read ({source})", .file.display())]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: not a system extension image: expected squashfs (`hsqs` at byte 0), EROFS (0xE0F5E1E2 at byte 1024) or a GPT image with an x86-64 or arm64 root partition",
        .file.display()
    )]
    NotAnImage { file: PathBuf },
    #[error("{}: /usr/lib/extension-release.d/{name}: {why}", .file.display())]
    BadRelease {
        file: PathBuf,
        name: String,
        why: String,
    },
}

/// The filesystem an extension image holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "filesystem", rename_all = "lowercase")]
pub enum Filesystem {
    Squashfs { compression: &'static str },
    Erofs,
}

impl std::fmt::Display for Filesystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Filesystem::Squashfs { compression } => write!(f, "squashfs ({compression})"),
            Filesystem::Erofs => write!(f, "EROFS"),
        }
    }
}

/// A GPT image's partitions as a DDI names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ddi {
    pub architecture: &'static str,
    /// `root`, `verity`, `signature`, in the table's order.
    pub partitions: Vec<&'static str>,
}

/// What one extension image is and says.
#[derive(Debug, Clone, Serialize)]
pub struct Extension {
    pub file: PathBuf,
    /// The image's length and SHA-256 (what a profile pins it by).
    pub size: u64,
    pub sha256: String,
    /// The name systemd-sysext gives it: the file name without `.raw` (or `.sysext.raw`).
    pub name: String,
    #[serde(flatten)]
    pub filesystem: Filesystem,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ddi: Option<Ddi>,
    /// Every `extension-release.*` file the image holds, by the name after the prefix.
    pub releases: Vec<(String, ExtensionRelease)>,
    /// It holds `usr/lib/os-release`: systemd-sysext refuses such an image.
    pub has_os_release: bool,
}

impl Extension {
    /// The extension-release systemd-sysext reads when the image is named `self.name`:
    /// `extension-release.NAME`, or else the one whose suffix is the name up to its first `_`
    /// or `+` (`foo_1.2.raw` reads `extension-release.foo`). systemd also takes a file marked
    /// with the xattr `user.extension-release.strict=0`; xattrs are not read here.
    pub fn release(&self) -> Option<&ExtensionRelease> {
        let base = self.name.split(['_', '+']).next().unwrap_or_default();
        [self.name.as_str(), base].into_iter().find_map(|wanted| {
            self.releases
                .iter()
                .find(|(name, _)| name == wanted)
                .map(|(_, release)| release)
        })
    }

    /// Why systemd-sysext would not merge this image on `host`, if it would not.
    pub fn refusal(&self, host: &Host) -> Option<String> {
        if self.has_os_release {
            return Some(
                "it holds usr/lib/os-release, which systemd-sysext refuses in an extension".into(),
            );
        }
        match self.release() {
            Some(release) => release.refusal(host),
            None => Some(format!(
                "it has no extension-release.{} for that name",
                self.name
            )),
        }
    }
}

/// Reads the image at `path`; `None` if it is no extension image (neither squashfs nor EROFS,
/// nor a GPT image with a discoverable root partition), or cannot be opened: the caller's
/// own reading of it says why.
pub fn read(path: &Path) -> Result<Option<Extension>, SysextError> {
    let Ok(file) = File::open(path) else {
        return Ok(None);
    };
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return Ok(None);
    };
    let io = |source| SysextError::Io {
        file: path.to_path_buf(),
        source,
    };
    let image = |source| SysextError::Image {
        file: path.to_path_buf(),
        source,
    };
    let (ddi, start, size) = match ddi(&file, len) {
        Some((ddi, start, size)) => (Some(ddi), start, size),
        None => (None, 0, len),
    };
    let mut window = Window::new(&file, start, size);
    // What cannot be read is no extension image here; the disk reading says why.
    let detected = crate::fs::detect(&mut window)
        .ok()
        .flatten()
        .map(|f| f.kind);
    let (filesystem, (releases, has_os_release)) = match detected {
        Some(FsKind::Squashfs) => {
            let mut fs = Squashfs::open(window, size).map_err(image)?;
            let compression = fs.superblock.compressor.name();
            (
                Filesystem::Squashfs { compression },
                contents(&mut fs, path)?,
            )
        }
        Some(FsKind::Erofs) => (
            Filesystem::Erofs,
            contents(&mut Erofs::open(window, size).map_err(image)?, path)?,
        ),
        _ if ddi.is_some() => {
            return Err(SysextError::NotAnImage {
                file: path.to_path_buf(),
            });
        }
        _ => return Ok(None),
    };
    let mut hasher = crate::io::Sha256Writer::new(std::io::sink());
    // The readers above moved the shared file position.
    (&file).seek(std::io::SeekFrom::Start(0)).map_err(io)?;
    std::io::copy(&mut (&file), &mut hasher).map_err(io)?;
    let (sha256, size) = hasher.finish();
    Ok(Some(Extension {
        file: path.to_path_buf(),
        size,
        sha256,
        name: image_name(path),
        filesystem,
        ddi,
        releases,
        has_os_release,
    }))
}

/// The name systemd-sysext gives the image at `path`: its file name without `.sysext.raw`
/// or `.raw`.
fn image_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    [".sysext.raw", ".raw"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(&name)
        .to_string()
}

/// A GPT image's root partition (offset and length) and what it says of the image as a DDI.
fn ddi(file: &File, len: u64) -> Option<(Ddi, u64, u64)> {
    let mut reader = Window::new(file, 0, len);
    let table = PartitionTable::read(&mut reader, false).ok()?;
    let partitions = table.partitions();
    let kind = |type_guid: String| {
        DDI_TYPES
            .iter()
            .find(|(_, _, guid)| guid.eq_ignore_ascii_case(&type_guid))
    };
    let root = partitions
        .iter()
        .find(|p| kind(p.type_guid.to_string()).is_some_and(|(_, role, _)| *role == "root"))?;
    let (architecture, _, _) = kind(root.type_guid.to_string())?;
    let roles = partitions
        .iter()
        .filter_map(|p| kind(p.type_guid.to_string()).map(|(_, role, _)| *role))
        .collect();
    Some((
        Ddi {
            architecture,
            partitions: roles,
        },
        root.start(),
        root.len(),
    ))
}

/// Every extension-release file in the image at `path`, parsed, and whether it holds an
/// os-release.
fn contents(
    fs: &mut dyn ReadOnlyImage,
    path: &Path,
) -> Result<(Vec<(String, ExtensionRelease)>, bool), SysextError> {
    let image = |source| SysextError::Image {
        file: path.to_path_buf(),
        source,
    };
    let has_os_release = fs
        .list(&RELEASE_DIR[..2])
        .map_err(image)?
        .is_some_and(|names| names.iter().any(|n| n == "os-release"));
    let names = fs.list(&RELEASE_DIR).map_err(image)?.unwrap_or_default();
    let mut releases = Vec::new();
    for file_name in names
        .iter()
        .filter(|n| n.starts_with(RELEASE_PREFIX))
        .take(RELEASES_MAX)
    {
        let refused = |why: String| SysextError::BadRelease {
            file: path.to_path_buf(),
            name: file_name.clone(),
            why,
        };
        let mut release_path = RELEASE_DIR.to_vec();
        release_path.push(file_name);
        let bytes = fs
            .read_file(&release_path, release::RELEASE_MAX)
            .map_err(|e| match e {
                ImageError::NotAFile { .. } | ImageError::TooLarge { .. } => refused(e.to_string()),
                other => image(other),
            })?
            .unwrap_or_default();
        let text = String::from_utf8(bytes).map_err(|_| refused("expected UTF-8 text".into()))?;
        let release = ExtensionRelease::parse(&text).map_err(refused)?;
        releases.push((file_name[RELEASE_PREFIX.len()..].to_string(), release));
    }
    Ok((releases, has_os_release))
}
