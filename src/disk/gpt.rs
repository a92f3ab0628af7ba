//! The GUID partition table, read with diagnostics a user can act on and written back with
//! every slot, name, GUID and attribute bit as it was (gptman keeps entry positions; the
//! `gpt` crate would renumber Flatcar's 1,2,3,4,6,7,9).
//!
//! On-disk facts, 512-byte sectors: LBA 0 holds the MBR (boot code in bytes 0..440, four
//! 16-byte partition entries from byte 446, signature 0x55AA at 510; a protective MBR has an
//! entry of type 0xEE); LBA 1 the primary header (92 bytes: "EFI PART", revision 1.0, header
//! CRC32 at byte 16, this/alternate LBA at 24/32, usable range at 40/48, disk GUID at 56,
//! entries' LBA at 72, count at 80, entry size at 84, entries' CRC32 at 88); entries of 128
//! bytes (type GUID, unique GUID, first and last LBA, attributes, UTF-16LE name); the backup
//! header in the disk's last sector with its entries just before it.

use std::io::{self, Read, Seek, SeekFrom, Write};

use gptman::{GPT, GPTHeader, GPTPartitionEntry};

use serde::Serialize;

use super::guid::Guid;

pub(crate) const SECTOR: u64 = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Primary,
    Backup,
}

impl std::fmt::Display for Which {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Which::Primary => "primary",
            Which::Backup => "backup",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GptError {
    #[error("not a disk image: {0}")]
    NotADisk(String),
    #[error(
        "an MBR-partitioned disk, not GPT: the MBR has partitions but no protective (0xEE) entry"
    )]
    MbrOnly,
    #[error("{which} GPT header at LBA {lba} (byte {}): {problem}", lba * SECTOR)]
    Header {
        which: Which,
        lba: u64,
        problem: String,
    },
    #[error(
        "the primary GPT header is damaged ({problem}); the backup header at LBA {backup_lba} is intact"
    )]
    PrimaryDamaged { problem: String, backup_lba: u64 },
    #[error(
        "both GPT headers are damaged: the primary at LBA 1 ({primary}), the backup at LBA {backup_lba} ({backup})"
    )]
    BothDamaged {
        primary: String,
        backup: String,
        backup_lba: u64,
    },
    #[error("truncated image: the GPT says the disk is {expected} bytes, the file has {actual}")]
    Truncated { expected: u64, actual: u64 },
    #[error(
        "partition {slot} ({name}) spans LBA {first}..{last}, outside the usable LBA {usable_first}..{usable_last}"
    )]
    OutOfBounds {
        slot: u32,
        name: String,
        first: u64,
        last: u64,
        usable_first: u64,
        usable_last: u64,
    },
    #[error("partitions {a} and {b} overlap")]
    Overlap { a: u32, b: u32 },
    #[error("no partition named {0}")]
    NoPartition(String),
    #[error("cannot write the partition table: {0}")]
    Write(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// One used partition entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partition {
    /// The entry number (1-based), which Flatcar's tools rely on.
    pub slot: u32,
    pub name: String,
    pub type_guid: Guid,
    pub unique_guid: Guid,
    /// Bits 48-55 of USR-A/B are Flatcar's priority, tries and successful flags.
    pub attributes: u64,
    pub first_lba: u64,
    pub last_lba: u64,
}

impl Partition {
    pub fn start(&self) -> u64 {
        self.first_lba * SECTOR
    }

