//! GPT headers and entry arrays of a vendor or user disk image: the input as it is, and the
//! input with its primary header made to check out (signature, size and both CRC-32s
//! recomputed), so that the fuzzer reaches the entry array and the table's checks instead
//! of stopping at the header's CRC, as a forged image would.
#![no_main]
use kato_image::disk::gpt::PartitionTable;
use libfuzzer_sys::fuzz_target;

fn read(data: &[u8]) {
    for allow_backup in [false, true] {
        if let Ok(table) = PartitionTable::read(&mut std::io::Cursor::new(data), allow_backup) {
            for partition in table.partitions() {
                assert!(partition.start() <= partition.end());
            }
        }
    }
    let _ = kato_image::disk::gpt::primary_layout(data);
}

/// Header at byte 512: "EFI PART", revision 1.0, size 92, CRC at 16 (over the header with
/// the CRC zeroed), entries' LBA at 72, count at 80, entry size at 84, entries' CRC at 88.
fn forged(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < 1024 {
        return None;
    }
    let mut disk = data.to_vec();
    let header = 512;
    disk[header..header + 8].copy_from_slice(b"EFI PART");
    disk[header + 8..header + 12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    disk[header + 12..header + 16].copy_from_slice(&92u32.to_le_bytes());
    disk[header + 24..header + 32].copy_from_slice(&1u64.to_le_bytes());
    let field =
        |at: usize| u32::from_le_bytes(disk[header + at..header + at + 4].try_into().unwrap());
    let lba = u64::from_le_bytes(disk[header + 72..header + 80].try_into().unwrap());
    let entries = (field(80) as u64).checked_mul(field(84) as u64)?;
    let start = lba.checked_mul(512)?;
    let end = start.checked_add(entries)?;
    if end <= disk.len() as u64 {
        let crc = crc32(&disk[start as usize..end as usize]);
        disk[header + 88..header + 92].copy_from_slice(&crc.to_le_bytes());
    }
    disk[header + 16..header + 20].copy_from_slice(&[0; 4]);
    let crc = crc32(&disk[header..header + 92]);
    disk[header + 16..header + 20].copy_from_slice(&crc.to_le_bytes());
    Some(disk)
}

/// CRC-32 (IEEE), as GPT uses: the same crate the reader checks with.
fn crc32(bytes: &[u8]) -> u32 {
    crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(bytes)
}

fuzz_target!(|data: &[u8]| {
    read(data);
    if let Some(disk) = forged(data) {
        read(&disk);
    }
});
