//! What a role build puts into the OEM filesystem: the Ignition config where Flatcar's initrd
//! looks for it (`config.ign` at the root), and kernel arguments appended to the `grub.cfg`
//! GRUB sources from the OEM partition, keeping every line that was there (e.g. `oem_id`).

use serde::{Deserialize, Serialize};

use crate::cache::ArtifactRecord;
use crate::fs::tree::{Contents, Entry, FileTree, Kind, Meta, Timespec, TreeError};

pub(crate) const CONFIG_PATH: &str = "config.ign";
/// A config carries keys and tokens: root's alone, as `flatcar-install` writes it (`umask
/// 077`), in the OEM filesystem and in the PXE overlay alike.
pub(crate) const CONFIG_MODE: u32 = 0o600;
pub(crate) const GRUB_CFG_PATH: &str = "grub.cfg";

#[derive(Debug, thiserror::Error)]
pub enum OemError {
    #[error("the OEM partition's {CONFIG_PATH} or {GRUB_CFG_PATH} cannot be placed: {0}")]
    Tree(#[from] TreeError),
    #[error("the OEM partition's {GRUB_CFG_PATH} is not a regular file")]
    GrubCfgNotAFile,
}

/// The lines appended to `grub.cfg` for `kernel_args` (already checked to contain no
/// quotes, `$`, `;`, backslashes or white space).
pub(crate) fn grub_lines(role: &str, kernel_args: &[String]) -> String {
    if kernel_args.is_empty() {
        return String::new();
    }
    format!(
        "\n# Added by kato-image for role {role}\nset linux_append=\"$linux_append {}\"\n",
        kernel_args.join(" ")
    )
}

/// Puts the config (root's, 0600) and kernel arguments into an OEM tree. New files are root-owned 0644 with
/// times `time`; an existing `grub.cfg` keeps its metadata and contents, with lines added.
pub fn bake(
    tree: &mut FileTree,
    config: &[u8],
    role: &str,
    kernel_args: &[String],
    time: Timespec,
) -> Result<(), OemError> {
    let file_meta = Meta::new(0o644, time);
    let dir_meta = Meta::new(0o755, time);
    tree.insert(
        CONFIG_PATH,
        Entry::file(Meta::new(CONFIG_MODE, time), config.to_vec()),
        &dir_meta,
    )?;
    let lines = grub_lines(role, kernel_args);
    if lines.is_empty() {
        return Ok(());
    }
    let (meta, mut text) = match tree.get(GRUB_CFG_PATH) {
        Some(Entry {
            meta,
            kind: Kind::File(Contents::Bytes(bytes)),
        }) => (meta.clone(), bytes.clone()),
        Some(_) => return Err(OemError::GrubCfgNotAFile),
        None => (file_meta, Vec::new()),
    };
    if !text.is_empty() && !text.ends_with(b"\n") {
        text.push(b'\n');
    }
    text.extend_from_slice(lines.trim_start_matches('\n').as_bytes());
    tree.insert(GRUB_CFG_PATH, Entry::file(meta, text), &dir_meta)?;
    Ok(())
}

/// The OEM sysext installed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OemRecord {
    /// The release file (`oem-gce.raw`), its SHA-512, size and signature.
    #[serde(flatten)]
    pub artifact: ArtifactRecord,
    /// Where it is in the OEM filesystem.
    pub installed_as: String,
}

/// A platform's OEM, as it goes into the OEM filesystem.
pub struct PlatformOem<'a> {
    pub platform: crate::platform::Platform,
    /// The verified `oem-<id>.raw` (read when the filesystem is written).
    pub sysext: &'a std::path::Path,
    pub(crate) sysext_len: u64,
    /// The Flatcar version: the initrd looks for `oem-<id>-<version>.raw`.
    pub version: &'a str,
    /// For the manifest.
    pub record: OemRecord,
}

/// Installs a platform's OEM as Flatcar's image build does: the sysext under
/// `sysext/oem-<id>-<version>.raw`, the empty `sysext/active-oem-<id>`, `oem-release` with
/// `ID=<id>`, and the platform's `grub.cfg` in place of the generic one (the role's kernel
/// arguments are appended to it afterwards by [`bake`]). Another OEM's sysexts and marker
/// are removed, so only one is active.
pub(crate) fn install_platform(
    tree: &mut FileTree,
    oem: &PlatformOem,
    time: Timespec,
) -> Result<(), OemError> {
    let file_meta = Meta::new(0o644, time);
    let dir_meta = Meta::new(0o755, time);
    let platform = oem.platform;
    if let Some(Entry {
        kind: Kind::Dir(children),
        ..
    }) = tree.get_mut(SYSEXT_DIR)
    {
        children.retain(|name, _| {
            let name = String::from_utf8_lossy(name);
            !(name.starts_with("active-oem-") || name.starts_with("oem-") && name.ends_with(".raw"))
        });
    }
    tree.insert(
        &platform.sysext_path(oem.version),
        Entry {
            meta: file_meta.clone(),
            kind: Kind::File(Contents::Host {
                path: oem.sysext.to_path_buf(),
                len: oem.sysext_len,
            }),
        },
        &dir_meta,
    )?;
    tree.insert(
        &platform.active_path(),
        Entry::file(file_meta.clone(), Vec::new()),
        &dir_meta,
    )?;
    tree.insert(
        OEM_RELEASE_PATH,
        Entry::file(
            file_meta.clone(),
            platform.oem_release(oem.version).into_bytes(),
        ),
        &dir_meta,
    )?;
    tree.insert(
        GRUB_CFG_PATH,
        Entry::file(file_meta, platform.grub_cfg().into_bytes()),
        &dir_meta,
    )?;
    Ok(())
}

pub(crate) const OEM_RELEASE_PATH: &str = "oem-release";
const SYSEXT_DIR: &str = "sysext";
