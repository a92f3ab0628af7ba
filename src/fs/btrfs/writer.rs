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

pub(crate) const NODESIZE: usize = 16384;
pub(crate) const SECTOR: u64 = 4096;
const MIB: u64 = 1 << 20;
const SYSTEM_START: u64 = MIB;
/// One MiB holds a chunk tree for thousands of chunks; the kernel adds chunks as it needs.
const SYSTEM_LEN: u64 = MIB;
const DATA_START: u64 = SYSTEM_START + SYSTEM_LEN;
/// Files up to this size are stored inside the tree, as the kernel does by default.
pub(crate) const MAX_INLINE: u64 = 2048;
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
    pub(crate) bytes_used: u64,
    pub(crate) data_extents: usize,
    pub(crate) tree_blocks: usize,
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
///
/// The steps are pure but for `write_data` and `write_metadata`: inodes, data extents,
/// the filesystem tree's items, checksums, chunks, and the allocation of every tree block.
pub fn write<W: Write + Seek>(
    tree: &FileTree,
    options: &WriteOptions,
    out: &mut W,
) -> Result<WriteSummary, WriteError> {
    let size = options.size / SECTOR * SECTOR;
    let ids = Ids::derive(options.fsid);
    check_label(&options.label)?;
    let nodes = inodes(tree)?;
    let (extents, data_end) = place_extents(&nodes);
    let (data_len, meta_start) = data_chunk(data_end, size)?;
    let csums = write_data(out, &nodes, &extents)?;
    let fs_tree = pack(FS_TREE, fs_items(&nodes, &extents)?)?;
    let csum_tree = pack(CSUM_TREE, csum_items(&extents, &csums))?;
    let reloc_tree = pack(DATA_RELOC_TREE, empty_dir_items(FIRST_INODE).to_vec())?;
    let uuid_tree = pack(UUID_TREE, vec![uuid_item(&ids.fs)])?;
    let meta_len = metadata_len(&fs_tree, &csum_tree, extents.len());
    if meta_start + meta_len > size {
        return Err(WriteError::TooSmall {
            needed: meta_start + meta_len,
            size,
        });
    }
    let chunks = [
        Chunk::new(SYSTEM_START, SYSTEM_LEN, BG_SYSTEM),
        Chunk::new(DATA_START, data_len, BG_DATA),
        Chunk::new(meta_start, meta_len, BG_METADATA),
    ];
    let dev_used: u64 = chunks.iter().map(|c| c.len).sum();
    let device = dev_item(size, dev_used, SECTOR as u32, &ids.device, &ids.fsid);
    let trees = Trees {
        chunk: pack(CHUNK_TREE, chunk_items(&chunks, &device, &ids))?,
        fs: fs_tree,
        csum: csum_tree,
        dev: pack(DEV_TREE, dev_extent_items(&chunks, &ids))?,
        reloc: reloc_tree,
        uuid: uuid_tree,
    };
    let allocated = allocate(trees, &chunks, &extents, &ids, options.time)?;
    let data_bytes: u64 = extents.iter().map(|e| e.disk_len).sum();
    let summary = WriteSummary {
        bytes_used: allocated.block_count() as u64 * NODESIZE as u64 + data_bytes,
        data_extents: extents.len(),
        tree_blocks: allocated.block_count(),
    };
    let sb = SuperblockFacts {
        fsid: &ids.fsid,
        size,
        bytes_used: summary.bytes_used,
        roots: allocated.roots(),
        device: &device,
        system_chunk: &system_chunk_item(&ids),
        label: &options.label,
    };
    write_metadata(out, &allocated, &ids, &sb)?;
    Ok(summary)
}

/// The UUIDs a filesystem is made of, derived from its fsid so that nothing is random.
struct Ids {
    fsid: [u8; 16],
    device: [u8; 16],
    chunk_tree: [u8; 16],
    fs: [u8; 16],
}

impl Ids {
    fn derive(fsid: [u8; 16]) -> Ids {
        let derive = |purpose| crate::disk::guid::derive(&fsid, purpose);
        Ids {
            fsid,
            device: derive("device"),
            chunk_tree: derive("chunk tree"),
            fs: derive("fs tree"),
        }
    }
}

