//! Layout changes: a new partition before ROOT, made by moving ROOT's bytes further out, and
//! a larger disk. ROOT stays last, so Flatcar's first boot can still grow it to the disk.

use super::Tracked;
use super::gpt::{GptError, Partition, PartitionTable, SECTOR};
use super::guid::Guid;

/// Partitions start on 2 MiB boundaries, as in Flatcar's own layout.
pub(crate) const ALIGN: u64 = 2 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{0}")]
    Gpt(#[from] GptError),
    #[error("slot {0} is already used by {1}")]
    SlotTaken(u32, String),
    #[error("ROOT is not the last partition ({0} ends after it)")]
    RootNotLast(String),
    #[error("the disk is {from} bytes and cannot be made {to} bytes (whole sectors, not smaller)")]
    Shrink { from: u64, to: u64 },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What to add.
#[derive(Debug, Clone)]
pub struct NewPartition {
    pub slot: u32,
    pub name: String,
    pub type_guid: Guid,
    pub unique_guid: Guid,
    /// Rounded up to `ALIGN`.
    pub size: u64,
}

/// Inserts `new` where ROOT starts and moves ROOT (its data extents only; holes stay holes)
/// `new.size` further out. Returns the new partition.
pub fn insert_before_root(
    disk: &mut Tracked,
    table: &mut PartitionTable,
    new: &NewPartition,
) -> Result<Partition, LayoutError> {
    let root = table.by_name("ROOT")?;
    let partitions = table.partitions();
    if let Some(taken) = partitions.iter().find(|p| p.slot == new.slot) {
        return Err(LayoutError::SlotTaken(new.slot, taken.name.clone()));
    }
    if let Some(after) = partitions.iter().find(|p| p.first_lba > root.last_lba) {
        return Err(LayoutError::RootNotLast(after.name.clone()));
    }
    let shift = new.size.div_ceil(ALIGN) * ALIGN;
    let old_len = disk.len()?;
    let new_len = old_len + shift;
    disk.set_len(new_len)?;

    // Back to front, so no source bytes are overwritten before they are copied; holes in
    // the source become holes in the destination.
    let (start, end) = (root.start(), root.end());
    let extents = disk.data_extents(start, end)?;
    disk.punch_hole(end, shift)?;
    let mut cursor = end;
    for &(offset, length) in extents.iter().rev() {
        let data_end = offset + length;
        if data_end < cursor {
            disk.punch_hole(data_end + shift, cursor - data_end)?;
        }
        let mut done = length;
        while done > 0 {
            let step = done.min(shift).min(64 << 20);
            let from = offset + done - step;
            disk.copy_within(from, from + shift, step)?;
            done -= step;
        }
        cursor = offset;
    }
    if cursor > start {
        disk.punch_hole(start + shift, cursor - start)?;
    }
    // The new partition starts empty.
    disk.punch_hole(start, shift)?;

    table.grow_to(new_len);
    let moved_root = Partition {
        first_lba: root.first_lba + shift / SECTOR,
        last_lba: root.last_lba + shift / SECTOR,
        ..root.clone()
    };
    let added = Partition {
        slot: new.slot,
        name: new.name.clone(),
        type_guid: new.type_guid,
        unique_guid: new.unique_guid,
        attributes: 0,
        first_lba: root.first_lba,
        last_lba: root.first_lba + shift / SECTOR - 1,
    };
    table.set(&moved_root)?;
    table.set(&added)?;
    table.write(disk, new_len)?;
    Ok(added)
}

/// Grows the disk to `new_len` bytes (a whole number of sectors, not smaller than now),
/// moving the backup header to the new end and leaving every partition as it was: ROOT ends
/// where the vendor's image ends it, with the new space free after it. Flatcar's first boot
/// grows ROOT into that space and then its ext4 (`extend-filesystems`: `cgpt resize`, then
/// `resize2fs` only if the partition grew); a ROOT entry grown here would leave its ext4 at
/// the image's size for good. The old backup header's sectors become a hole, so nothing
/// finds a stale table there. Returns ROOT.
pub(crate) fn grow_disk(
    disk: &mut Tracked,
    table: &mut PartitionTable,
    new_len: u64,
) -> Result<Partition, LayoutError> {
    let root = table.by_name("ROOT")?;
    if let Some(after) = table
        .partitions()
        .iter()
        .find(|p| p.first_lba > root.last_lba)
    {
        return Err(LayoutError::RootNotLast(after.name.clone()));
    }
    let old_len = disk.len()?;
    if !new_len.is_multiple_of(SECTOR) || new_len < old_len {
        return Err(LayoutError::Shrink {
            from: old_len,
            to: new_len,
        });
    }
    if new_len == old_len {
        return Ok(root);
    }
    let backup_start = (table.last_usable_lba() + 1) * SECTOR;
    disk.set_len(new_len)?;
    disk.punch_hole(backup_start, old_len - backup_start)?;
    table.grow_to(new_len);
    table.write(disk, new_len)?;
    Ok(root)
}