    pub fn len(&self) -> u64 {
        (self.last_lba + 1 - self.first_lba) * SECTOR
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn end(&self) -> u64 {
        self.start() + self.len()
    }
}

/// A disk's partition table.
#[derive(Debug, Clone)]
pub struct PartitionTable {
    gpt: GPT,
    /// Read from the backup header because the primary was damaged (and the user allowed it).
    pub(crate) from_backup: bool,
}

fn describe(error: &gptman::Error) -> String {
    match error {
        gptman::Error::InvalidSignature => "no \"EFI PART\" signature".into(),
        gptman::Error::InvalidRevision => "unknown revision (expected 1.0)".into(),
        gptman::Error::InvalidHeaderSize => "header size is not 92".into(),
        gptman::Error::InvalidChecksum(stored, computed) => {
            format!("header CRC32 is {stored:#010x}, but the header's bytes give {computed:#010x}")
        }
        gptman::Error::InvalidPartitionEntryArrayChecksum(stored, computed) => {
            format!(
                "partition entries CRC32 is {stored:#010x}, but the entries give {computed:#010x}"
            )
        }
        other => other.to_string(),
    }
}

fn read_header(
    disk: &mut (impl Read + Seek),
    lba: u64,
) -> Result<(GPTHeader, Vec<GPTPartitionEntry>), String> {
    disk.seek(SeekFrom::Start(lba * SECTOR))
        .map_err(|e| e.to_string())?;
    let header = GPTHeader::read_from(disk).map_err(|e| describe(&e))?;
    if header.primary_lba != lba {
        return Err(format!("says it is at LBA {}", header.primary_lba));
    }
    check_entry_array(
        header.number_of_partition_entries,
        header.size_of_partition_entry,
    )?;
    let entries = header
        .read_partitions(disk, SECTOR)
        .map_err(|e| describe(&e))?;
    Ok((header, entries))
}

/// Entry arrays larger than this are refused before anything is allocated (Flatcar's is
/// 128 entries of 128 bytes; the UEFI minimum is 16 KiB).
pub(crate) const MAX_ENTRY_ARRAY: u64 = 1 << 20;

/// The header's entry count and size, bounded as the UEFI spec allows (an entry is 128 bytes
/// times a power of two) and the array to `MAX_ENTRY_ARRAY`.
fn check_entry_array(count: u32, size: u32) -> Result<(), String> {
    if size < 128 || !size.is_power_of_two() {
        return Err(format!(
            "partition entry size {size} is not 128 times a power of two"
        ));
    }
    if u64::from(count) * u64::from(size) > MAX_ENTRY_ARRAY {
        return Err(format!(
            "{count} partition entries of {size} bytes exceed the {MAX_ENTRY_ARRAY}-byte limit"
        ));
    }
    Ok(())
}

/// The used entries of the primary GPT as `(slot, start byte, end byte)`, sorted by start,
/// from the disk's first bytes (LBA 0 onward), if they hold a primary header and its entries
/// with good CRCs and no overlaps. Used to hash partitions while an image is being
/// decompressed; the whole table is checked again, both copies, once the image is complete.
pub fn primary_layout(head: &[u8]) -> Option<Vec<(u32, u64, u64)>> {
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let header = head.get(SECTOR as usize..2 * SECTOR as usize)?;
    if &header[..8] != b"EFI PART" {
        return None;
    }
    let size = u32_at(header, 12) as usize;
    if !(92..=SECTOR as usize).contains(&size) {
        return None;
    }
    let mut copy = header[..size].to_vec();
    copy[16..20].fill(0);
    if crc.checksum(&copy) != u32_at(header, 16) {
        return None;
    }
    let (first_usable, last_usable) = (u64_at(header, 40), u64_at(header, 48));
    let entries_lba = u64_at(header, 72);
    let (count, entry_size) = (u32_at(header, 80), u32_at(header, 84));
    check_entry_array(count, entry_size).ok()?;
    let start = usize::try_from(entries_lba.checked_mul(SECTOR)?).ok()?;
    let len = count as usize * entry_size as usize;
    let entries = head.get(start..start.checked_add(len)?)?;
    if crc.checksum(entries) != u32_at(header, 88) {
        return None;
    }
    let mut used = Vec::new();
    for (i, entry) in entries.chunks_exact(entry_size as usize).enumerate() {
        if entry[..16].iter().all(|&b| b == 0) {
            continue;
        }
        let (first, last) = (u64_at(entry, 32), u64_at(entry, 40));
        if first < first_usable || last > last_usable || last < first {
            return None;
        }
        // LBAs near 2^64 / 512 are no disk's: refused, not wrapped (found by fuzzing).
        let start = first.checked_mul(SECTOR)?;
        let end = last.checked_add(1)?.checked_mul(SECTOR)?;
        used.push((i as u32 + 1, start, end));
    }
    used.sort_by_key(|&(_, start, _)| start);
    if used.windows(2).any(|w| w[1].1 < w[0].2) {
        return None;
    }
    Some(used)
}

/// A disk whose primary header (LBA 1) reads as zeros, so that gptman goes to the backup.
struct WithoutPrimary<'a, D>(&'a mut D);

impl<D: Read + Seek> Read for WithoutPrimary<'_, D> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let at = self.0.stream_position()?;
        let n = self.0.read(buf)?;
        let (start, end) = (SECTOR.max(at), (2 * SECTOR).min(at + n as u64));
        if start < end {
            buf[(start - at) as usize..(end - at) as usize].fill(0);
        }
        Ok(n)
    }
}

impl<D: Seek> Seek for WithoutPrimary<'_, D> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.0.seek(to)
    }
}

