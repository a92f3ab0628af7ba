//! A sequential qcow2 (version 3) writer for a finished raw disk.
//!
//! Why our own and not a crate: `imago` is built around random guest writes through an async
//! runtime and allocates metadata as writes arrive; `qcow2-rs` is a reader first. We know the
//! whole disk before the first byte is written, so the layout is decided up front and the
//! file is written strictly front to back, in one pass over the data, hashed as it goes.
//! Clusters that are holes in the raw file, or read as all zeros, are not allocated (reads
//! of them give zeros, as in `qemu-img convert`).
//!
//! Layout (64 KiB clusters, 16-bit refcounts, no backing file, no extensions):
//!
//! | cluster(s)             | contents                                                  |
//! |------------------------|-----------------------------------------------------------|
//! | 0                      | header (104 bytes, big-endian; see [`Header`])            |
//! | per 512 MiB region     | the region's data clusters in guest order, then its L2 table |
//! | gap                    | unwritten: the candidate clusters that turned out all zeros |
//! | L1                     | one 8-byte entry per 512 MiB of guest disk                |
//! | refcount table         | one 8-byte entry per refcount block                       |
//! | refcount blocks        | one 16-bit count per host cluster (32768 per block)       |
//!
//! The tables at the end sit where the worst case (every candidate cluster allocated) puts
//! them, so the header, written first, can point at them. Every cluster outside the gap is
//! used exactly once (refcount 1, and the COPIED flag on every L1/L2 entry); gap clusters
//! have refcount 0.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

use crate::disk::sparse;
use crate::io::Blake3Writer;

pub(crate) const CLUSTER_BITS: u32 = 16;
pub(crate) const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// 8-byte entries per L2 table: each table maps 512 MiB of guest disk.
const L2_ENTRIES: u64 = CLUSTER / 8;
/// 16-bit entries per refcount block.
const REFCOUNTS_PER_BLOCK: u64 = CLUSTER / 2;
/// "Refcount is exactly one": set on every L1 and L2 entry we write.
const COPIED: u64 = 1 << 63;
/// The largest guest disk we write (QEMU refuses over 32 TiB with 64 KiB clusters' L1).
pub(crate) const MAX_SIZE: u64 = 32 << 40;
/// Guest clusters read at once.
const BATCH: u64 = 64;

/// The header's fields that vary; the rest are fixed for our images (see `to_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Guest disk size in bytes (offset 24).
    pub size: u64,
    /// L1 entries (offset 36) and where the table starts (offset 40).
    pub(crate) l1_entries: u32,
    pub(crate) l1_offset: u64,
    /// Where the refcount table starts (offset 48) and its clusters (offset 56).
    pub(crate) refcount_table_offset: u64,
    pub(crate) refcount_table_clusters: u32,
}

