//! Compressed EROFS files: the map from logical offsets to compressed clusters, and LZ4
//! decoding of each (the kernel's `fs/erofs/zmap.c`, read for what `mkfs.erofs -z lz4|lz4hc`
//! writes).
//!
//! - The 8-byte map header sits at the inode's end (inode and xattrs) rounded up to 8:
//!   `h_idata_size` (+2, u16: the inline tail's length), `h_advise` (+4, u16), the algorithm
//!   of HEAD1 and HEAD2 clusters (+6, two nibbles), cluster bits (+7; bit 7: the whole file
//!   is a fragment);
//! - one index entry per logical cluster (a block): its type (PLAIN: stored as is, HEAD1 and
//!   HEAD2: a compressed cluster starts here, NONHEAD: the cluster goes on), for a head the
//!   offset in the logical cluster where its data starts and its physical block, for a
//!   non-head the distance back to its head (or, flagged 0x800, the head's compressed block
//!   count). Full indexes are 8 bytes each at the header + 16; compact ones are packed two
//!   to 8 bytes or sixteen to 32 bytes, each pack ending with a base block address;
//! - with `ztailpacking`, the last cluster's data lies inline right after the indexes;
//! - LZ4 data sits at the end of its blocks, after zero padding.
//!
//! Fragments (`-Efragments`, the packed inode) and interlaced clusters are refused by name.

use std::io::{Read, Seek};

use super::{Erofs, Inode, corrupt};
use crate::fs::image::ImageError;

const ADVISE_COMPACTED_2B: u16 = 0x1;
const ADVISE_BIG_PCLUSTER_1: u16 = 0x2;
const ADVISE_BIG_PCLUSTER_2: u16 = 0x4;
const ADVISE_INLINE_PCLUSTER: u16 = 0x8;
const ADVISE_INTERLACED: u16 = 0x10;
const ADVISE_FRAGMENT: u16 = 0x20;
const CBLKCNT: u32 = 0x800;
/// A compressed cluster larger than this is no image's (the kernel's own bound).
const PCLUSTER_MAX: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Head1,
    NonHead,
    Head2,
}

impl Kind {
    fn from_bits(bits: u32) -> Self {
        match bits & 3 {
            0 => Kind::Plain,
            1 => Kind::Head1,
            2 => Kind::NonHead,
            _ => Kind::Head2,
        }
    }
}

/// One logical cluster's index entry, decoded.
#[derive(Debug, Clone, Copy)]
struct Entry {
    kind: Kind,
    cluster_offset: u64,
    /// For a non-head: how many clusters back its head is.
    back: u64,
    /// For the first non-head of a big cluster: its head's compressed block count.
    blocks: Option<u64>,
    /// For a head: the block its compressed data starts at.
    block: u64,
    /// Where the index after this entry's pack begins (the inline tail follows the last).
    next_pack: u64,
}

/// Where one extent's data is and how to decode it.
struct Extent {
    logical: u64,
    end: u64,
    kind: Kind,
    physical: u64,
    stored: u64,
}

/// A compressed inode's map header and index geometry.
struct Map {
    header_at: u64,
    advise: u16,
    algorithms: u8,
    inline_len: u64,
    compact: bool,
    clusters: u64,
    /// The head cluster and position of the inline tail, with `ztailpacking`.
    tail: Option<(u64, u64)>,
}

impl<R: Read + Seek> Erofs<R> {
    /// The whole data of a compressed inode (its size is bounded by the caller).
    pub(super) fn compressed(&mut self, inode: &Inode) -> Result<Vec<u8>, ImageError> {
        let mut map = self.map(inode)?;
        if map.advise & ADVISE_INLINE_PCLUSTER != 0 {
            let last = self.entry(&map, inode, (inode.size - 1) >> self.superblock.block_bits)?;
            let head = self.extent(&map, inode, inode.size - 1)?;
            let position = last.next_pack;
            let block = self.superblock.block_size();
            if map.inline_len == 0 || position % block + map.inline_len > block {
                return Err(corrupt(
                    inode.at,
                    format!("an inline tail of inode {} inside its block", inode.nid),
                ));
            }
            map.tail = Some((head.logical >> self.superblock.block_bits, position));
        }
        let mut out = Vec::with_capacity(inode.size as usize);
        while (out.len() as u64) < inode.size {
            let at = out.len() as u64;
            let extent = self.extent(&map, inode, at)?;
            let stop = extent.end.min(inode.size);
            let bytes = self.decode(&map, inode, &extent, (stop - extent.logical) as usize)?;
            let from = (at - extent.logical) as usize;
            if bytes.len() < (stop - extent.logical) as usize || stop <= at {
                return Err(corrupt(
                    inode.at,
                    format!(
                        "cluster data of inode {} for bytes {at} to {stop}",
                        inode.nid
                    ),
                ));
            }
            out.extend_from_slice(&bytes[from..]);
        }
        Ok(out)
    }

