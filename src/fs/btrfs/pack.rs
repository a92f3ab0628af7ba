//! Packing sorted items into tree blocks: leaves filled greedily, then node levels of at
//! most (nodesize − 101) / 33 pointers, until one root remains.
//!
//! Leaf layout: header (101 bytes), item headers (key 17, data offset u32, data size u32)
//! growing forward, item data packed backwards from the block's end with no gaps; offsets
//! count from the end of the header. Node layout: header, then key pointers (first key of
//! the child 17, child address u64, child generation u64).

use std::ops::Range;

use super::crc;
use super::format::{HEADER_FLAGS, HEADER_SIZE, ITEM_SIZE, KEY_PTR_SIZE, Key};

pub(crate) struct PackedTree {
    pub owner: u64,
    items: Vec<(Key, Vec<u8>)>,
    /// Level 0: item ranges per leaf; level n: child ranges (indexes into level n − 1).
    levels: Vec<Vec<Range<usize>>>,
    addresses: Vec<Vec<u64>>,
}

/// What every block of a filesystem shares.
pub(crate) struct BlockContext {
    pub fsid: [u8; 16],
    pub(crate) chunk_tree_uuid: [u8; 16],
    pub generation: u64,
    pub nodesize: usize,
}

impl PackedTree {
    /// `items` in any order; keys must be unique.
    pub fn new(owner: u64, mut items: Vec<(Key, Vec<u8>)>, nodesize: usize) -> Result<Self, Key> {
        items.sort_by_key(|(key, _)| *key);
        if let Some(pair) = items.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(pair[0].0);
        }
        let capacity = nodesize - HEADER_SIZE;
        let mut leaves = Vec::new();
        let mut start = 0;
        let mut used = 0;
        for (i, (_, data)) in items.iter().enumerate() {
            let need = ITEM_SIZE + data.len();
            if i > start && used + need > capacity {
                leaves.push(start..i);
                start = i;
                used = 0;
            }
            used += need;
        }
        leaves.push(start..items.len());
        let mut levels = vec![leaves];
        let per_node = (nodesize - HEADER_SIZE) / KEY_PTR_SIZE;
        while levels.last().expect("a level").len() > 1 {
            let below = levels.last().expect("a level").len();
            let nodes = (0..below)
                .step_by(per_node)
                .map(|s| s..(s + per_node).min(below))
                .collect();
            levels.push(nodes);
        }
        Ok(PackedTree {
            owner,
            items,
            levels,
            addresses: Vec::new(),
        })
    }

    pub(crate) fn block_count(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }

    pub fn level(&self) -> u8 {
        (self.levels.len() - 1) as u8
    }

    /// Gives every block an address, leaves first.
    pub(crate) fn assign(&mut self, mut allocate: impl FnMut() -> u64) {
        self.addresses = self
            .levels
            .iter()
            .map(|l| l.iter().map(|_| allocate()).collect())
            .collect();
    }

    pub fn root(&self) -> u64 {
        self.addresses
            .last()
            .and_then(|l| l.first())
            .copied()
            .expect("addresses assigned")
    }

    fn first_key(&self, mut level: usize, mut index: usize) -> Key {
        while level > 0 {
            index = self.levels[level][index].start;
            level -= 1;
        }
        let range = &self.levels[0][index];
        self.items
            .get(range.start)
            .filter(|_| !range.is_empty())
            .map_or(Key::default(), |(k, _)| *k)
    }

    /// `(address, level)` of every block.
    pub fn blocks(&self) -> Vec<(u64, u8)> {
        self.addresses
            .iter()
            .enumerate()
            .flat_map(|(level, addresses)| addresses.iter().map(move |a| (*a, level as u8)))
            .collect()
    }

    /// Every block's bytes, checksummed, with its logical address.
    pub(crate) fn serialize(&self, context: &BlockContext) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::with_capacity(self.block_count());
        for (level, blocks) in self.levels.iter().enumerate() {
            for (index, range) in blocks.iter().enumerate() {
                let address = self.addresses[level][index];
                let mut block = vec![0u8; context.nodesize];
                let mut at = HEADER_SIZE;
                if level == 0 {
                    let mut data_end = context.nodesize - HEADER_SIZE;
                    for (key, data) in &self.items[range.clone()] {
                        data_end -= data.len();
                        let mut head = Vec::with_capacity(ITEM_SIZE);
                        key.encode(&mut head);
                        head.extend_from_slice(&(data_end as u32).to_le_bytes());
                        head.extend_from_slice(&(data.len() as u32).to_le_bytes());
                        block[at..at + ITEM_SIZE].copy_from_slice(&head);
                        at += ITEM_SIZE;
                        block[HEADER_SIZE + data_end..HEADER_SIZE + data_end + data.len()]
                            .copy_from_slice(data);
                    }
                } else {
                    for child in range.clone() {
                        let mut pointer = Vec::with_capacity(KEY_PTR_SIZE);
                        self.first_key(level - 1, child).encode(&mut pointer);
                        pointer.extend_from_slice(&self.addresses[level - 1][child].to_le_bytes());
                        pointer.extend_from_slice(&context.generation.to_le_bytes());
                        block[at..at + KEY_PTR_SIZE].copy_from_slice(&pointer);
                        at += KEY_PTR_SIZE;
                    }
                }
                write_header(
                    &mut block,
                    context,
                    address,
                    self.owner,
                    range.len() as u32,
                    level as u8,
                );
                out.push((address, block));
            }
        }
        out
    }
}

/// Header: csum @0 (32), fsid @0x20, bytenr @0x30, flags @0x38, chunk_tree_uuid @0x40,
/// generation @0x50, owner @0x58, nritems @0x60, level @0x64. The checksum covers
/// everything after the csum field.
fn write_header(
    block: &mut [u8],
    context: &BlockContext,
    address: u64,
    owner: u64,
    items: u32,
    level: u8,
) {
    block[0x20..0x30].copy_from_slice(&context.fsid);
    block[0x30..0x38].copy_from_slice(&address.to_le_bytes());
    block[0x38..0x40].copy_from_slice(&HEADER_FLAGS.to_le_bytes());
    block[0x40..0x50].copy_from_slice(&context.chunk_tree_uuid);
    block[0x50..0x58].copy_from_slice(&context.generation.to_le_bytes());
    block[0x58..0x60].copy_from_slice(&owner.to_le_bytes());
    block[0x60..0x64].copy_from_slice(&items.to_le_bytes());
    block[0x64] = level;
    let sum = crc::checksum(&block[0x20..]);
    block[0..4].copy_from_slice(&sum.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_items_make_a_multi_level_tree() {
        let items: Vec<(Key, Vec<u8>)> = (0..20_000u64)
            .map(|i| (Key::new(i, 1, 0), vec![7u8; 100]))
            .collect();
        let mut tree = PackedTree::new(5, items, 16384).unwrap();
        assert!(tree.level() >= 1);
        let mut next = 0u64;
        tree.assign(|| {
            next += 16384;
            next
        });
        let context = BlockContext {
            fsid: [1; 16],
            chunk_tree_uuid: [2; 16],
            generation: 1,
            nodesize: 16384,
        };
        let blocks = tree.serialize(&context);
        assert_eq!(blocks.len(), tree.block_count());
        for (_, block) in &blocks {
            assert_eq!(
                u32::from_le_bytes(block[0..4].try_into().unwrap()),
                crc::checksum(&block[0x20..])
            );
        }
        assert!(
            PackedTree::new(
                5,
                vec![(Key::new(1, 1, 0), vec![]), (Key::new(1, 1, 0), vec![])],
                16384
            )
            .is_err()
        );
    }
}
