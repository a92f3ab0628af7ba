//! Reading a btrfs filesystem: the superblock and its chunk map, checksummed tree blocks,
//! and the default subvolume's files (inline, regular, holes, prealloc; zlib, zstd, lzo).

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom, Write};

use super::crc;
use super::format::*;
use crate::fs::codec;
use crate::fs::tree::{Contents, Entry, FileTree, Kind, Meta};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not btrfs: no \"_BHRfS_M\" magic at byte 65600")]
    NotBtrfs,
    #[error("btrfs superblock: {0}")]
    Superblock(String),
    #[error("btrfs uses {0}, which this reader does not support")]
    Unsupported(String),
    #[error("btrfs tree block at logical {logical:#x}: {why}")]
    Corrupt { logical: u64, why: String },
    #[error("btrfs logical address {0:#x} is in no chunk")]
    Unmapped(u64),
    #[error("btrfs logical address {logical:#x} maps past the end of the {device_len}-byte device")]
    PastDevice { logical: u64, device_len: u64 },
    #[error("btrfs inode {inode}: {why}")]
    Inode { inode: u64, why: String },
    #[error(
        "btrfs spans {devices} devices and only device {devid} is here (device {missing} of {devices} is missing); kato-image reads single-device filesystems"
    )]
    MissingDevices {
        devices: u64,
        devid: u64,
        missing: u64,
    },
    #[error(
        "btrfs holds what kato-image cannot write back, so it is not rewritten: {}",
        .0.iter().map(|o| o.to_string()).collect::<Vec<_>>().join("; ")
    )]
    NotWhole(Vec<Omission>),
    #[error("reading btrfs: {0}")]
    Io(#[from] io::Error),
}

/// What a listing of the default subvolume leaves out, because the file tree has no place
/// for it (writing the tree back would lose it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Omission {
    /// Another subvolume or a snapshot, mounted at `path` in this one.
    Subvolume { path: String, tree: u64 },
    /// A second name of a file (hard link); the listing has it as a copy.
    HardLink { path: String, first: String },
}

impl std::fmt::Display for Omission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Omission::Subvolume { path, tree } => {
                write!(
                    f,
                    "{} is a subvolume or snapshot (tree {tree})",
                    crate::origin::quoted(path)
                )
            }
            Omission::HardLink { path, first } => write!(
                f,
                "{} is a hard link of {}",
                crate::origin::quoted(path),
                crate::origin::quoted(first)
            ),
        }
    }
}

/// What the superblock says, as far as reading needs.
#[derive(Debug, Clone)]
pub struct Superblock {
    pub fsid: [u8; 16],
    pub(crate) metadata_uuid: [u8; 16],
    pub generation: u64,
    pub root: u64,
    pub(crate) chunk_root: u64,
    pub total_bytes: u64,
    pub sectorsize: u32,
    pub nodesize: u32,
    pub incompat: u64,
    pub label: String,
    /// How many devices the filesystem spans, and which one this is.
    pub(crate) num_devices: u64,
    pub(crate) devid: u64,
}

pub struct Filesystem<R> {
    device: R,
    pub superblock: Superblock,
    chunks: Vec<Chunk>,
    /// The device's length: what any size read from the filesystem is held to.
    device_len: u64,
}