    fn map(&mut self, inode: &Inode) -> Result<Map, ImageError> {
        let header_at = (inode.at + inode.inline_at).next_multiple_of(8);
        let h = self.read(header_at, 8)?;
        let unsupported = |what: &str| ImageError::Unsupported {
            format: "EROFS",
            what: what.to_string(),
        };
        let advise = u16::from_le_bytes([h[4], h[5]]);
        let compact = inode.layout == super::LAYOUT_COMPRESSED_COMPACT;
        if h[7] & 0x80 != 0 || advise & ADVISE_FRAGMENT != 0 {
            return Err(unsupported(
                "files stored as fragments (mkfs.erofs -Efragments, as Flatcar's extensions since the 4628 releases are)",
            ));
        }
        if advise & ADVISE_INTERLACED != 0 {
            return Err(unsupported("interlaced clusters (made with -Efragments)"));
        }
        if !compact && advise & ADVISE_COMPACTED_2B != 0 {
            return Err(unsupported("extent-record indexes (mkfs.erofs -E48bit)"));
        }
        if h[7] & 0x0F != 0 {
            return Err(corrupt(
                header_at + 7,
                format!(
                    "logical clusters of one block, not 2^{} blocks",
                    h[7] & 0x0F
                ),
            ));
        }
        let big = advise & (ADVISE_BIG_PCLUSTER_1 | ADVISE_BIG_PCLUSTER_2);
        if compact && big != 0 && big != ADVISE_BIG_PCLUSTER_1 | ADVISE_BIG_PCLUSTER_2 {
            return Err(corrupt(
                header_at + 4,
                "both big-cluster flags or neither on a compact inode".into(),
            ));
        }
        Ok(Map {
            header_at,
            advise,
            algorithms: h[6],
            inline_len: u64::from(u16::from_le_bytes([h[2], h[3]])),
            compact,
            clusters: inode.size.div_ceil(self.superblock.block_size()),
            tail: None,
        })
    }

    /// The extent holding logical byte `at`: back from its cluster to the head.
    fn extent(&mut self, map: &Map, inode: &Inode, at: u64) -> Result<Extent, ImageError> {
        let bits = self.superblock.block_bits;
        let cluster = at >> bits;
        let within = at & ((1 << bits) - 1);
        let mut entry = self.entry(map, inode, cluster)?;
        let mut end = (cluster + 1) << bits;
        let mut head_cluster = cluster;
        let mut back = entry.back;
        if entry.kind != Kind::NonHead {
            if within >= entry.cluster_offset {
                if map.advise & ADVISE_INLINE_PCLUSTER != 0 {
                    end = end.min(inode.size);
                }
                back = 0;
            } else {
                if cluster == 0 {
                    return Err(corrupt(
                        inode.at,
                        format!(
                            "inode {}: a first cluster that starts past its own start",
                            inode.nid
                        ),
                    ));
                }
                end = (cluster << bits) | entry.cluster_offset;
                back = 1;
            }
        }
        while back > 0 {
            if back > head_cluster {
                return Err(corrupt(
                    inode.at,
                    format!(
                        "inode {}: a cluster {back} back from {head_cluster}",
                        inode.nid
                    ),
                ));
            }
            head_cluster -= back;
            entry = self.entry(map, inode, head_cluster)?;
            back = match entry.kind {
                Kind::NonHead if entry.back == 0 => {
                    return Err(corrupt(
                        inode.at,
                        format!("inode {}: a cluster that points back 0", inode.nid),
                    ));
                }
                Kind::NonHead => entry.back,
                _ => 0,
            };
        }
        let logical = (head_cluster << bits) | entry.cluster_offset;
        let (physical, stored) = match map.tail {
            Some((tail_head, position)) if tail_head == head_cluster => (position, map.inline_len),
            _ => (
                entry.block << bits,
                self.stored_blocks(map, inode, &entry, head_cluster)? << bits,
            ),
        };
        if stored > PCLUSTER_MAX || end <= logical {
            return Err(corrupt(
                inode.at,
                format!(
                    "inode {}: a cluster of at most 1 MiB covering its bytes",
                    inode.nid
                ),
            ));
        }
        Ok(Extent {
            logical,
            end,
            kind: entry.kind,
            physical,
            stored,
        })
    }

