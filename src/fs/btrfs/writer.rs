//! Writing a new single-device btrfs filesystem from a file tree.
//!
//! Layout (logical addresses equal physical ones, every profile SINGLE): the first MiB is
//! left alone, a 1 MiB SYSTEM chunk holds the chunk tree, then a DATA chunk sized to the
//! files, then a METADATA chunk sized to the other trees; the rest stays unallocated for
//! the kernel. Nothing is allocated in the 64 KiB at a superblock mirror. Every tree block
//! carries generation 1, so the generation links the kernel checks (root items, node
//! pointers, superblock) agree by construction.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

use super::crc;
use super::format::*;
use super::pack::{BlockContext, PackedTree};
use crate::fs::tree::{Contents, Entry, FileTree, Kind};

pub const NODESIZE: usize = 16384;
pub const SECTOR: u64 = 4096;
const MIB: u64 = 1 << 20;
const SYSTEM_START: u64 = MIB;
/// One MiB holds a chunk tree for thousands of chunks; the kernel adds chunks as it needs.
const SYSTEM_LEN: u64 = MIB;
const DATA_START: u64 = SYSTEM_START + SYSTEM_LEN;
/// Files up to this size are stored inside the tree, as the kernel does by default.
pub const MAX_INLINE: u64 = 2048;
const MAX_EXTENT: u64 = 128 * MIB;
const MAX_SYMLINK: usize = 4095;
const MAX_NAME: usize = 255;
/// Checksums per EXTENT_CSUM item.
const CSUMS_PER_ITEM: usize = 1024;
const GENERATION: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the files need at least {needed} bytes of btrfs, but the partition is {size} bytes")]
    TooSmall { needed: u64, size: u64 },
    #[error("{path}: {why}")]
    Entry { path: String, why: String },
    #[error("{path}: {source}")]
    Source { path: String, source: io::Error },
    #[error("writing the filesystem: {0}")]
    Io(#[from] io::Error),
}

/// How to write: size and identity. The same tree and options give the same bytes.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub size: u64,
    pub label: String,
    /// The filesystem UUID (keep the old one when replacing a filesystem).
    pub fsid: [u8; 16],
    /// Creation time recorded in the filesystem tree's root item.
    pub time: Timespec,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSummary {
    pub bytes_used: u64,
    pub data_extents: usize,
    pub tree_blocks: usize,
}

/// An inode being written.
struct Node<'a> {
    ino: u64,
    parent: u64,
    index: u64,
    name: Vec<u8>,
    path: String,
    entry: &'a Entry,
}

struct DataExtent {
    logical: u64,
    disk_len: u64,
    ino: u64,
    file_offset: u64,
    len: u64,
}

/// Sub-UUIDs (device, chunk tree, fs tree) derived from the fsid, so nothing is random.
fn round_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// The start of a range of `len` bytes at or after `at` that avoids the superblock mirrors.
fn avoid_mirrors(mut at: u64, len: u64) -> u64 {
    for mirror in SUPER_MIRRORS {
        if at < mirror + 0x10000 && at + len > mirror {
            at = mirror + 0x10000;
        }
    }
    at
}

fn file_type(entry: &Entry) -> u8 {
    match entry.kind {
        Kind::File(_) => FT_REG_FILE,
        Kind::Dir(_) => FT_DIR,
        Kind::Symlink(_) => FT_SYMLINK,
    }
}

fn mode(entry: &Entry) -> u32 {
    let kind = match entry.kind {
        Kind::File(_) => 0o100000,
        Kind::Dir(_) => 0o040000,
        Kind::Symlink(_) => 0o120000,
    };
    kind | (entry.meta.mode & 0o7777)
}