impl Superblock {
    /// Parses and checks one superblock copy.
    pub fn parse(b: &[u8]) -> Result<Superblock, ReadError> {
        if b.len() < SUPER_SIZE || &b[0x40..0x48] != MAGIC {
            return Err(ReadError::NotBtrfs);
        }
        let csum_type = le16(b, 0xc4);
        if csum_type != 0 {
            return Err(ReadError::Unsupported(format!(
                "checksum type {csum_type} (only crc32c)"
            )));
        }
        let stored = le32(b, 0);
        let computed = crc::checksum(&b[0x20..SUPER_SIZE]);
        if stored != computed {
            return Err(ReadError::Superblock(format!(
                "checksum is {stored:#010x}, the block gives {computed:#010x}"
            )));
        }
        let incompat = le64(b, 0xbc);
        let unknown = incompat & !INCOMPAT_READABLE;
        if unknown != 0 {
            return Err(ReadError::Unsupported(format!(
                "incompat features {unknown:#x}"
            )));
        }
        let nodesize = le32(b, 0x94);
        let sectorsize = le32(b, 0x90);
        if !nodesize.is_power_of_two()
            || !(4096..=65536).contains(&nodesize)
            || !sectorsize.is_power_of_two()
        {
            return Err(ReadError::Superblock(format!(
                "node size {nodesize} / sector size {sectorsize} are invalid"
            )));
        }
        let mut fsid = [0u8; 16];
        fsid.copy_from_slice(&b[0x20..0x30]);
        let mut metadata_uuid = fsid;
        if incompat & INCOMPAT_METADATA_UUID != 0 {
            metadata_uuid.copy_from_slice(&b[0x23b..0x24b]);
        }
        let label_bytes = &b[0x12b..0x12b + 256];
        let end = label_bytes.iter().position(|&c| c == 0).unwrap_or(256);
        Ok(Superblock {
            fsid,
            metadata_uuid,
            generation: le64(b, 0x48),
            root: le64(b, 0x50),
            chunk_root: le64(b, 0x58),
            total_bytes: le64(b, 0x70),
            sectorsize,
            nodesize,
            incompat,
            label: String::from_utf8_lossy(&label_bytes[..end]).into_owned(),
            num_devices: le64(b, 0x88),
            devid: le64(b, 0xc9),
        })
    }
}

/// More items than this in one tree is more than any OEM or data partition holds.
const MAX_ITEMS: usize = 4 << 20;
/// The most data a compressed extent decodes to (BTRFS_MAX_UNCOMPRESSED), and what it
/// may take on disk.
const MAX_COMPRESSED_EXTENT: u64 = 128 << 10;

/// Items and their data, as one tree holds them.
pub(crate) type Items = Vec<(Key, Vec<u8>)>;

impl<R: Read + Seek> Filesystem<R> {
    pub fn open(mut device: R) -> Result<Self, ReadError> {
        // The primary copy, or the first intact mirror when the primary is damaged.
        let mut block = vec![0u8; SUPER_SIZE];
        device.seek(SeekFrom::Start(SUPER_OFFSET))?;
        device
            .read_exact(&mut block)
            .map_err(|_| ReadError::NotBtrfs)?;
        let superblock = match Superblock::parse(&block) {
            Ok(superblock) => superblock,
            Err(primary @ ReadError::Superblock(_)) => {
                let mut found = None;
                for mirror in SUPER_MIRRORS {
                    let mut copy = vec![0u8; SUPER_SIZE];
                    if device.seek(SeekFrom::Start(mirror)).is_ok()
                        && device.read_exact(&mut copy).is_ok()
                        && let Ok(parsed) = Superblock::parse(&copy)
                    {
                        block = copy;
                        found = Some(parsed);
                        break;
                    }
                }
                found.ok_or(primary)?
            }
            Err(other) => return Err(other),
        };
        if superblock.num_devices > 1 {
            let devid = superblock.devid;
            return Err(ReadError::MissingDevices {
                devices: superblock.num_devices,
                devid,
                missing: if devid == 1 { 2 } else { 1 },
            });
        }
        let mut chunks = Vec::new();
        let array_len = (le32(&block, 0xa0) as usize).min(2048);
        let array = &block[0x32b..0x32b + array_len];
        let mut at = 0;
        while at + 17 + 48 <= array.len() {
            let key = Key::decode(&array[at..]);
            if key.kind != CHUNK_ITEM {
                return Err(ReadError::Superblock(format!(
                    "sys_chunk_array holds a key of type {}",
                    key.kind
                )));
            }
            let chunk = decode_chunk(key.offset, &array[at + 17..])
                .ok_or_else(|| ReadError::Superblock("sys_chunk_array is truncated".into()))?;
            at += 17 + 48 + 32 * chunk.stripes.len();
            chunks.push(chunk);
        }
        let device_len = device.seek(SeekFrom::End(0))?;
        let mut fs = Filesystem {
            device,
            superblock,
            chunks,
            device_len,
        };
        let chunk_root = fs.superblock.chunk_root;
        for (key, data) in fs.items(chunk_root)? {
            if key.kind == CHUNK_ITEM {
                let chunk = decode_chunk(key.offset, &data).ok_or(ReadError::Corrupt {
                    logical: chunk_root,
                    why: "a chunk item is truncated".into(),
                })?;
                if !fs.chunks.iter().any(|c| c.logical == chunk.logical) {
                    fs.chunks.push(chunk);
                }
            }
        }
        for chunk in &fs.chunks {
            // RAID0/10/5/6 stripe data across devices; single-device images never do.
            if chunk.kind & (0x8 | 0x40 | 0x80 | 0x100) != 0 {
                return Err(ReadError::Unsupported(format!(
                    "striped chunk profile {:#x}",
                    chunk.kind
                )));
            }
        }
        Ok(fs)
    }

