//! Fixed VHD (Virtual Hard Disk 1.0, as Azure takes it): the raw disk followed by a 512-byte
//! footer. The raw part stays as it is on disk (holes stay holes).
//!
//! Readers disagree on a VHD's size: Hyper-V and Azure take the footer's current size,
//! Virtual PC and QEMU (for creators it does not know) the CHS geometry, which usually
//! rounds down. [`exact_size`] picks a disk size, a whole number of MiB as Azure requires,
//! whose geometry covers it exactly (past about 127.5 GiB, where the geometry is at its
//! largest, readers take the footer's size), so every reader sees the same disk.
//!
//! Footer (big-endian):
//!
//! | offset | size | field                                                    |
//! |--------|------|----------------------------------------------------------|
//! | 0      | 8    | cookie `conectix`                                        |
//! | 8      | 4    | features: 2 (the reserved bit, always set)               |
//! | 12     | 4    | format version 1.0 (`0x00010000`)                        |
//! | 16     | 8    | data offset: all ones (a fixed disk has no header)       |
//! | 24     | 4    | time stamp, seconds since 2000-01-01 00:00 UTC           |
//! | 28     | 4    | creator application (`kato`)                             |
//! | 32     | 4    | creator version                                          |
//! | 36     | 4    | creator host OS (`Lnux`)                                 |
//! | 40     | 8    | original size                                            |
//! | 48     | 8    | current size                                             |
//! | 56     | 4    | geometry: cylinders (2), heads (1), sectors per track (1) |
//! | 60     | 4    | disk type: 2, fixed                                      |
//! | 64     | 4    | checksum: one's complement of the sum of all other bytes |
//! | 68     | 16   | unique ID                                                |
//! | 84     | 1    | saved state: 0                                           |
//! | 85     | 427  | zeros                                                    |

pub(crate) const FOOTER_LEN: usize = 512;
const MIB: u64 = 1 << 20;
/// Seconds from the Unix epoch to 2000-01-01 00:00:00 UTC.
const VHD_EPOCH: i64 = 946_684_800;
/// The largest disk a VHD can describe (2040 GiB, the format's documented limit).
pub(crate) const MAX_SIZE: u64 = 2040 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) cylinders: u16,
    pub(crate) heads: u8,
    pub sectors: u8,
}

impl Geometry {
    pub(crate) fn sectors_total(self) -> u64 {
        u64::from(self.cylinders) * u64::from(self.heads) * u64::from(self.sectors)
    }
}

/// The geometry the VHD specification's algorithm gives a disk of `size` bytes.
pub(crate) fn geometry(size: u64) -> Geometry {
    let mut total = size / 512;
    total = total.min(MAX_GEOMETRY_SECTORS);
    let (sectors, heads, cylinder_heads);
    if total >= 65535 * 16 * 63 {
        sectors = 255;
        heads = 16;
        cylinder_heads = total / sectors;
    } else {
        let mut s = 17;
        let mut ch = total / s;
        let mut h = ch.div_ceil(1024).max(4);
        if ch >= h * 1024 || h > 16 {
            s = 31;
            h = 16;
            ch = total / s;
        }
        if ch >= h * 1024 {
            s = 63;
            h = 16;
            ch = total / s;
        }
        sectors = s;
        heads = h;
        cylinder_heads = ch;
    }
    Geometry {
        cylinders: (cylinder_heads / heads) as u16,
        heads: heads as u8,
        sectors: sectors as u8,
    }
}

/// The largest geometry (65535 cylinders, 16 heads, 255 sectors, about 127.5 GiB): readers
/// that use CHS take the footer's size for disks that have it.
pub(crate) const MAX_GEOMETRY_SECTORS: u64 = 65535 * 16 * 255;

