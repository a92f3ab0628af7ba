//! Which filesystem a partition holds, by magic numbers at documented offsets, with its label
//! and UUID.
//!
//! - btrfs: superblock at 64 KiB; magic `_BHRfS_M` at +0x40, fsid at +0x20, label at +0x12B.
//! - ext2/3/4: superblock at 1 KiB; magic 0xEF53 at +0x38, UUID at +0x68, label at +0x78,
//!   compat features at +0x5C (journal 0x4), incompat at +0x60 (extents 0x40, 64bit 0x80).
//! - squashfs: magic `hsqs` at 0 (no label or UUID);
//! - EROFS: superblock at 1 KiB; magic 0xE0F5E1E2 at +0, UUID at +0x30, volume name at +0x40;
//! - FAT: boot sector ending 0x55AA; FAT32 has "FAT32   " at 0x52, serial at 0x43, label at
//!   0x47; FAT12/16 have "FAT1" at 0x36, serial at 0x27, label at 0x2B.

use std::io::{self, Read, Seek, SeekFrom};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsKind {
    Vfat,
    Btrfs,
    Ext2,
    Ext3,
    Ext4,
    Squashfs,
    Erofs,
}

impl FsKind {
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Vfat => "vfat",
            FsKind::Btrfs => "btrfs",
            FsKind::Ext2 => "ext2",
            FsKind::Ext3 => "ext3",
            FsKind::Ext4 => "ext4",
            FsKind::Squashfs => "squashfs",
            FsKind::Erofs => "erofs",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FsInfo {
    pub kind: FsKind,
    pub label: Option<String>,
    pub uuid: Option<String>,
}

fn read_at(disk: &mut (impl Read + Seek), offset: u64, buf: &mut [u8]) -> io::Result<bool> {
    disk.seek(SeekFrom::Start(offset))?;
    let mut filled = 0;
    while filled < buf.len() {
        match disk.read(&mut buf[filled..])? {
            0 => return Ok(false),
            n => filled += n,
        }
    }
    Ok(true)
}

fn text(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let label = String::from_utf8_lossy(&bytes[..end])
        .trim_end()
        .to_string();
    (!label.is_empty()).then_some(label)
}

fn uuid(b: &[u8]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[0],
        b[1],
        b[2],
        b[3],
        b[4],
        b[5],
        b[6],
        b[7],
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    )
}

/// The filesystem at the start of `partition`, if one is recognised.
pub fn detect(partition: &mut (impl Read + Seek)) -> io::Result<Option<FsInfo>> {
    let mut block = vec![0u8; 4096];
    // First the two whose magic is at a fixed place before the others': an EROFS
    // superblock's UUID covers the bytes where ext looks for its magic.
    if read_at(partition, 1024, &mut block[..128])? && block[..4] == 0xE0F5_E1E2u32.to_le_bytes() {
        return Ok(Some(FsInfo {
            kind: FsKind::Erofs,
            label: text(&block[0x40..0x50]),
            uuid: Some(uuid(&block[0x30..0x40])),
        }));
    }
    if read_at(partition, 0, &mut block[..4])? && &block[..4] == b"hsqs" {
        return Ok(Some(FsInfo {
            kind: FsKind::Squashfs,
            label: None,
            uuid: None,
        }));
    }
    if read_at(partition, 0x10000, &mut block)? && &block[0x40..0x48] == b"_BHRfS_M" {
        return Ok(Some(FsInfo {
            kind: FsKind::Btrfs,
            label: text(&block[0x12B..0x12B + 256]),
            uuid: Some(uuid(&block[0x20..0x30])),
        }));
    }
    if read_at(partition, 1024, &mut block[..1024])? && block[0x38..0x3A] == [0x53, 0xEF] {
        let compat = u32::from_le_bytes(block[0x5C..0x60].try_into().expect("4 bytes"));
        let incompat = u32::from_le_bytes(block[0x60..0x64].try_into().expect("4 bytes"));
        let kind = if incompat & (0x40 | 0x80) != 0 {
            FsKind::Ext4
        } else if compat & 0x4 != 0 {
            FsKind::Ext3
        } else {
            FsKind::Ext2
        };
        return Ok(Some(FsInfo {
            kind,
            label: text(&block[0x78..0x88]),
            uuid: Some(uuid(&block[0x68..0x78])),
        }));
    }
    if read_at(partition, 0, &mut block[..512])? && block[510..512] == [0x55, 0xAA] {
        let (serial, label) = if &block[0x52..0x5A] == b"FAT32   " {
            (0x43, 0x47)
        } else if &block[0x36..0x3A] == b"FAT1" {
            (0x27, 0x2B)
        } else {
            return Ok(None);
        };
        let id = u32::from_le_bytes(block[serial..serial + 4].try_into().expect("4 bytes"));
        let label = text(&block[label..label + 11]).filter(|l| l != "NO NAME");
        return Ok(Some(FsInfo {
            kind: FsKind::Vfat,
            label,
            uuid: Some(format!("{:04X}-{:04X}", id >> 16, id & 0xFFFF)),
        }));
    }
    Ok(None)
}