fn check_label(label: &str) -> Result<(), WriteError> {
    if label.len() > 255 || label.contains('\0') {
        return Err(WriteError::Entry {
            path: "(label)".into(),
            why: "a label is at most 255 bytes, without NUL".into(),
        });
    }
    Ok(())
}

fn pack(owner: u64, items: Vec<(Key, Vec<u8>)>) -> Result<PackedTree, WriteError> {
    PackedTree::new(owner, items, NODESIZE).map_err(|key| WriteError::Entry {
        path: format!("tree {owner}"),
        why: format!("duplicate key {key:?}"),
    })
}

/// Inodes: 256 is the root, then every entry in walk order (parents first, by name), each
/// with its parent and its index in the parent's folder.
fn inodes(tree: &FileTree) -> Result<Vec<Node<'_>>, WriteError> {
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
    for (path, entry) in tree.walk() {
        let (parent_path, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&path[..0], &path[..]),
        };
        let display = String::from_utf8_lossy(&path).into_owned();
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
        let ino = FIRST_INODE + nodes.len() as u64;
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
    Ok(nodes)
}

/// Data extents of the files too large to inline, placed in order after the SYSTEM chunk;
/// and where the last one ends.
fn place_extents(nodes: &[Node]) -> (Vec<DataExtent>, u64) {
    let mut extents = Vec::new();
    let mut cursor = DATA_START;
    for node in nodes {
        let Kind::File(contents) = &node.entry.kind else {
            continue;
        };
        let len = contents.len();
        if len <= MAX_INLINE {
            continue;
        }
        let mut offset = 0;
        while offset < len {
            // An extent ends where a superblock mirror starts and the next one starts after
            // the mirror's 64 KiB, so no space but that is lost.
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
    (extents, cursor)
}

/// The data chunk's length and where the metadata chunk starts. Empty space in the data
/// chunk is room for the kernel's own writes: keep 8 MiB of chunk when the partition has
/// room for it.
fn data_chunk(data_end: u64, size: u64) -> Result<(u64, u64), WriteError> {
    let needed = round_up(data_end - DATA_START, MIB);
    let data_len = if DATA_START + 8 * MIB + 4 * MIB <= size {
        needed.max(8 * MIB)
    } else {
        needed.max(MIB)
    };
    let meta_start = DATA_START + data_len;
    if meta_start + MIB > size {
        return Err(WriteError::TooSmall {
            needed: meta_start + MIB,
            size,
        });
    }
    Ok((data_len, meta_start))
}

/// Writes every data extent (zero-padded to whole sectors), returning each extent's sector
/// checksums.
fn write_data<W: Write + Seek>(
    out: &mut W,
    nodes: &[Node],
    extents: &[DataExtent],
) -> Result<Vec<Vec<u32>>, WriteError> {
    let mut csums: Vec<Vec<u32>> = Vec::with_capacity(extents.len());
    let mut sources: BTreeMap<u64, File> = BTreeMap::new();
    let by_ino: BTreeMap<u64, &Node> = nodes.iter().map(|n| (n.ino, n)).collect();
    let mut buffer = vec![0u8; MIB as usize];
    for extent in extents {
        let Kind::File(contents) = &by_ino[&extent.ino].entry.kind else {
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
            sums.extend(chunk.chunks(SECTOR as usize).map(crc::checksum));
            out.write_all(chunk)?;
            done += step as u64;
        }
        csums.push(sums);
    }
    Ok(csums)
}

/// The filesystem tree: folder entries (by name hash and by index), inodes, back
/// references, xattrs, inline and regular file extents.
fn fs_items(nodes: &[Node], extents: &[DataExtent]) -> Result<Vec<(Key, Vec<u8>)>, WriteError> {
    let mut items: Vec<(Key, Vec<u8>)> = Vec::new();
    let mut dir_items: BTreeMap<Key, Vec<u8>> = BTreeMap::new();
    let mut dir_sizes: BTreeMap<u64, u64> = BTreeMap::new();
    for node in &nodes[1..] {
        let location = Key::new(node.ino, INODE_ITEM, 0);
        let item = dir_item(location, GENERATION, &node.name, file_type(node.entry), &[]);
        dir_items
            .entry(Key::new(node.parent, DIR_ITEM, crc::name_hash(&node.name)))
            .or_default()
            .extend_from_slice(&item);
        items.push((Key::new(node.parent, DIR_INDEX, node.index), item));
        *dir_sizes.entry(node.parent).or_insert(0) += 2 * node.name.len() as u64;
    }
    for node in nodes {
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
                items.push((
                    Key::new(node.ino, EXTENT_DATA, 0),
                    file_extent_inline(GENERATION, target),
                ));
                (target.len() as u64, target.len() as u64)
            }
            Kind::File(contents) => {
                let len = contents.len();
                if len > 0 && len <= MAX_INLINE {
                    let data = inline_data(node, contents)?;
                    items.push((
                        Key::new(node.ino, EXTENT_DATA, 0),
                        file_extent_inline(GENERATION, &data),
                    ));
                    (len, len)
                } else {
                    (len, round_up(len, SECTOR))
                }
            }
        };
        items.push((
            Key::new(node.ino, INODE_ITEM, 0),
            inode_item(node, size, nbytes),
        ));
        items.push((
            Key::new(node.ino, INODE_REF, node.parent),
            inode_ref(node.index, &node.name),
        ));
        items.extend(xattr_items(node)?);
    }
    for extent in extents {
        items.push((
            Key::new(extent.ino, EXTENT_DATA, extent.file_offset),
            file_extent_regular(GENERATION, extent.logical, extent.disk_len, extent.disk_len),
        ));
    }
    items.extend(dir_items);
    Ok(items)
}

