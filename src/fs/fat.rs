//! Reading the EFI system partition (FAT) with fatfs.

use std::io::{Read, Seek, Write};

/// Flag files that make Flatcar's GRUB add `flatcar.first_boot=detected`, newest first.
pub(crate) const FIRST_BOOT_FLAGS: &[&str] = &["flatcar/first_boot", "coreos/first_boot"];

#[derive(Debug, thiserror::Error)]
#[error("EFI system partition: {0}")]
pub(crate) struct FatError(String);

/// Which first-boot flag file the FAT filesystem holds, if any.
pub fn first_boot_flag<T: Read + Write + Seek>(
    partition: T,
) -> Result<Option<&'static str>, FatError> {
    let fs = fatfs::FileSystem::new(partition, fatfs::FsOptions::new())
        .map_err(|e| FatError(e.to_string()))?;
    let root = fs.root_dir();
    Ok(FIRST_BOOT_FLAGS
        .iter()
        .copied()
        .find(|path| root.open_file(path).is_ok()))
}