/// The smallest size of at least `wanted` bytes that is a whole number of MiB and that its
/// own geometry covers exactly (or, past the largest geometry, that has it); `None` past
/// the format's limit.
pub fn exact_size(wanted: u64) -> Option<u64> {
    let mut size = wanted.max(MIB).div_ceil(MIB) * MIB;
    while size <= MAX_SIZE {
        let covered = geometry(size).sectors_total();
        if covered * 512 == size || covered == MAX_GEOMETRY_SECTORS {
            return Some(size);
        }
        size += MIB;
    }
    None
}

/// A fixed disk's footer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    pub size: u64,
    /// Unix seconds (stored from 2000-01-01; earlier times are stored as 0).
    pub time: i64,
    pub unique_id: [u8; 16],
}

impl Footer {
    pub fn to_bytes(&self) -> [u8; FOOTER_LEN] {
        let mut b = [0u8; FOOTER_LEN];
        b[0..8].copy_from_slice(b"conectix");
        b[8..12].copy_from_slice(&2u32.to_be_bytes());
        b[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes());
        b[16..24].copy_from_slice(&u64::MAX.to_be_bytes());
        let stamp = (self.time - VHD_EPOCH).clamp(0, i64::from(u32::MAX)) as u32;
        b[24..28].copy_from_slice(&stamp.to_be_bytes());
        b[28..32].copy_from_slice(b"kato");
        b[32..36].copy_from_slice(&0x0001_0000u32.to_be_bytes());
        b[36..40].copy_from_slice(b"Lnux");
        b[40..48].copy_from_slice(&self.size.to_be_bytes());
        b[48..56].copy_from_slice(&self.size.to_be_bytes());
        let g = geometry(self.size);
        b[56..58].copy_from_slice(&g.cylinders.to_be_bytes());
        b[58] = g.heads;
        b[59] = g.sectors;
        b[60..64].copy_from_slice(&2u32.to_be_bytes());
        b[68..84].copy_from_slice(&self.unique_id);
        let checksum = !b
            .iter()
            .fold(0u32, |sum, &x| sum.wrapping_add(u32::from(x)));
        b[64..68].copy_from_slice(&checksum.to_be_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_footer_checksum_is_the_complement_of_the_byte_sum() {
        let footer = Footer {
            size: 30 << 30,
            time: 1_700_000_000,
            unique_id: [7; 16],
        }
        .to_bytes();
        let mut without = footer;
        without[64..68].fill(0);
        let sum = without.iter().map(|&b| u32::from(b)).sum::<u32>();
        assert_eq!(u32::from_be_bytes(footer[64..68].try_into().unwrap()), !sum);
        assert_eq!(&footer[0..8], b"conectix");
        assert_eq!(
            u32::from_be_bytes(footer[24..28].try_into().unwrap()),
            (1_700_000_000 - VHD_EPOCH) as u32
        );
    }

    #[test]
    fn the_specifications_geometry_for_known_sizes() {
        // Worked by hand through the specification's algorithm: 127 MiB stays in the
        // 17-sectors branch with 15 heads; 30 GiB falls through to 63 sectors, 16 heads.
        let g = |cylinders, heads, sectors| Geometry {
            cylinders,
            heads,
            sectors,
        };
        assert_eq!(geometry(127 << 20), g(1019, 15, 17));
        assert_eq!(geometry(30 << 30), g(62415, 16, 63));
        assert_eq!(geometry(4000 << 30), g(65535, 16, 255));
    }

    proptest! {
        #[test]
        fn exact_sizes_are_whole_mib_covered_by_their_geometry(wanted in 1u64..(2000u64 << 30)) {
            let size = exact_size(wanted).unwrap();
            prop_assert!(size >= wanted);
            prop_assert_eq!(size % MIB, 0);
            let covered = geometry(size).sectors_total();
            prop_assert!(covered * 512 == size || covered == MAX_GEOMETRY_SECTORS);
            // Never far above what was asked: at most one period of the geometry.
            prop_assert!(size - wanted < 256 * MIB);
        }

        #[test]
        fn the_geometry_never_covers_more_than_the_disk(size in 512u64..(2040u64 << 30)) {
            prop_assert!(geometry(size).sectors_total() * 512 <= size);
        }
    }
}