/// Checks sector 0: a protective MBR, not a plain MBR, not something else.
fn check_mbr(disk: &mut (impl Read + Seek), len: u64) -> Result<(), GptError> {
    if len < 34 * SECTOR {
        return Err(GptError::NotADisk(format!(
            "{len} bytes is too small to hold a partition table"
        )));
    }
    let mut mbr = [0u8; 512];
    disk.seek(SeekFrom::Start(0))?;
    disk.read_exact(&mut mbr)?;
    if mbr[510..512] != [0x55, 0xAA] {
        return Err(GptError::NotADisk(
            "no boot signature 0x55AA at byte 510".into(),
        ));
    }
    let types: Vec<u8> = (0..4).map(|i| mbr[446 + 16 * i + 4]).collect();
    if !types.contains(&0xEE) {
        return Err(if types.iter().any(|&t| t != 0) {
            GptError::MbrOnly
        } else {
            GptError::NotADisk("the MBR has no protective GPT entry (type 0xEE)".into())
        });
    }
    Ok(())
}

impl PartitionTable {
    /// Reads and checks both headers. A damaged primary is an error unless `allow_backup`.
    pub fn read(disk: &mut (impl Read + Seek), allow_backup: bool) -> Result<Self, GptError> {
        let len = disk.seek(SeekFrom::End(0))?;
        check_mbr(disk, len)?;
        let last_lba = len / SECTOR - 1;
        let from_backup = match read_header(disk, 1) {
            Ok((header, _)) => {
                let expected = (header.backup_lba + 1) * SECTOR;
                if expected > len {
                    return Err(GptError::Truncated {
                        expected,
                        actual: len,
                    });
                }
                read_header(disk, header.backup_lba).map_err(|problem| GptError::Header {
                    which: Which::Backup,
                    lba: header.backup_lba,
                    problem,
                })?;
                false
            }
            Err(primary_problem) => match read_header(disk, last_lba) {
                Ok(_) if !allow_backup => {
                    return Err(GptError::PrimaryDamaged {
                        problem: primary_problem,
                        backup_lba: last_lba,
                    });
                }
                Ok(_) => true,
                Err(backup_problem)
                    if backup_problem.contains("EFI PART")
                        && primary_problem.contains("EFI PART") =>
                {
                    return Err(GptError::NotADisk(
                        "no GPT header at LBA 1 or at the last sector".into(),
                    ));
                }
                Err(backup_problem) => {
                    return Err(GptError::BothDamaged {
                        primary: primary_problem,
                        backup: backup_problem,
                        backup_lba: last_lba,
                    });
                }
            },
        };
        // Both copies were checked above, by our bounds; gptman reads the primary, and writes
        // both back in their places. When the primary is the damaged one, gptman is shown a
        // disk without it: given a primary whose CRC is right but whose entry array is not
        // (0xFFFFFFFF entries, or entries of 0 bytes), it would read it and allocate or panic.
        let read = if from_backup {
            GPT::read_from(&mut WithoutPrimary(disk), SECTOR)
        } else {
            GPT::read_from(disk, SECTOR)
        };
        let gpt = read.map_err(|e| GptError::Header {
            which: if from_backup {
                Which::Backup
            } else {
                Which::Primary
            },
            lba: if from_backup { last_lba } else { 1 },
            problem: describe(&e),
        })?;
        let table = PartitionTable { gpt, from_backup };
        table.check_bounds()?;
        Ok(table)
    }

    fn check_bounds(&self) -> Result<(), GptError> {
        let header = &self.gpt.header;
        let mut used = self.partitions();
        for p in &used {
            if p.first_lba < header.first_usable_lba
                || p.last_lba > header.last_usable_lba
                || p.last_lba < p.first_lba
            {
                return Err(GptError::OutOfBounds {
                    slot: p.slot,
                    name: p.name.clone(),
                    first: p.first_lba,
                    last: p.last_lba,
                    usable_first: header.first_usable_lba,
                    usable_last: header.last_usable_lba,
                });
            }
        }
        used.sort_by_key(|p| p.first_lba);
        for pair in used.windows(2) {
            if pair[1].first_lba <= pair[0].last_lba {
                return Err(GptError::Overlap {
                    a: pair[0].slot,
                    b: pair[1].slot,
                });
            }
        }
        Ok(())
    }

    pub fn disk_guid(&self) -> Guid {
        Guid(self.gpt.header.disk_guid)
    }

    pub(crate) fn last_usable_lba(&self) -> u64 {
        self.gpt.header.last_usable_lba
    }

    /// Used entries, by slot.
    pub fn partitions(&self) -> Vec<Partition> {
        self.gpt
            .iter()
            .filter(|(_, e)| e.is_used())
            .map(|(slot, e)| Partition {
                slot,
                name: e.partition_name.as_str().to_string(),
                type_guid: Guid(e.partition_type_guid),
                unique_guid: Guid(e.unique_partition_guid),
                attributes: e.attribute_bits,
                first_lba: e.starting_lba,
                last_lba: e.ending_lba,
            })
            .collect()
    }