fn inline_data(node: &Node, contents: &Contents) -> Result<Vec<u8>, WriteError> {
    let data = match contents {
        Contents::Bytes(bytes) => bytes.clone(),
        Contents::Host { path, .. } => {
            std::fs::read(path).map_err(|source| WriteError::Source {
                path: path.display().to_string(),
                source,
            })?
        }
    };
    if data.len() as u64 != contents.len() {
        return Err(WriteError::Entry {
            path: node.path.clone(),
            why: "changed size while being written".into(),
        });
    }
    Ok(data)
}

fn inode_item(node: &Node, size: u64, nbytes: u64) -> Vec<u8> {
    let meta = &node.entry.meta;
    InodeItem {
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
    }
    .encode()
}

/// A node's xattrs, one item per name hash (colliding names share it).
fn xattr_items(node: &Node) -> Result<Vec<(Key, Vec<u8>)>, WriteError> {
    let mut by_hash: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for (name, value) in &node.entry.meta.xattrs {
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(WriteError::Entry {
                path: node.path.clone(),
                why: format!("xattr name must be 1..={MAX_NAME} bytes"),
            });
        }
        by_hash
            .entry(crc::name_hash(name))
            .or_default()
            .extend(dir_item(Key::default(), GENERATION, name, FT_XATTR, value));
    }
    by_hash
        .into_iter()
        .map(|(hash, item)| {
            if item.len() > NODESIZE - HEADER_SIZE - ITEM_SIZE {
                return Err(WriteError::Entry {
                    path: node.path.clone(),
                    why: "xattrs too large for one tree leaf".into(),
                });
            }
            Ok((Key::new(node.ino, XATTR_ITEM, hash), item))
        })
        .collect()
}

/// The checksum tree's items: each extent's sector checksums, `CSUMS_PER_ITEM` to an item.
fn csum_items(extents: &[DataExtent], csums: &[Vec<u32>]) -> Vec<(Key, Vec<u8>)> {
    let mut items = Vec::new();
    for (extent, sums) in extents.iter().zip(csums) {
        for (i, group) in sums.chunks(CSUMS_PER_ITEM).enumerate() {
            let bytes: Vec<u8> = group.iter().flat_map(|s| s.to_le_bytes()).collect();
            let logical = extent.logical + (i * CSUMS_PER_ITEM) as u64 * SECTOR;
            items.push((Key::new(EXTENT_CSUM_OBJECTID, EXTENT_CSUM, logical), bytes));
        }
    }
    items
}

fn uuid_item(fs_uuid: &[u8; 16]) -> (Key, Vec<u8>) {
    let key = Key::new(
        u64::from_le_bytes(fs_uuid[..8].try_into().expect("8")),
        UUID_KEY_SUBVOL,
        u64::from_le_bytes(fs_uuid[8..].try_into().expect("8")),
    );
    (key, FS_TREE.to_le_bytes().to_vec())
}