    /// How many blocks a head's compressed data takes: one, or with big clusters the count
    /// its first non-head carries.
    fn stored_blocks(
        &mut self,
        map: &Map,
        inode: &Inode,
        head: &Entry,
        cluster: u64,
    ) -> Result<u64, ImageError> {
        let big = match head.kind {
            Kind::Head1 => map.advise & ADVISE_BIG_PCLUSTER_1 != 0,
            _ => map.advise & ADVISE_BIG_PCLUSTER_2 != 0,
        };
        if !big || (cluster + 1) << self.superblock.block_bits >= inode.size {
            return Ok(1);
        }
        let next = self.entry(map, inode, cluster + 1)?;
        match (next.kind, next.blocks) {
            (Kind::NonHead, Some(blocks)) if blocks > 0 => Ok(blocks),
            (Kind::NonHead, _) => Err(corrupt(
                inode.at,
                format!("inode {}: a big cluster without its block count", inode.nid),
            )),
            _ => Ok(1),
        }
    }

    fn decode(
        &mut self,
        map: &Map,
        inode: &Inode,
        extent: &Extent,
        cap: usize,
    ) -> Result<Vec<u8>, ImageError> {
        let stored = self.read(extent.physical, extent.stored as usize)?;
        let algorithm = match extent.kind {
            Kind::Plain => return Ok(stored[..cap.min(stored.len())].to_vec()),
            Kind::Head1 => map.algorithms & 0x0F,
            _ => map.algorithms >> 4,
        };
        if algorithm != 0 {
            return Err(ImageError::Unsupported {
                format: "EROFS",
                what: format!(
                    "clusters of compression algorithm {algorithm} (only LZ4, 0, is read)"
                ),
            });
        }
        // The data is at the end of its blocks, after zero padding.
        let start = stored.iter().position(|&b| b != 0).unwrap_or(stored.len());
        crate::fs::lz4::decode(&stored[start..], cap).map_err(|why| {
            corrupt(
                extent.physical,
                format!("an LZ4 cluster of inode {} ({why})", inode.nid),
            )
        })
    }

    /// Decodes the index entry of logical cluster `cluster`.
    fn entry(&mut self, map: &Map, inode: &Inode, cluster: u64) -> Result<Entry, ImageError> {
        if cluster >= map.clusters {
            return Err(corrupt(
                map.header_at,
                format!(
                    "inode {}: cluster {cluster} of its {}",
                    inode.nid, map.clusters
                ),
            ));
        }
        let entry = if map.compact {
            self.compact_entry(map, cluster)?
        } else {
            self.full_entry(map, cluster)?
        };
        if entry.kind != Kind::NonHead && entry.cluster_offset >= self.superblock.block_size() {
            return Err(corrupt(
                map.header_at,
                format!("inode {}: a cluster offset inside the cluster", inode.nid),
            ));
        }
        Ok(entry)
    }