    pub fn by_name(&self, name: &str) -> Result<Partition, GptError> {
        self.partitions()
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| GptError::NoPartition(name.to_string()))
    }

    /// Moves the backup header to the end of a disk that is now `len` bytes long.
    pub(crate) fn grow_to(&mut self, len: u64) {
        let last = len / SECTOR - 1;
        let entries_sectors = (u64::from(self.gpt.header.number_of_partition_entries)
            * u64::from(self.gpt.header.size_of_partition_entry))
        .div_ceil(SECTOR);
        self.gpt.header.backup_lba = last;
        self.gpt.header.last_usable_lba = last - entries_sectors - 1;
    }

    /// Sets a partition entry (used by layout changes).
    pub fn set(&mut self, partition: &Partition) -> Result<(), GptError> {
        let count = self.gpt.header.number_of_partition_entries;
        if partition.slot == 0 || partition.slot > count {
            return Err(GptError::Write(format!(
                "slot {} is outside 1..={count}",
                partition.slot
            )));
        }
        let entry = &mut self.gpt[partition.slot];
        entry.partition_type_guid = partition.type_guid.0;
        entry.unique_partition_guid = partition.unique_guid.0;
        entry.starting_lba = partition.first_lba;
        entry.ending_lba = partition.last_lba;
        entry.attribute_bits = partition.attributes;
        entry.partition_name = partition.name.as_str().into();
        Ok(())
    }

    /// Writes both headers and entry arrays to a disk of `len` bytes, and keeps the
    /// protective MBR's size field in step with it (the MBR's boot code is left alone).
    pub fn write(
        &mut self,
        disk: &mut (impl Read + Write + Seek),
        len: u64,
    ) -> Result<(), GptError> {
        self.check_bounds()?;
        self.gpt
            .write_into(disk)
            .map_err(|e| GptError::Write(describe(&e)))?;
        let mut mbr = [0u8; 512];
        disk.seek(SeekFrom::Start(0))?;
        disk.read_exact(&mut mbr)?;
        for i in 0..4 {
            let entry = 446 + 16 * i;
            if mbr[entry + 4] == 0xEE {
                let sectors = (len / SECTOR - 1).min(u64::from(u32::MAX)) as u32;
                mbr[entry + 12..entry + 16].copy_from_slice(&sectors.to_le_bytes());
            }
        }
        disk.seek(SeekFrom::Start(0))?;
        disk.write_all(&mbr)?;
        disk.flush()?;
        self.from_backup = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// A primary header whose one entry spans LBAs whose byte offsets do not fit in 64 bits,
    /// with both CRCs right (the fuzzer's finding: `first * 512` overflowed).
    fn head_with_entry(first: u64, last: u64) -> Vec<u8> {
        let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
        let mut head = vec![0u8; 1024 + 128];
        let h = 512;
        head[h..h + 8].copy_from_slice(b"EFI PART");
        head[h + 12..h + 16].copy_from_slice(&92u32.to_le_bytes());
        head[h + 48..h + 56].copy_from_slice(&u64::MAX.to_le_bytes());
        head[h + 72..h + 80].copy_from_slice(&2u64.to_le_bytes());
        head[h + 80..h + 84].copy_from_slice(&1u32.to_le_bytes());
        head[h + 84..h + 88].copy_from_slice(&128u32.to_le_bytes());
        let e = 1024;
        head[e..e + 16].copy_from_slice(&[0xAB; 16]);
        head[e + 32..e + 40].copy_from_slice(&first.to_le_bytes());
        head[e + 40..e + 48].copy_from_slice(&last.to_le_bytes());
        let entries = crc.checksum(&head[e..e + 128]);
        head[h + 88..h + 92].copy_from_slice(&entries.to_le_bytes());
        let header = crc.checksum(&head[h..h + 92]);
        head[h + 16..h + 20].copy_from_slice(&header.to_le_bytes());
        head
    }

    #[test]
    fn entries_past_the_64_bit_byte_range_are_refused_not_wrapped() {
        assert_eq!(
            super::primary_layout(&head_with_entry(34, 2047)),
            Some(vec![(1, 34 * 512, 2048 * 512)])
        );
        assert_eq!(
            super::primary_layout(&head_with_entry(u64::MAX / 256, u64::MAX / 256)),
            None
        );
        assert_eq!(super::primary_layout(&head_with_entry(34, u64::MAX)), None);
    }
}