/// The metadata chunk's length: room for every tree with slack, at least 1 MiB more.
fn metadata_len(fs_tree: &PackedTree, csum_tree: &PackedTree, extents: usize) -> u64 {
    let known_blocks = fs_tree.block_count() + csum_tree.block_count() + 8;
    let extent_items = known_blocks + extents + 3;
    let estimate = known_blocks + extent_items * 60 / (NODESIZE - HEADER_SIZE) + 4;
    round_up((estimate as u64 * NODESIZE as u64) * 5 / 4 + MIB, MIB)
}

/// A chunk: logical start (equal to its physical one), length and block group type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunk {
    start: u64,
    len: u64,
    kind: u64,
}

impl Chunk {
    fn new(start: u64, len: u64, kind: u64) -> Chunk {
        Chunk { start, len, kind }
    }
}

/// The chunk tree: the device, then one item per chunk.
fn chunk_items(chunks: &[Chunk], device: &[u8], ids: &Ids) -> Vec<(Key, Vec<u8>)> {
    std::iter::once((Key::new(DEV_ITEMS, DEV_ITEM, 1), device.to_vec()))
        .chain(chunks.iter().map(|c| {
            let io_align = if c.kind == BG_SYSTEM {
                SECTOR as u32
            } else {
                0x10000
            };
            (
                Key::new(FIRST_CHUNK_TREE, CHUNK_ITEM, c.start),
                chunk_item(c.len, c.kind, io_align, SECTOR as u32, c.start, &ids.device),
            )
        }))
        .collect()
}

/// The device tree: one extent per chunk.
fn dev_extent_items(chunks: &[Chunk], ids: &Ids) -> Vec<(Key, Vec<u8>)> {
    chunks
        .iter()
        .map(|c| {
            (
                Key::new(1, DEV_EXTENT, c.start),
                dev_extent(c.start, c.len, &ids.chunk_tree),
            )
        })
        .collect()
}

/// The SYSTEM chunk's key and item, as the superblock's `sys_chunk_array` holds them.
fn system_chunk_item(ids: &Ids) -> Vec<u8> {
    let mut b = Vec::new();
    Key::new(FIRST_CHUNK_TREE, CHUNK_ITEM, SYSTEM_START).encode(&mut b);
    b.extend(chunk_item(
        SYSTEM_LEN,
        BG_SYSTEM,
        SECTOR as u32,
        SECTOR as u32,
        SYSTEM_START,
        &ids.device,
    ));
    b
}

/// The trees whose items are known before allocation.
struct Trees {
    chunk: PackedTree,
    fs: PackedTree,
    csum: PackedTree,
    dev: PackedTree,
    reloc: PackedTree,
    uuid: PackedTree,
}

/// Every tree with its blocks at their addresses.
struct Allocated {
    trees: Trees,
    root: PackedTree,
    extent: PackedTree,
    free_space: PackedTree,
}

impl Allocated {
    fn all(&self) -> [&PackedTree; 9] {
        let t = &self.trees;
        [
            &t.chunk,
            &t.fs,
            &t.csum,
            &t.dev,
            &t.reloc,
            &t.uuid,
            &self.root,
            &self.extent,
            &self.free_space,
        ]
    }

    fn block_count(&self) -> usize {
        self.all().iter().map(|t| t.block_count()).sum()
    }

    fn roots(&self) -> Roots {
        let at = |t: &PackedTree| (t.root(), t.level());
        Roots {
            root: at(&self.root),
            chunk: at(&self.trees.chunk),
            extent: at(&self.extent),
            fs: at(&self.trees.fs),
            dev: at(&self.trees.dev),
            csum: at(&self.trees.csum),
        }
    }
}

/// `(root address, level, block count)` of a tree, as its root item records it.
type TreeInfo = (u64, u8, usize);

fn info(tree: &PackedTree) -> TreeInfo {
    (tree.root(), tree.level(), tree.block_count())
}