/// Writes `tree` as a btrfs filesystem of `options.size` bytes into `out` (offset 0 is the
/// filesystem's first byte). Bytes the filesystem does not use are not written: give a
/// zeroed (or sparse) target for byte-identical results.
pub fn write<W: Write + Seek>(
    tree: &FileTree,
    options: &WriteOptions,
    out: &mut W,
) -> Result<WriteSummary, WriteError> {
    let size = options.size / SECTOR * SECTOR;
    let fsid = options.fsid;
    let dev_uuid = crate::disk::guid::derive(&fsid, "device");
    let chunk_tree_uuid = crate::disk::guid::derive(&fsid, "chunk tree");
    let fs_uuid = crate::disk::guid::derive(&fsid, "fs tree");
    if options.label.len() > 255 || options.label.contains('\0') {
        return Err(WriteError::Entry {
            path: "(label)".into(),
            why: "a label is at most 255 bytes, without NUL".into(),
        });
    }

    // Inodes: 256 is the root, then every entry in walk order (parents first, by name).
    let walked = tree.walk();
    let mut nodes = vec![Node {
        ino: FIRST_INODE,
        parent: FIRST_INODE,
        index: 0,
        name: b"..".to_vec(),
        path: "/".into(),
        entry: &tree.root,
    }];
    let mut ino_of: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    let mut next_index: BTreeMap<u64, u64> = BTreeMap::new();
    for (path, entry) in &walked {
        let (parent_path, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&path[..0], &path[..]),
        };
        let display = String::from_utf8_lossy(path).into_owned();
        if name.len() > MAX_NAME {
            return Err(WriteError::Entry {
                path: display,
                why: format!("name longer than {MAX_NAME} bytes"),
            });
        }
        let parent = if parent_path.is_empty() {
            FIRST_INODE
        } else {
            ino_of[parent_path]
        };
        let ino = FIRST_INODE + 1 + nodes.len() as u64 - 1;
        let index = next_index.entry(parent).or_insert(2);
        nodes.push(Node {
            ino,
            parent,
            index: *index,
            name: name.to_vec(),
            path: display,
            entry,
        });
        *index += 1;
        ino_of.insert(path.clone(), ino);
    }

    // Data extents, placed in order after the SYSTEM chunk.
    let mut extents = Vec::new();
    let mut cursor = DATA_START;
    for node in &nodes {
        if let Kind::File(contents) = &node.entry.kind {
            let len = contents.len();
            if len <= MAX_INLINE {
                continue;
            }
            let mut offset = 0;
            while offset < len {
                // An extent ends where a superblock mirror starts and the next one starts
                // after the mirror's 64 KiB, so no space but that is lost.
                cursor = avoid_mirrors(cursor, SECTOR);
                let before_mirror = SUPER_MIRRORS
                    .iter()
                    .find(|&&m| m > cursor)
                    .map_or(u64::MAX, |m| m - cursor);
                let piece = (len - offset).min(MAX_EXTENT).min(before_mirror);
                let disk_len = round_up(piece, SECTOR);
                extents.push(DataExtent {
                    logical: cursor,
                    disk_len,
                    ino: node.ino,
                    file_offset: offset,
                    len: piece,
                });
                cursor += disk_len;
                offset += piece;
            }
        }
    }
    // Empty space in the data chunk is room for the kernel's own writes: keep 8 MiB of
    // chunk when the partition has room for it.
    let data_needed = round_up(cursor - DATA_START, MIB);
    let data_len = if DATA_START + 8 * MIB + 4 * MIB <= size {
        data_needed.max(8 * MIB)
    } else {
        data_needed.max(MIB)
    };
    let meta_start = DATA_START + data_len;
    if meta_start + MIB > size {
        return Err(WriteError::TooSmall {
            needed: meta_start + MIB,
            size,
        });
    }

    // Write the data, checksumming each sector as it goes.
    let mut csums: Vec<Vec<u32>> = Vec::with_capacity(extents.len());
    let mut sources: BTreeMap<u64, File> = BTreeMap::new();
    let by_ino: BTreeMap<u64, &Node> = nodes.iter().map(|n| (n.ino, n)).collect();
    let mut buffer = vec![0u8; MIB as usize];
    for extent in &extents {
        let node = by_ino[&extent.ino];
        let Kind::File(contents) = &node.entry.kind else {
            unreachable!("extents belong to files")
        };
        out.seek(SeekFrom::Start(extent.logical))?;
        let mut sums = Vec::with_capacity((extent.disk_len / SECTOR) as usize);
        let mut done = 0u64;
        while done < extent.disk_len {
            let step = (extent.disk_len - done).min(buffer.len() as u64) as usize;
            let chunk = &mut buffer[..step];
            chunk.fill(0);
            let want = extent.len.saturating_sub(done).min(step as u64) as usize;
            let at = extent.file_offset + done;
            match contents {
                Contents::Bytes(bytes) => {
                    chunk[..want].copy_from_slice(&bytes[at as usize..at as usize + want])
                }
                Contents::Host { path, .. } => {
                    let source_error = |source| WriteError::Source {
                        path: path.display().to_string(),
                        source,
                    };
                    let file = match sources.entry(extent.ino) {
                        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::btree_map::Entry::Vacant(v) => {
                            v.insert(File::open(path).map_err(source_error)?)
                        }
                    };
                    file.seek(SeekFrom::Start(at)).map_err(source_error)?;
                    file.read_exact(&mut chunk[..want]).map_err(source_error)?;
                }
            }
            for sector in chunk.chunks(SECTOR as usize) {
                sums.push(crc::checksum(sector));
            }
            out.write_all(chunk)?;
            done += step as u64;
        }
        csums.push(sums);
    }
    drop(sources);

    // The filesystem tree.
    let mut fs_items: Vec<(Key, Vec<u8>)> = Vec::new();
    let mut dir_items: BTreeMap<Key, Vec<u8>> = BTreeMap::new();
    let mut dir_sizes: BTreeMap<u64, u64> = BTreeMap::new();
    for node in &nodes[1..] {
        let location = Key::new(node.ino, INODE_ITEM, 0);
        let kind = file_type(node.entry);
        let item = dir_item(location, GENERATION, &node.name, kind, &[]);
        dir_items
            .entry(Key::new(node.parent, DIR_ITEM, crc::name_hash(&node.name)))
            .or_default()
            .extend_from_slice(&item);
        fs_items.push((Key::new(node.parent, DIR_INDEX, node.index), item));
        *dir_sizes.entry(node.parent).or_insert(0) += 2 * node.name.len() as u64;
    }
    for node in &nodes {
        let meta = &node.entry.meta;
        let (size, nbytes) = match &node.entry.kind {
            Kind::Dir(_) => (dir_sizes.get(&node.ino).copied().unwrap_or(0), 0),
            Kind::Symlink(target) => {
                if target.len() > MAX_SYMLINK || target.is_empty() || target.contains(&0) {
                    return Err(WriteError::Entry {
                        path: node.path.clone(),
                        why: format!(
                            "a symlink target must be 1..={MAX_SYMLINK} bytes without NUL"
                        ),
                    });
                }
                fs_items.push((
                    Key::new(node.ino, EXTENT_DATA, 0),
                    file_extent_inline(GENERATION, target),
                ));
                (target.len() as u64, target.len() as u64)
            }
            Kind::File(contents) => {
                let len = contents.len();
                if len > 0 && len <= MAX_INLINE {
                    let data = match contents {
                        Contents::Bytes(bytes) => bytes.clone(),
                        Contents::Host { path, .. } => {
                            std::fs::read(path).map_err(|source| WriteError::Source {
                                path: path.display().to_string(),
                                source,
                            })?
                        }
                    };
                    if data.len() as u64 != len {
                        return Err(WriteError::Entry {
                            path: node.path.clone(),
                            why: "changed size while being written".into(),
                        });
                    }
                    fs_items.push((
                        Key::new(node.ino, EXTENT_DATA, 0),
                        file_extent_inline(GENERATION, &data),
                    ));
                    (len, len)
                } else {
                    (len, round_up(len, SECTOR))
                }
            }
        };
        let inode = InodeItem {
            generation: GENERATION,
            transid: GENERATION,
            size,
            nbytes,
            nlink: 1,
            uid: meta.uid,
            gid: meta.gid,
            mode: mode(node.entry),
            rdev: 0,
            flags: 0,
            atime: meta.atime,
            ctime: meta.ctime,
            mtime: meta.mtime,
            otime: meta.otime,
        };
        fs_items.push((Key::new(node.ino, INODE_ITEM, 0), inode.encode()));
        fs_items.push((
            Key::new(node.ino, INODE_REF, node.parent),
            inode_ref(node.index, &node.name),
        ));
        let mut xattrs: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        for (name, value) in &meta.xattrs {
            if name.is_empty() || name.len() > MAX_NAME {
                return Err(WriteError::Entry {
                    path: node.path.clone(),
                    why: format!("xattr name must be 1..={MAX_NAME} bytes"),
                });
            }
            xattrs
                .entry(crc::name_hash(name))
                .or_default()
                .extend(dir_item(Key::default(), GENERATION, name, FT_XATTR, value));
        }
        for (hash, item) in xattrs {
            if item.len() > NODESIZE - HEADER_SIZE - ITEM_SIZE {
                return Err(WriteError::Entry {
                    path: node.path.clone(),
                    why: "xattrs too large for one tree leaf".into(),
                });
            }
            fs_items.push((Key::new(node.ino, XATTR_ITEM, hash), item));
        }
    }
    for extent in &extents {
        fs_items.push((
            Key::new(extent.ino, EXTENT_DATA, extent.file_offset),
            file_extent_regular(GENERATION, extent.logical, extent.disk_len, extent.disk_len),
        ));
    }
    fs_items.extend(dir_items);

    let mut csum_items = Vec::new();
    for (extent, sums) in extents.iter().zip(&csums) {
        for (i, group) in sums.chunks(CSUMS_PER_ITEM).enumerate() {
            let bytes: Vec<u8> = group.iter().flat_map(|s| s.to_le_bytes()).collect();
            let logical = extent.logical + (i * CSUMS_PER_ITEM) as u64 * SECTOR;
            csum_items.push((Key::new(EXTENT_CSUM_OBJECTID, EXTENT_CSUM, logical), bytes));
        }
    }

    let pack = |owner, items| {
        PackedTree::new(owner, items, NODESIZE).map_err(|key| WriteError::Entry {
            path: format!("tree {owner}"),
            why: format!("duplicate key {key:?}"),
        })
    };
    let mut fs_tree = pack(FS_TREE, fs_items)?;
    let mut csum_tree = pack(CSUM_TREE, csum_items)?;
    let mut reloc_tree = pack(DATA_RELOC_TREE, empty_dir_items(FIRST_INODE).to_vec())?;
    let uuid_key = Key::new(
        u64::from_le_bytes(fs_uuid[..8].try_into().expect("8")),
        UUID_KEY_SUBVOL,
        u64::from_le_bytes(fs_uuid[8..].try_into().expect("8")),
    );
    let mut uuid_tree = pack(UUID_TREE, vec![(uuid_key, FS_TREE.to_le_bytes().to_vec())])?;

    // Metadata chunk: room for every tree with slack, at least 8 MiB.
    let known_blocks = fs_tree.block_count() + csum_tree.block_count() + 8;
    let extent_items = known_blocks + extents.len() + 3;
    let estimate = known_blocks + extent_items * 60 / (NODESIZE - HEADER_SIZE) + 4;
    let meta_len = round_up((estimate as u64 * NODESIZE as u64) * 5 / 4 + MIB, MIB);
    if meta_start + meta_len > size {
        return Err(WriteError::TooSmall {
            needed: meta_start + meta_len,
            size,
        });
    }
    let chunks = [
        (SYSTEM_START, SYSTEM_LEN, BG_SYSTEM),
        (DATA_START, data_len, BG_DATA),
        (meta_start, meta_len, BG_METADATA),
    ];
    let dev_used: u64 = chunks.iter().map(|c| c.1).sum();
    let device = dev_item(size, dev_used, SECTOR as u32, &dev_uuid, &fsid);
    let chunk_items: Vec<(Key, Vec<u8>)> =
        std::iter::once((Key::new(DEV_ITEMS, DEV_ITEM, 1), device.clone()))
            .chain(chunks.iter().map(|&(logical, len, kind)| {
                let io_align = if kind == BG_SYSTEM {
                    SECTOR as u32
                } else {
                    0x10000
                };
                (
                    Key::new(FIRST_CHUNK_TREE, CHUNK_ITEM, logical),
                    chunk_item(len, kind, io_align, SECTOR as u32, logical, &dev_uuid),
                )
            }))
            .collect();
    let mut chunk_tree = pack(CHUNK_TREE, chunk_items)?;
    let dev_items = chunks
        .iter()
        .map(|&(logical, len, _)| {
            (
                Key::new(1, DEV_EXTENT, logical),
                dev_extent(logical, len, &chunk_tree_uuid),
            )
        })
        .collect();
    let mut dev_tree = pack(DEV_TREE, dev_items)?;

    // The extent tree and the free space tree describe every block, their own included:
    // guess their sizes, allocate, rebuild, until the sizes stop changing.
    let (mut extent_blocks, mut fst_blocks) = (1usize, 1usize);
    for _ in 0..16 {
        let mut system_cursor = SYSTEM_START;
        chunk_tree.assign(|| {
            let at = system_cursor;
            system_cursor += NODESIZE as u64;
            at
        });
        let mut meta_cursor = meta_start;
        let mut allocate = || {
            let at = avoid_mirrors(meta_cursor, NODESIZE as u64);
            meta_cursor = at + NODESIZE as u64;
            at
        };
        for tree in [
            &mut fs_tree,
            &mut csum_tree,
            &mut dev_tree,
            &mut reloc_tree,
            &mut uuid_tree,
        ] {
            tree.assign(&mut allocate);
        }
        let extent_addresses: Vec<u64> = (0..extent_blocks).map(|_| allocate()).collect();
        let fst_addresses: Vec<u64> = (0..fst_blocks).map(|_| allocate()).collect();
        let root_items = |extent_root: (u64, u8, usize),
                          fst_root: (u64, u8, usize)|
         -> Vec<(Key, Vec<u8>)> {
            let item = |tree_root: (u64, u8, usize), dirid: u64, uuid: [u8; 16], time: Timespec| {
                RootItem {
                    generation: GENERATION,
                    root_dirid: dirid,
                    bytenr: tree_root.0,
                    bytes_used: (tree_root.2 * NODESIZE) as u64,
                    level: tree_root.1,
                    uuid,
                    time,
                    nodesize: NODESIZE as u64,
                }
                .encode()
            };
            let info = |t: &PackedTree| (t.root(), t.level(), t.block_count());
            let zero = Timespec::default();
            vec![
                (
                    Key::new(EXTENT_TREE, ROOT_ITEM, 0),
                    item(extent_root, 0, [0; 16], zero),
                ),
                (
                    Key::new(DEV_TREE, ROOT_ITEM, 0),
                    item(info(&dev_tree), 0, [0; 16], zero),
                ),
                (
                    Key::new(FS_TREE, ROOT_ITEM, 0),
                    item(info(&fs_tree), FIRST_INODE, fs_uuid, options.time),
                ),
                empty_dir_items(ROOT_TREE_DIR)[0].clone(),
                empty_dir_items(ROOT_TREE_DIR)[1].clone(),
                (
                    Key::new(ROOT_TREE_DIR, DIR_ITEM, crc::name_hash(b"default")),
                    dir_item(
                        Key::new(FS_TREE, ROOT_ITEM, u64::MAX),
                        GENERATION,
                        b"default",
                        FT_DIR,
                        &[],
                    ),
                ),
                (
                    Key::new(CSUM_TREE, ROOT_ITEM, 0),
                    item(info(&csum_tree), 0, [0; 16], zero),
                ),
                (
                    Key::new(UUID_TREE, ROOT_ITEM, 0),
                    item(info(&uuid_tree), 0, [0; 16], zero),
                ),
                (
                    Key::new(FREE_SPACE_TREE, ROOT_ITEM, 0),
                    item(fst_root, 0, [0; 16], zero),
                ),
                (
                    Key::new(DATA_RELOC_TREE, ROOT_ITEM, 0),
                    item(info(&reloc_tree), FIRST_INODE, [0; 16], zero),
                ),
            ]
        };
        let mut root_tree = pack(ROOT_TREE, root_items((0, 0, 1), (0, 0, 1)))?;
        root_tree.assign(&mut allocate);
        if meta_cursor > meta_start + meta_len {
            return Err(WriteError::TooSmall {
                needed: meta_cursor,
                size: meta_start + meta_len,
            });
        }

        // Every tree block: (address, level, owner).
        let mut blocks: Vec<(u64, u8, u64)> = Vec::new();
        for tree in [
            &chunk_tree,
            &fs_tree,
            &csum_tree,
            &dev_tree,
            &reloc_tree,
            &uuid_tree,
            &root_tree,
        ] {
            blocks.extend(tree.blocks().into_iter().map(|(a, l)| (a, l, tree.owner)));
        }
        // Their levels are known once their shape is: provisionally every block is a leaf.
        blocks.extend(extent_addresses.iter().map(|&a| (a, 0, EXTENT_TREE)));
        blocks.extend(fst_addresses.iter().map(|&a| (a, 0, FREE_SPACE_TREE)));
        let extent_items_for = |blocks: &[(u64, u8, u64)]| -> Vec<(Key, Vec<u8>)> {
            let mut items: Vec<(Key, Vec<u8>)> = blocks
                .iter()
                .map(|&(address, level, owner)| {
                    (
                        Key::new(address, METADATA_ITEM, u64::from(level)),
                        metadata_item(GENERATION, owner),
                    )
                })
                .collect();
            for extent in &extents {
                items.push((
                    Key::new(extent.logical, EXTENT_ITEM, extent.disk_len),
                    data_extent_item(GENERATION, FS_TREE, extent.ino, extent.file_offset),
                ));
            }
            items
        };
        let mut extent_items = extent_items_for(&blocks);
        let mut used: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
        for &(address, _, _) in &blocks {
            let chunk = if address < DATA_START {
                SYSTEM_START
            } else {
                meta_start
            };
            used.entry(chunk)
                .or_default()
                .push((address, NODESIZE as u64));
        }
        used.entry(DATA_START)
            .or_default()
            .extend(extents.iter().map(|e| (e.logical, e.disk_len)));
        let block_groups: Vec<(Key, Vec<u8>)> = chunks
            .iter()
            .map(|&(logical, len, kind)| {
                let total: u64 = used
                    .get(&logical)
                    .map_or(0, |u| u.iter().map(|(_, l)| l).sum());
                (
                    Key::new(logical, BLOCK_GROUP_ITEM, len),
                    block_group_item(total, kind),
                )
            })
            .collect();
        extent_items.extend(block_groups.iter().cloned());
        let mut extent_tree = pack(EXTENT_TREE, extent_items)?;

        let mut fst_items = Vec::new();
        for &(logical, len, _) in &chunks {
            let mut ranges = used.get(&logical).cloned().unwrap_or_default();
            ranges.sort();
            let mut free = Vec::new();
            let mut at = logical;
            for (start, length) in ranges {
                if start > at {
                    free.push((at, start - at));
                }
                at = at.max(start + length);
            }
            if at < logical + len {
                free.push((at, logical + len - at));
            }
            fst_items.push((
                Key::new(logical, FREE_SPACE_INFO, len),
                free_space_info(free.len() as u32),
            ));
            fst_items.extend(
                free.into_iter().map(|(start, length)| {
                    (Key::new(start, FREE_SPACE_EXTENT, length), Vec::new())
                }),
            );
        }
        let mut fst = pack(FREE_SPACE_TREE, fst_items)?;

        if extent_tree.block_count() != extent_blocks || fst.block_count() != fst_blocks {
            extent_blocks = extent_tree.block_count();
            fst_blocks = fst.block_count();
            continue;
        }
        let mut extent_iter = extent_addresses.iter().copied();
        extent_tree.assign(|| extent_iter.next().expect("as many addresses as blocks"));
        let mut fst_iter = fst_addresses.iter().copied();
        fst.assign(|| fst_iter.next().expect("as many addresses as blocks"));
        // Now that both shapes are known, record their blocks' real levels. Levels only
        // change key offsets of items with unique objectids: same order, same shape.
        if extent_tree.level() > 0 || fst.level() > 0 {
            blocks.truncate(blocks.len() - extent_blocks - fst_blocks);
            blocks.extend(
                extent_tree
                    .blocks()
                    .into_iter()
                    .map(|(a, l)| (a, l, EXTENT_TREE)),
            );
            blocks.extend(
                fst.blocks()
                    .into_iter()
                    .map(|(a, l)| (a, l, FREE_SPACE_TREE)),
            );
            let mut items = extent_items_for(&blocks);
            items.extend(block_groups);
            let mut rebuilt = pack(EXTENT_TREE, items)?;
            // Same item sizes, same packing: the addresses carry over in order.
            let mut by_order = extent_addresses.iter().copied();
            rebuilt.assign(|| by_order.next().expect("same block count"));
            extent_tree = rebuilt;
        }
        let info = |t: &PackedTree| (t.root(), t.level(), t.block_count());
        let mut final_root = pack(ROOT_TREE, root_items(info(&extent_tree), info(&fst)))?;
        let mut root_addresses = root_tree.blocks().into_iter().map(|(a, _)| a);
        final_root.assign(|| root_addresses.next().expect("same root tree shape"));

        let context = BlockContext {
            fsid,
            chunk_tree_uuid,
            generation: GENERATION,
            nodesize: NODESIZE,
        };
        let trees = [
            &chunk_tree,
            &fs_tree,
            &csum_tree,
            &dev_tree,
            &reloc_tree,
            &uuid_tree,
            &final_root,
            &extent_tree,
            &fst,
        ];
        let mut tree_blocks = 0;
        for tree in trees {
            for (address, block) in tree.serialize(&context) {
                out.seek(SeekFrom::Start(address))?;
                out.write_all(&block)?;
                tree_blocks += 1;
            }
        }
        let data_bytes: u64 = extents.iter().map(|e| e.disk_len).sum();
        let bytes_used = tree_blocks as u64 * NODESIZE as u64 + data_bytes;
        let system_chunk = {
            let mut b = Vec::new();
            Key::new(FIRST_CHUNK_TREE, CHUNK_ITEM, SYSTEM_START).encode(&mut b);
            b.extend(chunk_item(
                SYSTEM_LEN,
                BG_SYSTEM,
                SECTOR as u32,
                SECTOR as u32,
                SYSTEM_START,
                &dev_uuid,
            ));
            b
        };
        let roots = Roots {
            root: (final_root.root(), final_root.level()),
            chunk: (chunk_tree.root(), chunk_tree.level()),
            extent: (extent_tree.root(), extent_tree.level()),
            fs: (fs_tree.root(), fs_tree.level()),
            dev: (dev_tree.root(), dev_tree.level()),
            csum: (csum_tree.root(), csum_tree.level()),
        };
        for offset in std::iter::once(SUPER_OFFSET).chain(SUPER_MIRRORS) {
            if offset + SUPER_SIZE as u64 > size {
                continue;
            }
            let block = superblock(
                offset,
                &fsid,
                size,
                bytes_used,
                &roots,
                &device,
                &system_chunk,
                &options.label,
            );
            out.seek(SeekFrom::Start(offset))?;
            out.write_all(&block)?;
        }
        out.flush()?;
        return Ok(WriteSummary {
            bytes_used,
            data_extents: extents.len(),
            tree_blocks,
        });
    }
    Err(WriteError::Entry {
        path: "(filesystem)".into(),
        why: "extent tree size did not settle".into(),
    })
}

