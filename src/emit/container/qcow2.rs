//! A sequential qcow2 (version 3) writer for a finished raw disk.
//!
//! Why our own and not a crate: `imago` is built around random guest writes through an async
//! runtime and allocates metadata as writes arrive; `qcow2-rs` is a reader first. We know the
//! whole disk before the first byte is written, so the layout is decided up front and the
//! file is written in one forward pass over the data, with a few metadata clusters filled in
//! at the end. Clusters that are holes in the raw file, or read as all zeros, are not
//! allocated (reads of them give zeros, as in `qemu-img convert`).
//!
//! Layout (64 KiB clusters, 16-bit refcounts, no backing file, no extensions):
//!
//! | cluster(s)            | contents                                                 |
//! |-----------------------|----------------------------------------------------------|
//! | 0                     | header (104 bytes, big-endian; see [`Header`])           |
//! | L1                    | one 8-byte entry per 512 MiB of guest disk               |
//! | refcount table        | one 8-byte entry per refcount block                      |
//! | refcount blocks       | one 16-bit count per host cluster (32768 per block)      |
//! | L2 tables             | one per 512 MiB guest region that has data, in order     |
//! | data                  | the guest clusters with data, in guest order             |
//!
//! Every cluster from 0 to the end of the file is used exactly once, so each has refcount 1
//! and every L1/L2 entry carries the COPIED flag; refcount blocks past the last used cluster
//! count nothing (the count of them is an upper bound taken before zero clusters are known).

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use crate::disk::sparse;

pub const CLUSTER_BITS: u32 = 16;
pub const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// 8-byte entries per L2 table: each table maps 512 MiB of guest disk.
const L2_ENTRIES: u64 = CLUSTER / 8;
/// 16-bit entries per refcount block.
const REFCOUNTS_PER_BLOCK: u64 = CLUSTER / 2;
/// "Refcount is exactly one": set on every L1 and L2 entry we write.
const COPIED: u64 = 1 << 63;
/// The largest guest disk we write (QEMU refuses over 32 TiB with 64 KiB clusters' L1).
pub const MAX_SIZE: u64 = 32 << 40;
/// Guest clusters read at once.
const BATCH: u64 = 64;

/// The header's fields that vary; the rest are fixed for our images (see `to_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Guest disk size in bytes (offset 24).
    pub size: u64,
    /// L1 entries (offset 36) and where the table starts (offset 40).
    pub l1_entries: u32,
    pub l1_offset: u64,
    /// Where the refcount table starts (offset 48) and its clusters (offset 56).
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u32,
}

impl Header {
    pub const LEN: usize = 104;

    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..4].copy_from_slice(b"QFI\xfb");
        b[4..8].copy_from_slice(&3u32.to_be_bytes()); // version
        // 8..20: no backing file
        b[20..24].copy_from_slice(&CLUSTER_BITS.to_be_bytes());
        b[24..32].copy_from_slice(&self.size.to_be_bytes());
        // 32..36: no encryption
        b[36..40].copy_from_slice(&self.l1_entries.to_be_bytes());
        b[40..48].copy_from_slice(&self.l1_offset.to_be_bytes());
        b[48..56].copy_from_slice(&self.refcount_table_offset.to_be_bytes());
        b[56..60].copy_from_slice(&self.refcount_table_clusters.to_be_bytes());
        // 60..72: no snapshots; 72..96: no feature bits (no dirty flag, no lazy refcounts)
        b[96..100].copy_from_slice(&4u32.to_be_bytes()); // refcount_order: 16 bits
        b[100..104].copy_from_slice(&(Self::LEN as u32).to_be_bytes());
        b
    }
}

/// Where everything goes, in host clusters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub size: u64,
    pub l1_entries: u64,
    pub l1_clusters: u64,
    pub refcount_table_clusters: u64,
    pub refcount_blocks: u64,
    /// The guest regions (512 MiB each, by index) that get an L2 table, ascending.
    pub regions: Vec<u64>,
}

impl Layout {
    /// The layout for a guest disk of `size` bytes whose data lies in `candidates` (guest
    /// cluster ranges, ascending, not overlapping). Refcount blocks are counted for the worst
    /// case, every candidate allocated.
    pub fn plan(size: u64, candidates: &[(u64, u64)]) -> Layout {
        let l1_entries = size.div_ceil(CLUSTER * L2_ENTRIES);
        let l1_clusters = (l1_entries * 8).div_ceil(CLUSTER).max(1);
        let mut regions: Vec<u64> = Vec::new();
        let mut data = 0;
        for &(first, end) in candidates {
            data += end - first;
            for region in first / L2_ENTRIES..=(end - 1) / L2_ENTRIES {
                if regions.last() != Some(&region) {
                    regions.push(region);
                }
            }
        }
        let (mut table, mut blocks) = (1, 1);
        loop {
            let total = 1 + l1_clusters + table + blocks + regions.len() as u64 + data;
            let need_blocks = total.div_ceil(REFCOUNTS_PER_BLOCK);
            let need_table = (need_blocks * 8).div_ceil(CLUSTER);
            if (need_blocks, need_table) == (blocks, table) {
                break;
            }
            (blocks, table) = (need_blocks.max(blocks), need_table.max(table));
        }
        Layout {
            size,
            l1_entries,
            l1_clusters,
            refcount_table_clusters: table,
            refcount_blocks: blocks,
            regions,
        }
    }