/// The root tree: a root item per tree, and folder 6 with the `default` subvolume entry.
fn root_items(
    trees: &Trees,
    extent: TreeInfo,
    free_space: TreeInfo,
    fs_uuid: [u8; 16],
    time: Timespec,
) -> Vec<(Key, Vec<u8>)> {
    let item = |root: TreeInfo, dirid: u64, uuid: [u8; 16], time: Timespec| {
        RootItem {
            generation: GENERATION,
            root_dirid: dirid,
            bytenr: root.0,
            bytes_used: (root.2 * NODESIZE) as u64,
            level: root.1,
            uuid,
            time,
            nodesize: NODESIZE as u64,
        }
        .encode()
    };
    let zero = Timespec::default();
    let [folder_inode, folder_ref] = empty_dir_items(ROOT_TREE_DIR);
    vec![
        (
            Key::new(EXTENT_TREE, ROOT_ITEM, 0),
            item(extent, 0, [0; 16], zero),
        ),
        (
            Key::new(DEV_TREE, ROOT_ITEM, 0),
            item(info(&trees.dev), 0, [0; 16], zero),
        ),
        (
            Key::new(FS_TREE, ROOT_ITEM, 0),
            item(info(&trees.fs), FIRST_INODE, fs_uuid, time),
        ),
        folder_inode,
        folder_ref,
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
            item(info(&trees.csum), 0, [0; 16], zero),
        ),
        (
            Key::new(UUID_TREE, ROOT_ITEM, 0),
            item(info(&trees.uuid), 0, [0; 16], zero),
        ),
        (
            Key::new(FREE_SPACE_TREE, ROOT_ITEM, 0),
            item(free_space, 0, [0; 16], zero),
        ),
        (
            Key::new(DATA_RELOC_TREE, ROOT_ITEM, 0),
            item(info(&trees.reloc), FIRST_INODE, [0; 16], zero),
        ),
    ]
}

/// A tree block: address, level, owner.
type Block = (u64, u8, u64);

/// The extent tree's items for `blocks` and the data extents (block groups are added by the
/// caller).
fn extent_items(blocks: &[Block], extents: &[DataExtent]) -> Vec<(Key, Vec<u8>)> {
    let mut items: Vec<(Key, Vec<u8>)> = blocks
        .iter()
        .map(|&(address, level, owner)| {
            (
                Key::new(address, METADATA_ITEM, u64::from(level)),
                metadata_item(GENERATION, owner),
            )
        })
        .collect();
    for extent in extents {
        items.push((
            Key::new(extent.logical, EXTENT_ITEM, extent.disk_len),
            data_extent_item(GENERATION, FS_TREE, extent.ino, extent.file_offset),
        ));
    }
    items
}