    fn full_entry(&mut self, map: &Map, cluster: u64) -> Result<Entry, ImageError> {
        let at = map.header_at + 16 + cluster * 8;
        let b = self.read(at, 8)?;
        let kind = Kind::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])));
        let delta = u32::from(u16::from_le_bytes([b[4], b[5]]));
        let mut entry = Entry {
            kind,
            cluster_offset: u64::from(u16::from_le_bytes([b[2], b[3]])),
            back: 0,
            blocks: None,
            block: u64::from(u32::from_le_bytes([b[4], b[5], b[6], b[7]])),
            next_pack: at + 8,
        };
        if kind == Kind::NonHead {
            (entry.back, entry.blocks) = non_head(delta);
        }
        Ok(entry)
    }

    fn compact_entry(&mut self, map: &Map, cluster: u64) -> Result<Entry, ImageError> {
        let start = map.header_at + 8;
        let initial = ((32 - start % 32) / 4) & 7;
        let two_byte = if map.advise & ADVISE_COMPACTED_2B != 0 && initial < map.clusters {
            (map.clusters - initial) / 16 * 16
        } else {
            0
        };
        let (position, entry_len) = if cluster < initial {
            (start + 4 * cluster, 4)
        } else if cluster - initial < two_byte {
            (start + 4 * initial + 2 * (cluster - initial), 2)
        } else {
            (
                start + 4 * initial + 2 * two_byte + 4 * (cluster - initial - two_byte),
                4,
            )
        };
        let (count, bits) = if entry_len == 4 {
            (2u64, 16u64)
        } else {
            (16, 14)
        };
        // Offsets and counts take `lobits`, the type the 2 bits above them.
        let lobits = u32::from(self.superblock.block_bits).max(12);
        if lobits + 2 > bits as u32 {
            return Err(ImageError::Unsupported {
                format: "EROFS",
                what: format!(
                    "compact indexes of {bits}-bit entries for {}-byte blocks",
                    self.superblock.block_size()
                ),
            });
        }
        let pack_len = count * entry_len;
        let pack_at = position / pack_len * pack_len;
        let pack = self.read(pack_at, pack_len as usize)?;
        let index = ((position - pack_at) / entry_len) as usize;
        let decode = |i: usize| -> (u32, Kind) {
            let bit = bits as usize * i;
            let mut word = [0u8; 4];
            let available = &pack[bit / 8..(bit / 8 + 4).min(pack.len())];
            word[..available.len()].copy_from_slice(available);
            let v = u32::from_le_bytes(word) >> (bit % 8);
            (v & ((1 << lobits) - 1), Kind::from_bits(v >> lobits))
        };
        let base = u64::from(u32::from_le_bytes(
            pack[pack.len() - 4..].try_into().expect("4 bytes"),
        ));
        let (lo, kind) = decode(index);
        let mut entry = Entry {
            kind,
            cluster_offset: u64::from(lo),
            back: 0,
            blocks: None,
            block: 0,
            next_pack: pack_at + pack_len,
        };
        let big = map.advise & ADVISE_BIG_PCLUSTER_1 != 0;
        if kind == Kind::NonHead {
            if lo & CBLKCNT != 0 {
                if !big {
                    return Err(corrupt(
                        pack_at,
                        "a block count only in big-cluster files".into(),
                    ));
                }
                (entry.back, entry.blocks) = (1, Some(u64::from(lo & !CBLKCNT)));
            } else if index + 1 != count as usize {
                entry.back = u64::from(lo);
            } else {
                // The last entry of a pack keeps the distance forward; the distance back
                // follows from the entry before it.
                let (before, before_kind) = decode(index - 1);
                entry.back = match before_kind {
                    Kind::NonHead if before & CBLKCNT != 0 => 2,
                    Kind::NonHead => u64::from(before) + 1,
                    _ => 1,
                };
            }
            return Ok(entry);
        }
        // A head's block: the pack's base plus the blocks of the clusters before it in the pack.
        let mut blocks = if big { 0u64 } else { 1 };
        let mut i = index as i64;
        while i > 0 {
            i -= 1;
            let (lo, kind) = decode(i as usize);
            if kind != Kind::NonHead {
                blocks += 1;
            } else if big && lo & CBLKCNT != 0 {
                i -= 1;
                blocks += u64::from(lo & !CBLKCNT);
            } else if big {
                if lo <= 1 {
                    return Err(corrupt(
                        pack_at,
                        "a distance back of at least 2 in a big-cluster file".into(),
                    ));
                }
                i -= i64::from(lo) - 2;
            } else {
                i -= i64::from(lo);
                if i >= 0 {
                    blocks += 1;
                }
            }
        }
        entry.block = base + blocks;
        Ok(entry)
    }

    fn read(&mut self, at: u64, len: usize) -> Result<Vec<u8>, ImageError> {
        crate::fs::image::read_at(super::FORMAT, &mut self.image, self.len, at, len)
    }
}

/// A full index's non-head delta: the distance back, or (flagged) the block count.
fn non_head(delta: u32) -> (u64, Option<u64>) {
    if delta & CBLKCNT != 0 {
        (1, Some(u64::from(delta & !CBLKCNT)))
    } else {
        (u64::from(delta), None)
    }
}
