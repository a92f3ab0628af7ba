//! What is in a disk image: the partition table, each partition's filesystem, and Flatcar's
//! boot flags. Works on raw images and on compressed ones (decompressed to a temporary file).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::disk::{self, Compression, DiskError, Guid, Window, types};
use crate::fs::{self, FsInfo};
use crate::io::At;
use crate::progress::Progress;

#[derive(Debug, Clone, Serialize)]
pub struct DiskReport {
    pub file: PathBuf,
    pub compression: Compression,
    /// Raw size in bytes.
    pub size: u64,
    pub disk_guid: Guid,
    /// The primary header was damaged and the backup was used.
    pub table_from_backup: bool,
    pub partitions: Vec<PartitionReport>,
    /// `flatcar/first_boot` or `coreos/first_boot` on the EFI system partition.
    pub first_boot_flag: Option<String>,
    /// What the OEM partition's btrfs holds (where Flatcar finds a baked config).
    pub oem_files: Option<Vec<OemFile>>,
    /// Why the OEM files could not be listed, if they could not.
    pub oem_error: Option<String>,
    /// What the OEM filesystem holds besides the files listed (subvolumes, hard links).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub oem_not_listed: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OemFile {
    pub path: String,
    /// `file`, `dir` or `symlink`.
    pub kind: &'static str,
    pub mode: String,
    pub size: u64,
    /// SHA-256 of a file's contents.
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionReport {
    pub slot: u32,
    pub name: String,
    pub type_guid: Guid,
    pub type_name: Option<&'static str>,
    pub unique_guid: Guid,
    pub attributes: String,
    /// Flatcar's update flags on USR partitions.
    pub usr_flags: Option<UsrFlags>,
    pub first_lba: u64,
    pub last_lba: u64,
    pub offset: u64,
    pub size: u64,
    pub filesystem: Option<FsInfo>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct UsrFlags {
    pub priority: u8,
    pub tries: u8,
    pub successful: bool,
}

pub fn type_name(guid: &Guid) -> Option<&'static str> {
    let text = guid.to_string();
    Some(match text.as_str() {
        types::EFI_SYSTEM => "EFI system",
        types::BIOS_BOOT => "BIOS boot",
        types::FLATCAR_USR => "Flatcar /usr",
        types::LINUX_DATA => "Linux data",
        types::FLATCAR_RESERVED => "Flatcar reserved",
        types::FLATCAR_ROOT => "Flatcar root",
        _ => return None,
    })
}

pub fn inspect(
    path: &Path,
    allow_backup: bool,
    progress: &dyn Progress,
) -> Result<DiskReport, DiskError> {
    let compression = disk::decompress::detect_file(path).at(path)?;
    let temp_dir;
    let raw = if compression == Compression::None {
        path.to_path_buf()
    } else {
        temp_dir = TempDir::new().at(path)?;
        let raw = temp_dir.0.join("image.raw");
        let label = path.display().to_string();
        disk::decompress::decompress_to_sparse(path, &label, &raw, false, progress)?;
        raw
    };
    let (file, table) = disk::open_table(&raw, allow_backup).map_err(|e| match e {
        DiskError::Gpt { source, .. } => DiskError::Gpt {
            file: path.display().to_string(),
            source,
        },
        other => other,
    })?;
    let size = file.metadata().at(path)?.len();
    let mut first_boot_flag = None;
    let mut partitions = Vec::new();
    for p in table.partitions() {
        let mut window = Window::new(&file, p.start(), p.len());
        let filesystem = fs::detect(&mut window).at(path)?;
        if p.type_guid.to_string() == types::EFI_SYSTEM
            && filesystem
                .as_ref()
                .is_some_and(|f| f.kind == fs::FsKind::Vfat)
        {
            // fatfs wants Write too; a read-only handle refuses any write it might try.
            let window = Window::new(crate::io::ReadOnly::new(&file), p.start(), p.len());
            first_boot_flag = fs::fat::first_boot_flag(window)
                .ok()
                .flatten()
                .map(str::to_string);
        }
        let usr_flags = (p.type_guid.to_string() == types::FLATCAR_USR).then_some(UsrFlags {
            priority: ((p.attributes >> 48) & 0xF) as u8,
            tries: ((p.attributes >> 52) & 0xF) as u8,
            successful: (p.attributes >> 56) & 1 == 1,
        });
        partitions.push(PartitionReport {
            slot: p.slot,
            type_name: type_name(&p.type_guid),
            type_guid: p.type_guid,
            unique_guid: p.unique_guid,
            attributes: format!("{:#018x}", p.attributes),
            usr_flags,
            first_lba: p.first_lba,
            last_lba: p.last_lba,
            offset: p.start(),
            size: p.len(),
            filesystem,
            name: p.name,
        });
    }
    let mut oem_not_listed = Vec::new();
    let (oem_files, oem_error) = match partitions.iter().find(|p| p.name == "OEM") {
        Some(oem)
            if oem
                .filesystem
                .as_ref()
                .is_some_and(|f| f.kind == fs::FsKind::Btrfs) =>
        {
            match fs::btrfs::list_partition(&file, oem.offset, oem.size) {
                Ok((tree, omitted)) => {
                    oem_not_listed = omitted.iter().map(|o| o.to_string()).collect();
                    (Some(oem_listing(&tree)), None)
                }
                Err(e) => (None, Some(e.to_string())),
            }
        }
        Some(_) => (
            None,
            Some("the OEM partition holds no btrfs filesystem".into()),
        ),
        None => (None, None),
    };
    Ok(DiskReport {
        oem_files,
        oem_error,
        oem_not_listed,
        file: path.to_path_buf(),
        compression,
        size,
        disk_guid: table.disk_guid(),
        table_from_backup: table.from_backup,
        partitions,
        first_boot_flag,
    })
}

/// A private temporary folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<Self> {
        let base = std::env::temp_dir();
        for attempt in 0..100u32 {
            let path = base.join(format!("kato-image-{}-{attempt}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other("cannot make a temporary folder"))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn oem_listing(tree: &fs::tree::FileTree) -> Vec<OemFile> {
    use sha2::Digest;
    tree.walk()
        .into_iter()
        .map(|(path, entry)| {
            let (kind, size, sha256) = match &entry.kind {
                fs::tree::Kind::File(fs::tree::Contents::Bytes(data)) => (
                    "file",
                    data.len() as u64,
                    Some(crate::cache::hex(&sha2::Sha256::digest(data))),
                ),
                fs::tree::Kind::File(contents) => ("file", contents.len(), None),
                fs::tree::Kind::Dir(_) => ("dir", 0, None),
                fs::tree::Kind::Symlink(target) => ("symlink", target.len() as u64, None),
            };
            OemFile {
                path: String::from_utf8_lossy(&path).into_owned(),
                kind,
                mode: format!("{:04o}", entry.meta.mode),
                size,
                sha256,
            }
        })
        .collect()
}