    fn l1_cluster(&self) -> u64 {
        1
    }
    fn refcount_table_cluster(&self) -> u64 {
        self.l1_cluster() + self.l1_clusters
    }
    fn refcount_block_cluster(&self) -> u64 {
        self.refcount_table_cluster() + self.refcount_table_clusters
    }
    fn l2_cluster(&self, nth: usize) -> u64 {
        self.refcount_block_cluster() + self.refcount_blocks + nth as u64
    }
    /// The first data cluster.
    pub fn data_cluster(&self) -> u64 {
        self.l2_cluster(self.regions.len())
    }

    pub fn header(&self) -> Header {
        Header {
            size: self.size,
            l1_entries: self.l1_entries as u32,
            l1_offset: self.l1_cluster() * CLUSTER,
            refcount_table_offset: self.refcount_table_cluster() * CLUSTER,
            refcount_table_clusters: self.refcount_table_clusters as u32,
        }
    }
}

/// The guest clusters of a `len`-byte file that its data extents touch, as ascending
/// `[first, end)` cluster ranges.
pub fn candidate_clusters(extents: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for &(offset, length) in extents {
        if length == 0 {
            continue;
        }
        let (first, end) = (offset / CLUSTER, (offset + length).div_ceil(CLUSTER));
        match ranges.last_mut() {
            Some(last) if last.1 >= first => last.1 = last.1.max(end),
            _ => ranges.push((first, end)),
        }
    }
    ranges
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The qcow2 file's length.
    pub len: u64,
    /// Guest clusters that hold data.
    pub data_clusters: u64,
}

/// Writes `source` (a raw disk of `size` bytes) as qcow2 into `out` (empty, or truncated).
pub fn write(source: &File, size: u64, out: &File) -> io::Result<Written> {
    if size == 0 || size > MAX_SIZE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a qcow2 disk must be 1 byte to 32 TiB, not {size} bytes"),
        ));
    }
    let candidates = candidate_clusters(&sparse::data_extents(source, 0, size)?);
    let layout = Layout::plan(size, &candidates);
    out.set_len(0)?;
    let mut cursor = out;
    cursor.seek(SeekFrom::Start(layout.data_cluster() * CLUSTER))?;
    let mut data = BufWriter::with_capacity(4 << 20, cursor);
    let mut next = layout.data_cluster();
    let mut l1 = vec![0u64; layout.l1_entries as usize];
    let mut buffer = vec![0u8; (BATCH * CLUSTER) as usize];
    let mut nth_region = 0;
    let mut l2 = vec![0u64; L2_ENTRIES as usize];
    let mut region_of_l2 = None;
    let mut flush_l2 =
        |region: Option<u64>, l2: &mut Vec<u64>, nth: &mut usize| -> io::Result<()> {
            if let Some(region) = region {
                let at = layout.l2_cluster(*nth);
                write_entries(out, at * CLUSTER, l2)?;
                l1[region as usize] = (at * CLUSTER) | COPIED;
                *nth += 1;
                l2.iter_mut().for_each(|e| *e = 0);
            }
            Ok(())
        };
    for &(first, end) in &candidates {
        let mut cluster = first;
        while cluster < end {
            let region = cluster / L2_ENTRIES;
            if region_of_l2 != Some(region) {
                flush_l2(region_of_l2, &mut l2, &mut nth_region)?;
                region_of_l2 = Some(region);
            }
            // A batch stays within one region.
            let region_end = (region + 1) * L2_ENTRIES;
            let count = (end - cluster).min(BATCH).min(region_end - cluster);
            let bytes = read_clusters(source, size, cluster, count, &mut buffer)?;
            for (i, chunk) in bytes.chunks(CLUSTER as usize).enumerate() {
                if sparse::is_zero(chunk) {
                    continue;
                }
                data.write_all(chunk)?;
                if chunk.len() < CLUSTER as usize {
                    data.write_all(&vec![0u8; CLUSTER as usize - chunk.len()])?;
                }
                l2[((cluster + i as u64) % L2_ENTRIES) as usize] = (next * CLUSTER) | COPIED;
                next += 1;
            }
            cluster += count;
        }
    }
    flush_l2(region_of_l2, &mut l2, &mut nth_region)?;
    // Every region in the layout was visited: its table is written even if all its
    // clusters turned out to be zeros.
    debug_assert_eq!(nth_region, layout.regions.len());
    data.flush()?;
    drop(data);
    let used = next;
    write_entries(out, layout.l1_cluster() * CLUSTER, &l1)?;
    let table: Vec<u64> = (0..layout.refcount_blocks)
        .map(|k| (layout.refcount_block_cluster() + k) * CLUSTER)
        .collect();
    write_entries(out, layout.refcount_table_cluster() * CLUSTER, &table)?;
    write_refcounts(out, &layout, used)?;
    out.write_all_at(&layout.header().to_bytes(), 0)?;
    out.set_len(used * CLUSTER)?;
    Ok(Written {
        len: used * CLUSTER,
        data_clusters: used - layout.data_cluster(),
    })
}