/// What each chunk has in use: `(start, length)` ranges, by chunk start.
fn usage(
    blocks: &[Block],
    extents: &[DataExtent],
    meta_start: u64,
) -> BTreeMap<u64, Vec<(u64, u64)>> {
    let mut used: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    for &(address, _, _) in blocks {
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
    used
}

fn block_group_items(
    chunks: &[Chunk],
    used: &BTreeMap<u64, Vec<(u64, u64)>>,
) -> Vec<(Key, Vec<u8>)> {
    chunks
        .iter()
        .map(|c| {
            let total: u64 = used
                .get(&c.start)
                .map_or(0, |u| u.iter().map(|(_, l)| l).sum());
            (
                Key::new(c.start, BLOCK_GROUP_ITEM, c.len),
                block_group_item(total, c.kind),
            )
        })
        .collect()
}

/// The free space tree: per chunk, an info item and the free ranges between used ones.
fn free_space_items(
    chunks: &[Chunk],
    used: &BTreeMap<u64, Vec<(u64, u64)>>,
) -> Vec<(Key, Vec<u8>)> {
    let mut items = Vec::new();
    for c in chunks {
        let mut ranges = used.get(&c.start).cloned().unwrap_or_default();
        ranges.sort();
        let mut free = Vec::new();
        let mut at = c.start;
        for (start, length) in ranges {
            if start > at {
                free.push((at, start - at));
            }
            at = at.max(start + length);
        }
        if at < c.start + c.len {
            free.push((at, c.start + c.len - at));
        }
        items.push((
            Key::new(c.start, FREE_SPACE_INFO, c.len),
            free_space_info(free.len() as u32),
        ));
        items.extend(
            free.into_iter()
                .map(|(start, length)| (Key::new(start, FREE_SPACE_EXTENT, length), Vec::new())),
        );
    }
    items
}

/// Gives every tree block an address. The extent tree and the free space tree describe every
/// block, their own included: guess their sizes, allocate, rebuild, until the sizes stop
/// changing.
fn allocate(
    mut trees: Trees,
    chunks: &[Chunk; 3],
    extents: &[DataExtent],
    ids: &Ids,
    time: Timespec,
) -> Result<Allocated, WriteError> {
    let (meta_start, meta_len) = (chunks[2].start, chunks[2].len);
    let (mut extent_blocks, mut fst_blocks) = (1usize, 1usize);
    for _ in 0..16 {
        let mut system_cursor = SYSTEM_START;
        trees.chunk.assign(|| {
            let at = system_cursor;
            system_cursor += NODESIZE as u64;
            at
        });
        let mut meta_cursor = meta_start;
        let mut next = || {
            let at = avoid_mirrors(meta_cursor, NODESIZE as u64);
            meta_cursor = at + NODESIZE as u64;
            at
        };
        for tree in [
            &mut trees.fs,
            &mut trees.csum,
            &mut trees.dev,
            &mut trees.reloc,
            &mut trees.uuid,
        ] {
            tree.assign(&mut next);
        }
        let extent_addresses: Vec<u64> = (0..extent_blocks).map(|_| next()).collect();
        let fst_addresses: Vec<u64> = (0..fst_blocks).map(|_| next()).collect();
        let mut root_tree = pack(
            ROOT_TREE,
            root_items(&trees, (0, 0, 1), (0, 0, 1), ids.fs, time),
        )?;
        root_tree.assign(&mut next);
        if meta_cursor > meta_start + meta_len {
            return Err(WriteError::TooSmall {
                needed: meta_cursor,
                size: meta_start + meta_len,
            });
        }

        let mut blocks: Vec<Block> = Vec::new();
        for tree in [
            &trees.chunk,
            &trees.fs,
            &trees.csum,
            &trees.dev,
            &trees.reloc,
            &trees.uuid,
            &root_tree,
        ] {
            blocks.extend(tree.blocks().into_iter().map(|(a, l)| (a, l, tree.owner)));
        }
        // Their levels are known once their shape is: provisionally every block is a leaf.
        blocks.extend(extent_addresses.iter().map(|&a| (a, 0, EXTENT_TREE)));
        blocks.extend(fst_addresses.iter().map(|&a| (a, 0, FREE_SPACE_TREE)));
        let used = usage(&blocks, extents, meta_start);
        let block_groups = block_group_items(chunks, &used);
        let mut items = extent_items(&blocks, extents);
        items.extend(block_groups.iter().cloned());
        let mut extent_tree = pack(EXTENT_TREE, items)?;
        let mut fst = pack(FREE_SPACE_TREE, free_space_items(chunks, &used))?;
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
            let mut items = extent_items(&blocks, extents);
            items.extend(block_groups);
            let mut rebuilt = pack(EXTENT_TREE, items)?;
            // Same item sizes, same packing: the addresses carry over in order.
            let mut by_order = extent_addresses.iter().copied();
            rebuilt.assign(|| by_order.next().expect("same block count"));
            extent_tree = rebuilt;
        }
        let mut final_root = pack(
            ROOT_TREE,
            root_items(&trees, info(&extent_tree), info(&fst), ids.fs, time),
        )?;
        let mut root_addresses = root_tree.blocks().into_iter().map(|(a, _)| a);
        final_root.assign(|| root_addresses.next().expect("same root tree shape"));
        return Ok(Allocated {
            trees,
            root: final_root,
            extent: extent_tree,
            free_space: fst,
        });
    }
    Err(WriteError::Entry {
        path: "(filesystem)".into(),
        why: "extent tree size did not settle".into(),
    })
}

/// What the superblock records.
struct SuperblockFacts<'a> {
    fsid: &'a [u8; 16],
    size: u64,
    bytes_used: u64,
    roots: Roots,
    device: &'a [u8],
    system_chunk: &'a [u8],
    label: &'a str,
}