impl Header {
    pub(crate) const LEN: usize = 104;

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
    pub(crate) l1_entries: u64,
    pub(crate) l1_clusters: u64,
    pub(crate) refcount_table_clusters: u64,
    pub(crate) refcount_blocks: u64,
    /// The guest regions (512 MiB each, by index) that get an L2 table, ascending.
    pub regions: Vec<u64>,
    /// Candidate data clusters: the most the data can take.
    pub(crate) max_data: u64,
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
            max_data: data,
        }
    }

    /// Data and L2 tables in the worst case.
    fn body_clusters(&self) -> u64 {
        self.max_data + self.regions.len() as u64
    }
    fn l1_cluster(&self) -> u64 {
        1 + self.body_clusters()
    }
    fn refcount_table_cluster(&self) -> u64 {
        self.l1_cluster() + self.l1_clusters
    }
    fn refcount_block_cluster(&self) -> u64 {
        self.refcount_table_cluster() + self.refcount_table_clusters
    }
    /// The clusters in the file, gap included.
    pub(crate) fn total_clusters(&self) -> u64 {
        self.refcount_block_cluster() + self.refcount_blocks
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
pub(crate) fn candidate_clusters(extents: &[(u64, u64)]) -> Vec<(u64, u64)> {
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
    /// BLAKE3 of the file.
    pub blake3: blake3::Hash,
}

/// Writes `source` (a raw disk of `size` bytes) as qcow2 into `out` (emptied first).
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
    let mut file = Blake3Writer::new(out);
    let mut header = vec![0u8; CLUSTER as usize];
    header[..Header::LEN].copy_from_slice(&layout.header().to_bytes());
    file.write_all(&header)?;
    let mut next = 1; // the next host cluster
    let mut data_clusters = 0;
    let mut l1 = vec![0u64; layout.l1_entries as usize];
    let mut l2 = vec![0u64; L2_ENTRIES as usize];
    let mut buffer = vec![0u8; (BATCH * CLUSTER) as usize];
    let mut pending: Option<u64> = None;
    let mut close_region =
        |region: u64, l2: &mut [u64], next: &mut u64, file: &mut Blake3Writer<_>| {
            write_entries(file, l2)?;
            l1[region as usize] = (*next * CLUSTER) | COPIED;
            *next += 1;
            l2.fill(0);
            io::Result::Ok(())
        };
    for &(first, end) in &candidates {
        let mut cluster = first;
        while cluster < end {
            let region = cluster / L2_ENTRIES;
            match pending {
                Some(open) if open != region => {
                    close_region(open, &mut l2, &mut next, &mut file)?;
                    pending = Some(region);
                }
                None => pending = Some(region),
                _ => {}
            }
            // A batch stays within one region.
            let region_end = (region + 1) * L2_ENTRIES;
            let count = (end - cluster).min(BATCH).min(region_end - cluster);
            let bytes = read_clusters(source, size, cluster, count, &mut buffer)?;
            for (i, chunk) in bytes.chunks(CLUSTER as usize).enumerate() {
                if sparse::is_zero(chunk) {
                    continue;
                }
                file.write_all(chunk)?;
                if chunk.len() < CLUSTER as usize {
                    file.write_all(&vec![0u8; CLUSTER as usize - chunk.len()])?;
                }
                l2[((cluster + i as u64) % L2_ENTRIES) as usize] = (next * CLUSTER) | COPIED;
                next += 1;
                data_clusters += 1;
            }
            cluster += count;
        }
    }
    if let Some(open) = pending {
        close_region(open, &mut l2, &mut next, &mut file)?;
    }
    // Every region in the layout got its table, even one whose clusters were all zeros.
    debug_assert_eq!(next, 1 + data_clusters + layout.regions.len() as u64);
    let gap = layout.l1_cluster() - next;
    file.skip_zeros(gap * CLUSTER)?;
    write_entries(&mut file, &l1)?;
    pad_cluster(
        &mut file,
        layout.l1_clusters * CLUSTER - l1.len() as u64 * 8,
    )?;
    let table: Vec<u64> = (0..layout.refcount_blocks)
        .map(|k| (layout.refcount_block_cluster() + k) * CLUSTER)
        .collect();
    write_entries(&mut file, &table)?;
    pad_cluster(
        &mut file,
        layout.refcount_table_clusters * CLUSTER - table.len() as u64 * 8,
    )?;
    write_refcounts(&mut file, &layout, next)?;
    let (_, blake3, len) = file.finish()?;
    debug_assert_eq!(len, layout.total_clusters() * CLUSTER);
    Ok(Written {
        len,
        data_clusters,
        blake3,
    })
}

/// What a qcow2 from elsewhere claims in its header, read before anything hands it to QEMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignHeader {
    pub version: u32,
    /// The guest disk's size in bytes.
    pub size: u64,
    pub cluster_bits: u32,
}

/// Header extension types (qcow2 spec, "Header extensions").
const EXTENSION_END: u32 = 0;
const EXTENSION_EXTERNAL_DATA: u32 = 0x4441_5441;
/// Incompatible feature bits: dirty, corrupt, external data file, compression type,
/// extended L2 entries; any other is unknown to QEMU's spec.
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_EXTERNAL_DATA: u64 = 1 << 2;
const INCOMPAT_KNOWN: u64 = 0x1f;

/// Reads and checks the header of a qcow2 file of `file_len` bytes that someone else made
/// (`run` hands it to QEMU): no backing file and no external data file (either would give
/// the guest another file of this machine to read), no encryption, known features only, and
/// every table the header points at inside the file. `Err` says what is wrong.
pub(crate) fn read_foreign_header(file: &File, file_len: u64) -> Result<ForeignHeader, String> {
    let mut head = vec![0u8; 4096.min(file_len) as usize];
    file.read_exact_at(&mut head, 0)
        .map_err(|e| format!("cannot read its header: {e}"))?;
    parse_foreign_header(&head, file_len)
}

