//! The upload plan of an EBS snapshot. EBS direct APIs take exactly 512 KiB blocks, each with
//! its SHA-256, and at completion the changed-block count and a LINEAR aggregate: the SHA-256
//! of the blocks' digests concatenated in block order.
//!
//! Which blocks: without a parent snapshot, a new snapshot reads zeros wherever nothing was
//! written, so the holes of our sparse image can be skipped (and only holes: a written block
//! of zeros is still sent). With a parent, a block not sent reads as the parent's, so every
//! block that differs from the parent's image is sent, including ones that became zeros.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::disk::sparse::data_extents;

/// The only block size the EBS direct APIs accept.
pub const BLOCK: u64 = 512 * 1024;
const GIB: u64 = 1 << 30;

/// One block to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockPlan {
    pub index: u64,
    pub sha256: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPlan {
    /// The image's size in bytes.
    pub image_size: u64,
    /// The snapshot's volume size: the image rounded up to whole GiB.
    pub volume_size_gib: u64,
    /// Blocks in the volume.
    pub total_blocks: u64,
    /// Blocks to send, in index order.
    pub blocks: Vec<BlockPlan>,
    /// Whether the plan is relative to a parent image.
    pub(crate) has_parent: bool,
}

impl UploadPlan {
    pub fn bytes(&self) -> u64 {
        self.blocks.len() as u64 * BLOCK
    }

    /// The LINEAR aggregate checksum CompleteSnapshot is given.
    pub fn aggregate_checksum(&self) -> String {
        linear_checksum(self.blocks.iter().map(|b| b.sha256))
    }
}

/// base64(SHA-256(digest_0 || digest_1 || ...)) over the sent blocks in index order.
pub(crate) fn linear_checksum(digests: impl Iterator<Item = [u8; 32]>) -> String {
    let mut hasher = Sha256::new();
    for digest in digests {
        hasher.update(digest);
    }
    base64::engine::general_purpose::STANDARD.encode(hasher.finalize())
}

/// Blocks (by index) that hold any written byte of `file`.
fn written_blocks(file: &File, size: u64) -> io::Result<Vec<u64>> {
    let mut blocks: Vec<u64> = Vec::new();
    for (offset, length) in data_extents(file, 0, size)? {
        let first = offset / BLOCK;
        let last = (offset + length - 1) / BLOCK;
        let from = match blocks.last() {
            Some(&seen) if seen >= first => seen + 1,
            _ => first,
        };
        blocks.extend(from..=last);
    }
    Ok(blocks)
}

/// Reads block `index` of `file` (zeros past its end) into `buffer`.
pub(super) fn read_block(file: &File, size: u64, index: u64, buffer: &mut [u8]) -> io::Result<()> {
    buffer.fill(0);
    let start = index * BLOCK;
    if start < size {
        let len = (size - start).min(BLOCK) as usize;
        file.read_exact_at(&mut buffer[..len], start)?;
    }
    Ok(())
}