    fn physical(&self, logical: u64, len: u64) -> Result<u64, ReadError> {
        let chunk = self
            .chunks
            .iter()
            .find(|c| {
                logical >= c.logical
                    && logical.saturating_add(len) <= c.logical.saturating_add(c.length)
            })
            .ok_or(ReadError::Unmapped(logical))?;
        // The stripe offset is the input's word: it may point past the device or past 2^64.
        let past = || ReadError::PastDevice {
            logical,
            device_len: self.device_len,
        };
        let physical = chunk.stripes[0]
            .checked_add(logical - chunk.logical)
            .ok_or_else(past)?;
        match physical.checked_add(len) {
            Some(end) if end <= self.device_len => Ok(physical),
            _ => Err(past()),
        }
    }

    /// Reads `len` bytes at a logical address.
    pub(crate) fn read_logical(&mut self, logical: u64, len: usize) -> Result<Vec<u8>, ReadError> {
        let physical = self.physical(logical, len as u64)?;
        let mut buf = vec![0u8; len];
        self.device.seek(SeekFrom::Start(physical))?;
        self.device.read_exact(&mut buf)?;
        Ok(buf)
    }

    fn read_block(&mut self, logical: u64) -> Result<Vec<u8>, ReadError> {
        let nodesize = self.superblock.nodesize as usize;
        let block = self.read_logical(logical, nodesize)?;
        let corrupt = |why: String| ReadError::Corrupt { logical, why };
        let stored = le32(&block, 0);
        let computed = crc::checksum(&block[0x20..]);
        if stored != computed {
            return Err(corrupt(format!(
                "checksum is {stored:#010x}, the block gives {computed:#010x}"
            )));
        }
        if le64(&block, 0x30) != logical {
            return Err(corrupt(format!(
                "it says it is at {:#x}",
                le64(&block, 0x30)
            )));
        }
        if block[0x20..0x30] != self.superblock.metadata_uuid {
            return Err(corrupt(
                "it belongs to another filesystem (fsid differs)".into(),
            ));
        }
        Ok(block)
    }

    /// Every item of the tree rooted at `root`, in key order.
    pub fn items(&mut self, root: u64) -> Result<Items, ReadError> {
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        self.collect(root, 8, &mut out, &mut seen)?;
        Ok(out)
    }

    /// A block reached twice in one tree would make a walk of a few blocks as long as the
    /// number of paths to them: a tree's blocks are each reached once.
    fn collect(
        &mut self,
        logical: u64,
        max_level: u8,
        out: &mut Items,
        seen: &mut std::collections::BTreeSet<u64>,
    ) -> Result<(), ReadError> {
        if !seen.insert(logical) {
            return Err(ReadError::Corrupt {
                logical,
                why: "the block is reached twice in one tree".into(),
            });
        }
        if out.len() > MAX_ITEMS {
            return Err(ReadError::Corrupt {
                logical,
                why: format!("a tree of more than {MAX_ITEMS} items"),
            });
        }
        let block = self.read_block(logical)?;
        let corrupt = |why: &str| ReadError::Corrupt {
            logical,
            why: why.into(),
        };
        let count = le32(&block, 0x60) as usize;
        let level = block[0x64];
        if level > max_level {
            return Err(corrupt("its level is not below its parent's"));
        }
        if level == 0 {
            if HEADER_SIZE + count * ITEM_SIZE > block.len() {
                return Err(corrupt("more items than fit"));
            }
            for i in 0..count {
                let at = HEADER_SIZE + i * ITEM_SIZE;
                let key = Key::decode(&block[at..]);
                let offset = le32(&block, at + 17) as usize;
                let size = le32(&block, at + 21) as usize;
                let data = block
                    .get(HEADER_SIZE + offset..HEADER_SIZE + offset + size)
                    .ok_or_else(|| corrupt("an item's data is outside the block"))?;
                out.push((key, data.to_vec()));
            }
        } else {
            if HEADER_SIZE + count * KEY_PTR_SIZE > block.len() || count == 0 {
                return Err(corrupt("bad pointer count"));
            }
            for i in 0..count {
                let at = HEADER_SIZE + i * KEY_PTR_SIZE;
                self.collect(le64(&block, at + 17), level - 1, out, seen)?;
            }
        }
        Ok(())
    }