/// [`read_foreign_header`] on the file's first bytes (up to 4 KiB).
pub fn parse_foreign_header(head: &[u8], file_len: u64) -> Result<ForeignHeader, String> {
    let be32 = |at: usize| -> Option<u32> {
        head.get(at..at + 4)
            .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
    };
    let be64 = |at: usize| -> Option<u64> {
        head.get(at..at + 8)
            .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
    };
    let short = || "its header is cut short".to_string();
    if head.get(..4) != Some(b"QFI\xfb".as_slice()) {
        return Err("not a qcow2 file (no QFI\\xfb magic)".into());
    }
    let version = be32(4).ok_or_else(short)?;
    if !(2..=3).contains(&version) {
        return Err(format!("qcow2 version {version} (2 or 3 expected)"));
    }
    let backing_offset = be64(8).ok_or_else(short)?;
    if backing_offset != 0 {
        let len = be32(16).ok_or_else(short)? as usize;
        let name = usize::try_from(backing_offset)
            .ok()
            .and_then(|at| head.get(at..at.checked_add(len.min(1023))?))
            .map(|b| crate::origin::quoted(&String::from_utf8_lossy(b)))
            .unwrap_or_else(|| "(outside its header)".into());
        return Err(format!(
            "it has a backing file {name}, which QEMU would open and the guest read"
        ));
    }
    let cluster_bits = be32(20).ok_or_else(short)?;
    if !(9..=21).contains(&cluster_bits) {
        return Err(format!("cluster_bits {cluster_bits} (9 to 21 expected)"));
    }
    let cluster = 1u64 << cluster_bits;
    let size = be64(24).ok_or_else(short)?;
    if be32(32).ok_or_else(short)? != 0 {
        return Err("it is encrypted".into());
    }
    let within = |what: &str, offset: u64, len: u64| -> Result<(), String> {
        match offset.checked_add(len) {
            Some(end) if end <= file_len && offset.is_multiple_of(cluster) => Ok(()),
            _ => Err(format!(
                "its {what} ({len} bytes at {offset}) does not fit the {file_len}-byte file"
            )),
        }
    };
    let l1_entries = u64::from(be32(36).ok_or_else(short)?);
    let l1_offset = be64(40).ok_or_else(short)?;
    // Each L1 entry maps cluster/8 clusters.
    let needed = size.div_ceil(cluster.saturating_mul(cluster / 8));
    if l1_entries < needed {
        return Err(format!(
            "its L1 table has {l1_entries} entries, too few for a {size}-byte disk"
        ));
    }
    within("L1 table", l1_offset, l1_entries * 8)?;
    let refcount_offset = be64(48).ok_or_else(short)?;
    let refcount_clusters = u64::from(be32(56).ok_or_else(short)?);
    within(
        "refcount table",
        refcount_offset,
        refcount_clusters.saturating_mul(cluster),
    )?;
    let snapshots = u64::from(be32(60).ok_or_else(short)?);
    if snapshots > 0 {
        // Each snapshot's header takes at least 40 bytes.
        within(
            "snapshot table",
            be64(64).ok_or_else(short)?,
            snapshots.min(1 << 16) * 40,
        )?;
    }
    if version == 2 {
        return Ok(ForeignHeader {
            version,
            size,
            cluster_bits,
        });
    }
    let incompatible = be64(72).ok_or_else(short)?;
    if incompatible & INCOMPAT_EXTERNAL_DATA != 0 {
        return Err("its data is in an external file, which QEMU would open".into());
    }
    if incompatible & INCOMPAT_CORRUPT != 0 {
        return Err("it is marked corrupt".into());
    }
    if incompatible & !INCOMPAT_KNOWN != 0 {
        return Err(format!(
            "unknown incompatible features {:#x}",
            incompatible & !INCOMPAT_KNOWN
        ));
    }
    let header_len = be32(100).ok_or_else(short)? as usize;
    if header_len < 104 || header_len as u64 > cluster || header_len > head.len() {
        return Err(format!("a header length of {header_len} bytes"));
    }
    // Header extensions: type, length, data padded to 8 bytes, until type 0.
    let mut at = header_len;
    loop {
        let kind = be32(at).ok_or_else(short)?;
        let len = be32(at + 4).ok_or_else(short)? as usize;
        match kind {
            EXTENSION_END => break,
            EXTENSION_EXTERNAL_DATA => {
                return Err("it names an external data file, which QEMU would open".into());
            }
            _ => {}
        }
        at = at
            .checked_add(8)
            .and_then(|a| a.checked_add(len.div_ceil(8) * 8))
            .filter(|&a| a < head.len())
            .ok_or_else(short)?;
    }
    Ok(ForeignHeader {
        version,
        size,
        cluster_bits,
    })
}