/// Reads `count` guest clusters from `cluster` on (zeros past the end of the disk).
fn read_clusters<'b>(
    source: &File,
    size: u64,
    cluster: u64,
    count: u64,
    buffer: &'b mut [u8],
) -> io::Result<&'b [u8]> {
    let start = cluster * CLUSTER;
    let len = (count * CLUSTER).min(size - start) as usize;
    source.read_exact_at(&mut buffer[..len], start)?;
    Ok(&buffer[..len])
}

fn write_entries(out: &File, at: u64, entries: &[u64]) -> io::Result<()> {
    let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_be_bytes()).collect();
    out.write_all_at(&bytes, at)
}

/// Refcount 1 for clusters `0..used`, 0 after, across every block of the layout.
fn write_refcounts(out: &File, layout: &Layout, used: u64) -> io::Result<()> {
    let mut block = vec![0u8; CLUSTER as usize];
    for k in 0..layout.refcount_blocks {
        let first = k * REFCOUNTS_PER_BLOCK;
        let ones = used.saturating_sub(first).min(REFCOUNTS_PER_BLOCK) as usize;
        block.iter_mut().for_each(|b| *b = 0);
        for entry in block.chunks_mut(2).take(ones) {
            entry.copy_from_slice(&1u16.to_be_bytes());
        }
        out.write_all_at(&block, (layout.refcount_block_cluster() + k) * CLUSTER)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_fields_sit_at_their_offsets() {
        let h = Header {
            size: 0x1122_3344_5566,
            l1_entries: 7,
            l1_offset: 0x10000,
            refcount_table_offset: 0x20000,
            refcount_table_clusters: 1,
        }
        .to_bytes();
        assert_eq!(&h[0..4], b"QFI\xfb");
        assert_eq!(u32::from_be_bytes(h[4..8].try_into().unwrap()), 3);
        assert_eq!(u32::from_be_bytes(h[20..24].try_into().unwrap()), 16);
        assert_eq!(
            u64::from_be_bytes(h[24..32].try_into().unwrap()),
            0x1122_3344_5566
        );
        assert_eq!(u32::from_be_bytes(h[36..40].try_into().unwrap()), 7);
        assert_eq!(u64::from_be_bytes(h[40..48].try_into().unwrap()), 0x10000);
        assert_eq!(u64::from_be_bytes(h[48..56].try_into().unwrap()), 0x20000);
        assert_eq!(u32::from_be_bytes(h[96..100].try_into().unwrap()), 4);
        assert_eq!(u32::from_be_bytes(h[100..104].try_into().unwrap()), 104);
    }

    proptest! {
        /// The refcount blocks always cover every cluster the file can use, and the
        /// metadata never overlaps.
        #[test]
        fn the_layout_covers_every_cluster(
            size in 1u64..(1 << 40),
            extents in proptest::collection::vec((0u64..(1 << 40), 1u64..(1 << 30)), 0..20),
        ) {
            let mut extents: Vec<(u64, u64)> = extents
                .into_iter()
                .filter(|&(o, _)| o < size)
                .map(|(o, l)| (o, l.min(size - o)))
                .collect();
            extents.sort();
            let candidates = candidate_clusters(&extents);
            let layout = Layout::plan(size, &candidates);
            let data: u64 = candidates.iter().map(|(a, b)| b - a).sum();
            let total = layout.data_cluster() + data;
            prop_assert!(layout.refcount_blocks * REFCOUNTS_PER_BLOCK >= total);
            prop_assert!(layout.refcount_table_clusters * CLUSTER / 8 >= layout.refcount_blocks);
            prop_assert!(layout.l1_entries * L2_ENTRIES * CLUSTER >= size);
            prop_assert!(layout.regions.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(layout.regions.iter().all(|&r| r < layout.l1_entries));
        }
    }
}