    /// The root block of tree `id` (from its ROOT_ITEM in the root tree).
    pub(crate) fn tree_root(&mut self, id: u64) -> Result<u64, ReadError> {
        let root = self.superblock.root;
        let corrupt = |why: String| ReadError::Corrupt { logical: root, why };
        let (_, data) = self
            .items(root)?
            .into_iter()
            .find(|(k, _)| k.objectid == id && k.kind == ROOT_ITEM)
            .ok_or_else(|| corrupt(format!("no root item for tree {id}")))?;
        root_item_bytenr(&data).ok_or_else(|| {
            corrupt(format!(
                "the root item of tree {id} is {} bytes, too short",
                data.len()
            ))
        })
    }

    /// Writes every file, folder and symlink of the default subvolume under `dir` (which
    /// must exist), streaming file contents; like `btrfs restore`, without metadata. A file
    /// with hard links is written under each name.
    pub fn extract(&mut self, dir: &std::path::Path) -> Result<(), ReadError> {
        let inodes = self.inode_items()?;
        let mut folders = std::collections::BTreeSet::new();
        self.extract_dir(&inodes, &mut folders, FIRST_INODE, dir, 0)
    }

    fn extract_dir(
        &mut self,
        inodes: &BTreeMap<u64, InodeItems>,
        folders: &mut std::collections::BTreeSet<u64>,
        ino: u64,
        dir: &std::path::Path,
        depth: usize,
    ) -> Result<(), ReadError> {
        use std::os::unix::ffi::OsStrExt;
        let bad = |inode: u64, why: &str| ReadError::Inode {
            inode,
            why: why.into(),
        };
        if depth > 4096 || !folders.insert(ino) {
            return Err(bad(
                ino,
                "a folder reached twice or nested too deep (a loop?)",
            ));
        }
        let children = inodes
            .get(&ino)
            .map(|i| i.children.clone())
            .unwrap_or_default();
        for (name, child, kind) in children {
            if kind == ROOT_ITEM || name.contains(&b'/') || name == b"." || name == b".." {
                continue;
            }
            let path = dir.join(std::ffi::OsStr::from_bytes(&name));
            let inode = inodes
                .get(&child)
                .ok_or_else(|| bad(child, "no inode item"))?;
            let item = inode.item.ok_or_else(|| bad(child, "no inode item"))?;
            match item.mode & 0o170000 {
                0o040000 => {
                    std::fs::create_dir_all(&path)?;
                    self.extract_dir(inodes, folders, child, &path, depth + 1)?;
                }
                0o120000 => {
                    let mut target = Vec::new();
                    self.write_file(child, item.size, &inode.extents, &mut target)?;
                    std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), &path)?;
                }
                _ => {
                    let mut out =
                        io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
                    self.write_file(child, item.size, &inode.extents, &mut out)?;
                    out.flush()?;
                }
            }
        }
        Ok(())
    }

    /// The default subvolume: what the root tree's `default` entry names (tree 5 when the
    /// entry is absent, as the kernel assumes).
    pub(crate) fn default_subvolume(&mut self) -> Result<u64, ReadError> {
        let root = self.superblock.root;
        let key = Key::new(ROOT_TREE_DIR, DIR_ITEM, crc::name_hash(b"default"));
        let items = self.items(root)?;
        let id = items
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, data)| decode_dir_items(data))
            .and_then(|entries| entries.into_iter().find(|e| e.name == b"default"))
            .map_or(FS_TREE, |e| e.location.objectid);
        Ok(id)
    }

    fn inode_items(&mut self) -> Result<BTreeMap<u64, InodeItems>, ReadError> {
        let subvolume = self.default_subvolume()?;
        let fs_root = self.tree_root(subvolume)?;
        let items = self.items(fs_root)?;
        let mut inodes: BTreeMap<u64, InodeItems> = BTreeMap::new();
        for (key, data) in items {
            let inode = inodes.entry(key.objectid).or_default();
            match key.kind {
                INODE_ITEM => {
                    let item = InodeItem::decode(&data).ok_or_else(|| ReadError::Inode {
                        inode: key.objectid,
                        why: format!(
                            "its inode item is {} bytes, expected {INODE_ITEM_SIZE}",
                            data.len()
                        ),
                    })?;
                    inode.item = Some(item);
                }
                DIR_INDEX => {
                    let entries = decode_dir_items(&data).ok_or(ReadError::Inode {
                        inode: key.objectid,
                        why: "bad dir index".into(),
                    })?;
                    inode.children.extend(
                        entries
                            .into_iter()
                            .map(|e| (e.name, e.location.objectid, e.location.kind)),
                    );
                }
                XATTR_ITEM => {
                    let entries = decode_dir_items(&data).ok_or(ReadError::Inode {
                        inode: key.objectid,
                        why: "bad xattr".into(),
                    })?;
                    inode
                        .xattrs
                        .extend(entries.into_iter().map(|e| (e.name, e.data)));
                }
                EXTENT_DATA => inode.extents.push((key.offset, data)),
                _ => {}
            }
        }
        Ok(inodes)
    }

    /// Every file, folder and symlink of the default subvolume, with contents in memory
    /// (the second name of a hard-linked file as a copy; other subvolumes left out).
    pub fn read_tree(&mut self) -> Result<FileTree, ReadError> {
        Ok(self.read_listing()?.0)
    }

    /// The default subvolume's tree, and what it leaves out (see [`Omission`]).
    pub fn read_listing(&mut self) -> Result<(FileTree, Vec<Omission>), ReadError> {
        let inodes = self.inode_items()?;
        let mut walk = Walk {
            inodes: &inodes,
            seen: BTreeMap::new(),
            omitted: Vec::new(),
        };
        let root = self.entry(&mut walk, FIRST_INODE, String::new(), 0)?;
        Ok((FileTree { root }, walk.omitted))
    }

    /// The tree, when it is the whole filesystem: `Err(NotWhole)` names what a rewrite from
    /// it would lose.
    pub(crate) fn read_whole(&mut self) -> Result<FileTree, ReadError> {
        let (tree, omitted) = self.read_listing()?;
        if omitted.is_empty() {
            Ok(tree)
        } else {
            Err(ReadError::NotWhole(omitted))
        }
    }

    fn entry(
        &mut self,
        walk: &mut Walk,
        ino: u64,
        path: String,
        depth: usize,
    ) -> Result<Entry, ReadError> {
        let bad = |why: &str| ReadError::Inode {
            inode: ino,
            why: why.into(),
        };
        if depth > 4096 {
            return Err(bad("folders nested too deep (a loop?)"));
        }
        let inode = walk.inodes.get(&ino).ok_or_else(|| bad("no inode item"))?;
        let item = inode.item.ok_or_else(|| bad("no inode item"))?;
        // A folder has one name; a file with more than one is a hard link, listed again.
        match walk.seen.get(&ino) {
            Some(_) if item.mode & 0o170000 == 0o040000 => {
                return Err(bad("a folder reached twice (a loop?)"));
            }
            Some(first) => walk.omitted.push(Omission::HardLink {
                path: path.clone(),
                first: first.clone(),
            }),
            None => {
                walk.seen.insert(ino, path.clone());
            }
        }
        let inode = inode.clone();
        let meta = Meta {
            mode: item.mode & 0o7777,
            uid: item.uid,
            gid: item.gid,
            atime: item.atime,
            ctime: item.ctime,
            mtime: item.mtime,
            otime: item.otime,
            xattrs: inode.xattrs,
        };
        let kind = match item.mode & 0o170000 {
            0o040000 => {
                let mut children = BTreeMap::new();
                for (name, child, kind) in inode.children {
                    let child_path = format!("{path}/{}", String::from_utf8_lossy(&name));
                    if kind == ROOT_ITEM {
                        // Another subvolume (or a snapshot): its own tree, not this one.
                        walk.omitted.push(Omission::Subvolume {
                            path: child_path,
                            tree: child,
                        });
                        continue;
                    }
                    let entry = self.entry(walk, child, child_path, depth + 1)?;
                    children.insert(name, entry);
                }
                Kind::Dir(children)
            }
            0o100000 => {
                // Held in memory: no file is larger than the filesystem that holds it
                // (a sparse one could claim anything).
                if item.size > self.superblock.total_bytes.min(self.device_len) {
                    return Err(bad("a file larger than its filesystem"));
                }
                let mut data = Vec::new();
                self.write_file(ino, item.size, &inode.extents, &mut data)?;
                Kind::File(Contents::Bytes(data))
            }
            0o120000 => {
                if item.size > u64::from(self.superblock.nodesize) {
                    return Err(bad("a symlink target longer than a tree block"));
                }
                let mut data = Vec::new();
                self.write_file(ino, item.size, &inode.extents, &mut data)?;
                Kind::Symlink(data)
            }
            _ => {
                return Err(bad(
                    "a device, FIFO or socket, which kato-image does not handle",
                ));
            }
        };
        Ok(Entry { meta, kind })
    }

    /// Streams a file's `size` bytes from its extent items to `out`; gaps are zeros.
    fn write_file(
        &mut self,
        ino: u64,
        size: u64,
        extents: &[(u64, Vec<u8>)],
        out: &mut impl Write,
    ) -> Result<(), ReadError> {
        let bad = |why: String| ReadError::Inode { inode: ino, why };
        let mut written = 0u64;
        let zeros = |out: &mut dyn Write, n: u64| -> io::Result<()> {
            io::copy(&mut io::repeat(0).take(n), out).map(|_| ())
        };
        for (offset, item) in extents {
            if *offset >= size {
                break;
            }
            if *offset < written {
                return Err(bad(format!("extents overlap at {offset}")));
            }
            if item.len() < 21 {
                return Err(bad("a file extent item is truncated".into()));
            }
            zeros(out, offset - written)?;
            written = *offset;
            let ram_bytes = le64(item, 8);
            let compression = item[16];
            if item[17] != 0 || item[18..20] != [0, 0] {
                return Err(ReadError::Unsupported(format!(
                    "encrypted or encoded extents (inode {ino})"
                )));
            }
            let piece = match item[20] {
                EXTENT_INLINE => {
                    // Inline data lives in one tree block.
                    let limit = ram_bytes.min(u64::from(self.superblock.nodesize));
                    decompress(compression, &item[21..], limit as usize).map_err(bad)?
                }
                EXTENT_REGULAR | EXTENT_PREALLOC if item.len() >= 53 => {
                    let (disk_bytenr, disk_len, extent_offset, num_bytes) = (
                        le64(item, 21),
                        le64(item, 29),
                        le64(item, 37),
                        le64(item, 45),
                    );
                    if disk_bytenr == 0 || item[20] == EXTENT_PREALLOC {
                        let num_bytes = num_bytes.min(size - written);
                        zeros(out, num_bytes.min(size - written))?;
                        written += num_bytes.min(size - written);
                        continue;
                    }
                    if compression == COMPRESS_NONE {
                        let want = num_bytes.min(size - written);
                        let start = disk_bytenr.checked_add(extent_offset).ok_or_else(|| {
                            bad("an extent past the end of the address space".into())
                        })?;
                        self.copy_logical(start, want, out)?;
                        written += want;
                        continue;
                    }
                    if disk_len > MAX_COMPRESSED_EXTENT || ram_bytes > MAX_COMPRESSED_EXTENT {
                        return Err(bad(format!(
                            "a compressed extent of {disk_len} bytes for {ram_bytes} (at most {MAX_COMPRESSED_EXTENT})"
                        )));
                    }
                    let raw = self.read_logical(disk_bytenr, disk_len as usize)?;
                    let all = decompress(compression, &raw, ram_bytes as usize).map_err(bad)?;
                    let start = (extent_offset as usize).min(all.len());
                    let end = extent_offset
                        .saturating_add(num_bytes)
                        .min(all.len() as u64) as usize;
                    all[start..end.max(start)].to_vec()
                }
                other => return Err(bad(format!("unknown extent type {other}"))),
            };
            let take = (piece.len() as u64).min(size - written);
            out.write_all(&piece[..take as usize])?;
            written += take;
        }
        zeros(out, size - written)?;
        Ok(())
    }

    fn copy_logical(
        &mut self,
        logical: u64,
        len: u64,
        out: &mut impl Write,
    ) -> Result<(), ReadError> {
        let mut done = 0;
        while done < len {
            let step = (len - done).min(1 << 20);
            let buf = self.read_logical(logical + done, step as usize)?;
            out.write_all(&buf)?;
            done += step;
        }
        Ok(())
    }
}