fn pad_cluster(out: &mut impl Write, n: u64) -> io::Result<()> {
    io::copy(&mut io::repeat(0).take(n), out).map(|_| ())
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

fn write_entries(out: &mut impl Write, entries: &[u64]) -> io::Result<()> {
    let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_be_bytes()).collect();
    out.write_all(&bytes)
}

/// Refcount 1 for the header and body clusters before `gap_start`, 0 in the gap, 1 for the
/// tables at the end, 0 past the file's end.
fn write_refcounts(out: &mut impl Write, layout: &Layout, gap_start: u64) -> io::Result<()> {
    let (tables, total) = (layout.l1_cluster(), layout.total_clusters());
    let mut block = vec![0u8; CLUSTER as usize];
    for k in 0..layout.refcount_blocks {
        for (i, entry) in block.chunks_mut(2).enumerate() {
            let cluster = k * REFCOUNTS_PER_BLOCK + i as u64;
            let used = cluster < gap_start || (tables..total).contains(&cluster);
            entry.copy_from_slice(&u16::from(used).to_be_bytes());
        }
        out.write_all(&block)?;
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
            prop_assert_eq!(layout.max_data, data);
            prop_assert!(layout.refcount_blocks * REFCOUNTS_PER_BLOCK >= layout.total_clusters());
            prop_assert!(layout.refcount_table_clusters * CLUSTER / 8 >= layout.refcount_blocks);
            prop_assert!(layout.l1_entries * L2_ENTRIES * CLUSTER >= size);
            prop_assert!(layout.regions.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(layout.regions.iter().all(|&r| r < layout.l1_entries));
        }
    }

    #[test]
    fn foreign_headers_with_other_files_or_tables_outside_are_refused() {
        let header = Header {
            size: 1 << 30,
            l1_entries: 2,
            l1_offset: CLUSTER,
            refcount_table_offset: 2 * CLUSTER,
            refcount_table_clusters: 1,
        };
        let mut head = header.to_bytes().to_vec();
        head.resize(4096, 0);
        let len = 3 * CLUSTER;
        assert_eq!(
            parse_foreign_header(&head, len).unwrap(),
            ForeignHeader {
                version: 3,
                size: 1 << 30,
                cluster_bits: 16
            }
        );
        let with = |at: usize, bytes: &[u8]| {
            let mut h = head.clone();
            h[at..at + bytes.len()].copy_from_slice(bytes);
            parse_foreign_header(&h, len).unwrap_err()
        };
        let mut backing = head.clone();
        backing[8..16].copy_from_slice(&200u64.to_be_bytes());
        backing[16..20].copy_from_slice(&11u32.to_be_bytes());
        backing[200..211].copy_from_slice(b"/etc/shadow");
        let error = parse_foreign_header(&backing, len).unwrap_err();
        assert!(error.contains("backing file \"/etc/shadow\""), "{error}");
        assert!(with(72, &4u64.to_be_bytes()).contains("external file"));
        assert!(with(104, &0x4441_5441u32.to_be_bytes()).contains("external data file"));
        assert!(with(40, &(100 * CLUSTER).to_be_bytes()).contains("L1 table"));
        assert!(with(36, &1u32.to_be_bytes()).contains("too few"));
        assert!(with(56, &u32::MAX.to_be_bytes()).contains("refcount table"));
        assert!(with(32, &1u32.to_be_bytes()).contains("encrypted"));
        assert!(with(72, &(1u64 << 40).to_be_bytes()).contains("unknown"));
        assert!(parse_foreign_header(&head[..50], len).is_err());
    }
}
