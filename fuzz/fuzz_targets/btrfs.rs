//! A btrfs filesystem written by anyone: superblock, chunk map, trees, inodes and extents.
//! The input is read as it is, and again with its checksums made to check out (the
//! superblock's at 64 KiB, and every node-sized block's that carries the filesystem's fsid
//! as a tree block does), so that mutations reach the chunk map and the trees instead of
//! stopping at a CRC-32C. Seeds: real filesystems packed small (scripts/btrfs-fuzz-seed).
#![no_main]
use kato_image::fs::btrfs::Filesystem;
use libfuzzer_sys::fuzz_target;

const SUPER: usize = 0x10000;
const SUPER_SIZE: usize = 4096;

fn read(data: &[u8]) {
    if let Ok(mut fs) = Filesystem::open(std::io::Cursor::new(data)) {
        let _ = fs.read_tree();
    }
}

fn forged(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < SUPER + SUPER_SIZE {
        return None;
    }
    let mut disk = data.to_vec();
    disk[SUPER + 0x40..SUPER + 0x48].copy_from_slice(b"_BHRfS_M");
    disk[SUPER + 0xc4..SUPER + 0xc6].copy_from_slice(&[0, 0]);
    let nodesize =
        u32::from_le_bytes(disk[SUPER + 0x94..SUPER + 0x98].try_into().unwrap()) as usize;
    if nodesize.is_power_of_two() && (4096..=65536).contains(&nodesize) {
        let fsid: [u8; 16] = disk[SUPER + 0x20..SUPER + 0x30].try_into().unwrap();
        for start in (0..disk.len()).step_by(nodesize) {
            let end = start + nodesize;
            // Only what claims to be a tree block of this filesystem (its fsid at 0x20):
            // a CRC of every block of data made checksumming half the harness's time.
            if end > disk.len()
                || (start..end).contains(&SUPER)
                || disk[start + 0x20..start + 0x30] != fsid
            {
                continue;
            }
            let crc = crc32c::crc32c(&disk[start + 32..end]);
            disk[start..start + 4].copy_from_slice(&crc.to_le_bytes());
        }
    }
    let crc = crc32c::crc32c(&disk[SUPER + 32..SUPER + SUPER_SIZE]);
    disk[SUPER..SUPER + 4].copy_from_slice(&crc.to_le_bytes());
    Some(disk)
}

fuzz_target!(|data: &[u8]| {
    read(data);
    if let Some(disk) = forged(data) {
        read(&disk);
    }
});