/// Writes every tree block, then the superblock and each mirror that fits.
fn write_metadata<W: Write + Seek>(
    out: &mut W,
    allocated: &Allocated,
    ids: &Ids,
    sb: &SuperblockFacts,
) -> Result<(), WriteError> {
    let context = BlockContext {
        fsid: ids.fsid,
        chunk_tree_uuid: ids.chunk_tree,
        generation: GENERATION,
        nodesize: NODESIZE,
    };
    for tree in allocated.all() {
        for (address, block) in tree.serialize(&context) {
            out.seek(SeekFrom::Start(address))?;
            out.write_all(&block)?;
        }
    }
    for offset in std::iter::once(SUPER_OFFSET).chain(SUPER_MIRRORS) {
        if offset + SUPER_SIZE as u64 > sb.size {
            continue;
        }
        out.seek(SeekFrom::Start(offset))?;
        out.write_all(&superblock(offset, sb))?;
    }
    out.flush()?;
    Ok(())
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
fn superblock(offset: u64, sb: &SuperblockFacts) -> Vec<u8> {
    let SuperblockFacts {
        fsid,
        size,
        bytes_used,
        roots,
        device,
        system_chunk,
        label,
        ..
    } = sb;
    let (size, bytes_used, fsid) = (*size, *bytes_used, *fsid);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::tree::Meta;

    fn tree_of(files: &[(&str, usize)]) -> FileTree {
        let dir = Meta::new(0o755, Timespec::default());
        let mut tree = FileTree::new(dir.clone());
        for (path, len) in files {
            let entry = Entry::file(Meta::new(0o644, Timespec::default()), vec![7u8; *len]);
            tree.insert(path, entry, &dir).unwrap();
        }
        tree
    }

    #[test]
    fn inodes_number_the_walk_depth_first_and_index_each_folder_from_two() {
        let tree = tree_of(&[("a/x", 1), ("a/y", 1), ("b", 1)]);
        let nodes = inodes(&tree).unwrap();
        let summary: Vec<(u64, u64, u64, &[u8])> = nodes
            .iter()
            .map(|n| (n.ino, n.parent, n.index, n.name.as_slice()))
            .collect();
        assert_eq!(
            summary,
            [
                (256, 256, 0, &b".."[..]),
                (257, 256, 2, b"a"),
                (258, 257, 2, b"x"),
                (259, 257, 3, b"y"),
                (260, 256, 3, b"b"),
            ]
        );
        let long = "n".repeat(256);
        assert!(matches!(
            inodes(&tree_of(&[(long.as_str(), 1)])),
            Err(WriteError::Entry { .. })
        ));
    }

    #[test]
    fn extents_skip_inline_files_split_large_ones_and_step_over_the_mirror() {
        let tree = tree_of(&[
            ("small", MAX_INLINE as usize),
            ("big", (MAX_EXTENT + 5000) as usize),
        ]);
        let nodes = inodes(&tree).unwrap();
        let (extents, end) = place_extents(&nodes);
        let big = nodes.iter().find(|n| n.name == b"big").unwrap().ino;
        assert!(
            extents.iter().all(|e| e.ino == big),
            "inline files have none"
        );
        // The first extent stops at the 64 MiB mirror, the next starts after its 64 KiB.
        assert_eq!(extents[0].logical, DATA_START);
        assert_eq!(extents[0].logical + extents[0].disk_len, SUPER_MIRRORS[0]);
        assert_eq!(extents[1].logical, SUPER_MIRRORS[0] + 0x10000);
        let covered: u64 = extents.iter().map(|e| e.len).sum();
        assert_eq!(covered, MAX_EXTENT + 5000);
        for e in &extents {
            assert_eq!(e.disk_len, round_up(e.len, SECTOR));
            assert!(e.len <= MAX_EXTENT);
        }
        assert_eq!(end, extents.last().map(|e| e.logical + e.disk_len).unwrap());
    }

    #[test]
    fn the_data_chunk_keeps_room_for_the_kernel_when_it_can() {
        assert_eq!(
            data_chunk(DATA_START, 64 * MIB).unwrap(),
            (8 * MIB, DATA_START + 8 * MIB)
        );
        // A small partition gets a small chunk, and one too small says what it needs.
        assert_eq!(
            data_chunk(DATA_START, 6 * MIB).unwrap(),
            (MIB, DATA_START + MIB)
        );
        assert!(matches!(
            data_chunk(DATA_START + 10 * MIB, 8 * MIB),
            Err(WriteError::TooSmall { needed, .. }) if needed == DATA_START + 11 * MIB
        ));
    }

    #[test]
    fn checksums_go_a_thousand_and_twenty_four_to_an_item() {
        let extent = DataExtent {
            logical: DATA_START,
            disk_len: 1500 * SECTOR,
            ino: 257,
            file_offset: 0,
            len: 1500 * SECTOR,
        };
        let sums: Vec<u32> = (0..1500).collect();
        let items = csum_items(&[extent], &[sums]);
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].0.offset, DATA_START);
        assert_eq!(items[0].1.len(), CSUMS_PER_ITEM * 4);
        assert_eq!(
            items[1].0.offset,
            DATA_START + CSUMS_PER_ITEM as u64 * SECTOR
        );
        assert_eq!(items[1].1.len(), (1500 - CSUMS_PER_ITEM) * 4);
    }

    #[test]
    fn free_space_is_the_gaps_between_used_ranges() {
        let chunks = [
            Chunk::new(0, 100, BG_DATA),
            Chunk::new(100, 50, BG_METADATA),
        ];
        let used = BTreeMap::from([(0, vec![(40, 10), (10, 20)])]);
        let items = free_space_items(&chunks, &used);
        let keys: Vec<(u64, u8, u64)> = items
            .iter()
            .map(|(k, _)| (k.objectid, k.kind, k.offset))
            .collect();
        assert_eq!(
            keys,
            [
                (0, FREE_SPACE_INFO, 100),
                (0, FREE_SPACE_EXTENT, 10),
                (30, FREE_SPACE_EXTENT, 10),
                (50, FREE_SPACE_EXTENT, 50),
                (100, FREE_SPACE_INFO, 50),
                (100, FREE_SPACE_EXTENT, 50),
            ]
        );
        let groups = block_group_items(&chunks, &used);
        assert_eq!(groups[0].1, block_group_item(30, BG_DATA));
        assert_eq!(groups[1].1, block_group_item(0, BG_METADATA));
    }

    #[test]
    fn allocation_gives_every_block_its_own_place_inside_its_chunk() {
        // Enough files for multi-level fs, extent and free space trees.
        let names: Vec<String> = (0..3000).map(|i| format!("d{}/f{i}", i % 7)).collect();
        let files: Vec<(&str, usize)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), if i % 3 == 0 { 5000 } else { 10 }))
            .collect();
        let tree = tree_of(&files);
        let nodes = inodes(&tree).unwrap();
        let (extents, end) = place_extents(&nodes);
        let (data_len, meta_start) = data_chunk(end, 1 << 30).unwrap();
        let csums: Vec<Vec<u32>> = extents
            .iter()
            .map(|e| vec![0; (e.disk_len / SECTOR) as usize])
            .collect();
        let ids = Ids::derive([3; 16]);
        let fs = pack(FS_TREE, fs_items(&nodes, &extents).unwrap()).unwrap();
        let csum = pack(CSUM_TREE, csum_items(&extents, &csums)).unwrap();
        let meta_len = metadata_len(&fs, &csum, extents.len());
        let chunks = [
            Chunk::new(SYSTEM_START, SYSTEM_LEN, BG_SYSTEM),
            Chunk::new(DATA_START, data_len, BG_DATA),
            Chunk::new(meta_start, meta_len, BG_METADATA),
        ];
        let device = dev_item(1 << 30, 0, SECTOR as u32, &ids.device, &ids.fsid);
        let trees = Trees {
            chunk: pack(CHUNK_TREE, chunk_items(&chunks, &device, &ids)).unwrap(),
            fs,
            csum,
            dev: pack(DEV_TREE, dev_extent_items(&chunks, &ids)).unwrap(),
            reloc: pack(DATA_RELOC_TREE, empty_dir_items(FIRST_INODE).to_vec()).unwrap(),
            uuid: pack(UUID_TREE, vec![uuid_item(&ids.fs)]).unwrap(),
        };
        let allocated = allocate(trees, &chunks, &extents, &ids, Timespec::default()).unwrap();
        assert!(allocated.trees.fs.level() > 0 && allocated.extent.level() > 0);
        let mut addresses = Vec::new();
        for tree in allocated.all() {
            for (address, _) in tree.blocks() {
                let chunk = if tree.owner == CHUNK_TREE {
                    chunks[0]
                } else {
                    chunks[2]
                };
                assert!(
                    address >= chunk.start && address + NODESIZE as u64 <= chunk.start + chunk.len
                );
                for mirror in SUPER_MIRRORS {
                    assert!(address + NODESIZE as u64 <= mirror || address >= mirror + 0x10000);
                }
                addresses.push(address);
            }
        }
        let count = addresses.len();
        addresses.sort();
        addresses.dedup();
        assert_eq!(addresses.len(), count, "no two blocks share an address");
        assert_eq!(count, allocated.block_count());
    }
}
