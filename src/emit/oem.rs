//! What a role build puts into the OEM filesystem: the Ignition config where Flatcar's initrd
//! looks for it (`config.ign` at the root), and kernel arguments appended to the `grub.cfg`
//! GRUB sources from the OEM partition, keeping every line that was there (e.g. `oem_id`).

use crate::fs::tree::{Contents, Entry, FileTree, Kind, Meta, Timespec, TreeError};

pub const CONFIG_PATH: &str = "config.ign";
pub const GRUB_CFG_PATH: &str = "grub.cfg";

#[derive(Debug, thiserror::Error)]
pub enum OemError {
    #[error("the OEM partition's {CONFIG_PATH} or {GRUB_CFG_PATH} cannot be placed: {0}")]
    Tree(#[from] TreeError),
    #[error("the OEM partition's {GRUB_CFG_PATH} is not a regular file")]
    GrubCfgNotAFile,
}

/// The lines appended to `grub.cfg` for `kernel_args` (already checked to contain no
/// quotes, `$`, `;`, backslashes or white space).
pub fn grub_lines(role: &str, kernel_args: &[String]) -> String {
    if kernel_args.is_empty() {
        return String::new();
    }
    format!(
        "\n# Added by kato-image for role {role}\nset linux_append=\"$linux_append {}\"\n",
        kernel_args.join(" ")
    )
}

/// Puts the config and kernel arguments into an OEM tree. New files are root-owned 0644 with
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
        Entry::file(file_meta.clone(), config.to_vec()),
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