/// A walk of one subvolume: its inodes, the path each was first reached at, and what the
/// walk leaves out.
struct Walk<'a> {
    inodes: &'a BTreeMap<u64, InodeItems>,
    seen: BTreeMap<u64, String>,
    omitted: Vec<Omission>,
}

#[derive(Default, Clone)]
struct InodeItems {
    item: Option<InodeItem>,
    children: Vec<(Vec<u8>, u64, u8)>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    extents: Vec<(u64, Vec<u8>)>,
}

/// Decodes one extent's data (`limit` is the decoded length).
fn decompress(compression: u8, data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    match compression {
        COMPRESS_NONE => Ok(data[..limit.min(data.len())].to_vec()),
        COMPRESS_ZLIB => codec::zlib(data, limit).map_err(|e| format!("zlib: {e}")),
        COMPRESS_ZSTD => codec::zstd(data, limit).map_err(|e| format!("zstd: {e}")),
        COMPRESS_LZO => super::lzo::decompress_extent(data, limit).map_err(|e| e.to_string()),
        other => Err(format!("unknown compression {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one_chunk(device: Vec<u8>, length: u64, stripe: u64) -> Filesystem<io::Cursor<Vec<u8>>> {
        let device_len = device.len() as u64;
        Filesystem {
            device: io::Cursor::new(device),
            superblock: Superblock {
                fsid: [0; 16],
                metadata_uuid: [0; 16],
                generation: 1,
                root: 0,
                chunk_root: 0,
                total_bytes: device_len,
                sectorsize: 4096,
                nodesize: 4096,
                incompat: 0,
                label: String::new(),
                num_devices: 1,
                devid: 1,
            },
            chunks: vec![Chunk {
                logical: 1 << 30,
                length,
                kind: 1,
                stripe_len: 65536,
                stripes: vec![stripe],
            }],
            device_len,
        }
    }

    proptest! {
        // Found by the btrfs fuzz target: a stripe offset near 2^64 overflowed the physical
        // address. Whatever a chunk's stripe and length say, a read is the device's bytes
        // or an error naming the logical address; never a panic or a read elsewhere.
        #[test]
        fn a_chunk_maps_onto_the_device_or_is_refused(
            stripe in prop_oneof![0u64..20_000, (u64::MAX - 20_000)..=u64::MAX],
            length in prop_oneof![0u64..20_000, Just(u64::MAX)],
            offset in 0u64..20_000,
            len in 0usize..5_000,
        ) {
            let device: Vec<u8> = (0..16_384u32).map(|i| (i * 7 % 251) as u8).collect();
            let mut fs = one_chunk(device.clone(), length, stripe);
            let logical = (1 << 30) + offset;
            let inside_chunk = offset + len as u64 <= length;
            match fs.read_logical(logical, len) {
                Ok(bytes) => {
                    let at = (stripe + offset) as usize;
                    prop_assert!(inside_chunk);
                    prop_assert_eq!(&bytes[..], &device[at..at + len]);
                }
                Err(ReadError::Unmapped(l)) => {
                    prop_assert!(!inside_chunk);
                    prop_assert_eq!(l, logical);
                }
                Err(e @ ReadError::PastDevice { .. }) => {
                    prop_assert!(inside_chunk);
                    prop_assert!(stripe.checked_add(offset + len as u64).is_none_or(|end| end > 16_384));
                    prop_assert!(e.to_string().contains("16384-byte device"), "{}", e);
                }
                Err(other) => prop_assert!(false, "{}", other),
            }
        }
    }
}