/// An empty directory that is its own parent: the data relocation tree's root folder and
/// the root tree's folder 6 (which holds the `default` subvolume entry).
fn empty_dir_items(ino: u64) -> [(Key, Vec<u8>); 2] {
    let inode = InodeItem {
        generation: GENERATION,
        transid: GENERATION,
        nlink: 1,
        mode: 0o40755,
        ..Default::default()
    };
    [
        (Key::new(ino, INODE_ITEM, 0), inode.encode()),
        (Key::new(ino, INODE_REF, ino), inode_ref(0, b"..")),
    ]
}

struct Roots {
    root: (u64, u8),
    chunk: (u64, u8),
    extent: (u64, u8),
    fs: (u64, u8),
    dev: (u64, u8),
    csum: (u64, u8),
}

/// The 4 KiB superblock at `offset` (its own `bytenr`), checksummed.
#[allow(clippy::too_many_arguments)]
fn superblock(
    offset: u64,
    fsid: &[u8; 16],
    size: u64,
    bytes_used: u64,
    roots: &Roots,
    device: &[u8],
    system_chunk: &[u8],
    label: &str,
) -> Vec<u8> {
    let mut b = vec![0u8; SUPER_SIZE];
    let put = |b: &mut Vec<u8>, at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    let put32 =
        |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    b[0x20..0x30].copy_from_slice(fsid);
    put(&mut b, 0x30, offset);
    put(&mut b, 0x38, 1);
    b[0x40..0x48].copy_from_slice(MAGIC);
    put(&mut b, 0x48, GENERATION);
    put(&mut b, 0x50, roots.root.0);
    put(&mut b, 0x58, roots.chunk.0);
    put(&mut b, 0x70, size);
    put(&mut b, 0x78, bytes_used);
    put(&mut b, 0x80, ROOT_TREE_DIR);
    put(&mut b, 0x88, 1);
    put32(&mut b, 0x90, SECTOR as u32);
    put32(&mut b, 0x94, NODESIZE as u32);
    put32(&mut b, 0x98, NODESIZE as u32);
    put32(&mut b, 0x9c, SECTOR as u32);
    put32(&mut b, 0xa0, system_chunk.len() as u32);
    put(&mut b, 0xa4, GENERATION);
    put(&mut b, 0xb4, COMPAT_RO);
    put(&mut b, 0xbc, INCOMPAT);
    b[0xc6] = roots.root.1;
    b[0xc7] = roots.chunk.1;
    b[0xc9..0xc9 + device.len()].copy_from_slice(device);
    b[0x12b..0x12b + label.len()].copy_from_slice(label.as_bytes());
    put(&mut b, 0x233, GENERATION); // uuid_tree_generation
    b[0x23b..0x24b].copy_from_slice(fsid); // metadata_uuid, as mkfs writes it
    b[0x32b..0x32b + system_chunk.len()].copy_from_slice(system_chunk);
    // Backup root slot 0: the roots just written.
    let backup = 0xb2b;
    let slots = [
        roots.root,
        roots.chunk,
        roots.extent,
        roots.fs,
        roots.dev,
        roots.csum,
    ];
    for (i, (address, level)) in slots.iter().enumerate() {
        put(&mut b, backup + 16 * i, *address);
        put(&mut b, backup + 16 * i + 8, GENERATION);
        b[backup + 152 + i] = *level;
    }
    put(&mut b, backup + 96, size);
    put(&mut b, backup + 104, bytes_used);
    put(&mut b, backup + 112, 1);
    let sum = crc::checksum(&b[0x20..]);
    b[0..4].copy_from_slice(&sum.to_le_bytes());
    b
}