/// Plans the upload of `image`, on top of `parent` (the image its parent snapshot was made
/// from) if given. Reads only the written blocks of either, one block at a time.
pub fn plan(image: &File, parent: Option<&File>) -> io::Result<UploadPlan> {
    let size = image.metadata()?.len();
    let volume_size_gib = size.div_ceil(GIB).max(1);
    let total_blocks = volume_size_gib * GIB / BLOCK;
    let mine = written_blocks(image, size)?;
    let mut blocks = Vec::new();
    let mut buffer = vec![0u8; BLOCK as usize];
    match parent {
        None => {
            for index in mine {
                read_block(image, size, index, &mut buffer)?;
                blocks.push(BlockPlan {
                    index,
                    sha256: Sha256::digest(&buffer).into(),
                });
            }
        }
        Some(parent) => {
            let parent_size = parent.metadata()?.len();
            let theirs = written_blocks(parent, parent_size)?;
            let mut other = vec![0u8; BLOCK as usize];
            // Every block written in either image may differ; all others are zeros in both.
            let mut candidates: Vec<u64> = mine.into_iter().chain(theirs).collect();
            candidates.sort_unstable();
            candidates.dedup();
            for index in candidates.into_iter().filter(|&i| i < total_blocks) {
                read_block(image, size, index, &mut buffer)?;
                read_block(parent, parent_size, index, &mut other)?;
                if buffer != other {
                    blocks.push(BlockPlan {
                        index,
                        sha256: Sha256::digest(&buffer).into(),
                    });
                }
            }
        }
    }
    Ok(UploadPlan {
        image_size: size,
        volume_size_gib,
        total_blocks,
        blocks,
        has_parent: parent.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn image(blocks: &[(u64, u8)], len_blocks: u64) -> File {
        let mut file = tempfile::tempfile().unwrap();
        file.set_len(len_blocks * BLOCK).unwrap();
        for &(index, byte) in blocks {
            file.write_all_at(&vec![byte; BLOCK as usize], index * BLOCK)
                .unwrap();
        }
        file.flush().unwrap();
        file
    }

    fn indexes(plan: &UploadPlan) -> Vec<u64> {
        plan.blocks.iter().map(|b| b.index).collect()
    }

    #[test]
    fn without_a_parent_only_holes_are_skipped() {
        // Block 3 is written with zeros: it is not a hole, so it is sent.
        let file = image(&[(0, 1), (3, 0), (9, 7)], 20);
        let plan = plan(&file, None).unwrap();
        assert_eq!(indexes(&plan), [0, 3, 9]);
        assert_eq!(plan.volume_size_gib, 1);
        assert_eq!(plan.total_blocks, 2048);
        assert_eq!(
            plan.blocks[1].sha256,
            <[u8; 32]>::from(Sha256::digest(vec![0u8; BLOCK as usize]))
        );
    }

    #[test]
    fn with_a_parent_every_differing_block_is_sent_even_zeros() {
        let parent = image(&[(0, 1), (2, 2), (5, 5), (7, 7)], 20);
        // 0 same, 2 changed, 5 now a hole (must be sent as zeros), 7 now written zeros, 11 new.
        let child = image(&[(0, 1), (2, 9), (7, 0), (11, 4)], 20);
        let plan = plan(&child, Some(&parent)).unwrap();
        assert_eq!(indexes(&plan), [2, 5, 7, 11]);
        let zeros: [u8; 32] = Sha256::digest(vec![0u8; BLOCK as usize]).into();
        assert_eq!(plan.blocks[1].sha256, zeros);
    }

    #[test]
    fn the_linear_checksum_is_the_hash_of_the_block_hashes_in_order() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        let mut joined = a.to_vec();
        joined.extend_from_slice(&b);
        let expected = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&joined));
        assert_eq!(linear_checksum([a, b].into_iter()), expected);
        assert_ne!(linear_checksum([b, a].into_iter()), expected);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Against a model that compares every block: the plan sends exactly the blocks whose
        /// contents differ from what the snapshot would read without them.
        #[test]
        fn plans_match_a_block_by_block_model(
            parent in proptest::collection::vec(proptest::option::of(0u8..3), 12),
            child in proptest::collection::vec(proptest::option::of(0u8..3), 12),
            with_parent: bool,
        ) {
            let written = |v: &[Option<u8>]| v.iter().enumerate().filter_map(|(i, b)| b.map(|b| (i as u64, b))).collect::<Vec<_>>();
            let parent_file = image(&written(&parent), 12);
            let child_file = image(&written(&child), 12);
            let got = plan(&child_file, with_parent.then_some(&parent_file)).unwrap();
            let expected: Vec<u64> = (0..12u64)
                .filter(|&i| {
                    let mine = child[i as usize];
                    if with_parent {
                        mine.unwrap_or(0) != parent[i as usize].unwrap_or(0)
                    } else {
                        mine.is_some()
                    }
                })
                .collect();
            proptest::prop_assert_eq!(indexes(&got), expected);
        }
    }
}
