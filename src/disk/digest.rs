//! BLAKE3 digests of disk images that cost what changed.
//!
//! A role image is the vendor image with a few MiB rewritten, so its digest should not cost a
//! pass over gigabytes. BLAKE3 is a binary tree over 1 KiB chunks in which the value of an
//! aligned subtree depends only on its bytes and its offset in the input; `b3sum` of the whole
//! file is the root. We keep the values of aligned 1 MiB subtrees ("leaves"):
//!
//! - a leaf the build did not write keeps the vendor image's value;
//! - a leaf that is a hole (all zeros) takes the value of a zero leaf at that offset, from a
//!   table that depends on nothing else and is computed once per cache;
//! - any other leaf is hashed from the file.
//!
//! The root is then merged from the leaves in BLAKE3's tree order (each left subtree is the
//! largest power of two chunks that leaves at least one byte to its right). A partition's
//! digest is the BLAKE3 of its bytes alone (`dd ... | b3sum`), computed the same way with
//! offsets counted from the partition's start.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::RwLock;

use blake3::hazmat::{
    HasherExt, Mode, left_subtree_len, merge_subtrees_non_root, merge_subtrees_root,
};

use super::sparse;

/// Leaf size: 1024 BLAKE3 chunks.
pub(crate) const LEAF: u64 = 1 << 20;
static ZERO_LEAF: [u8; LEAF as usize] = [0; LEAF as usize];

/// A chaining value: the non-root value of a chunk or subtree.
pub(crate) type Cv = [u8; 32];

/// The hex BLAKE3 of an input: what `b3sum` prints.
pub fn hex(hash: &blake3::Hash) -> String {
    hash.to_hex().to_string()
}

/// Byte ranges, kept sorted and merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    /// Adds `[start, end)`.
    pub fn add(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let at = self.0.partition_point(|&(_, e)| e < start);
        let mut merged = (start, end);
        let mut last = at;
        while last < self.0.len() && self.0[last].0 <= merged.1 {
            merged.0 = merged.0.min(self.0[last].0);
            merged.1 = merged.1.max(self.0[last].1);
            last += 1;
        }
        self.0.splice(at..last, [merged]);
    }

    /// Whether any range meets `[start, end)`.
    pub fn touches(&self, start: u64, end: u64) -> bool {
        let at = self.0.partition_point(|&(_, e)| e <= start);
        self.0.get(at).is_some_and(|&(s, _)| s < end)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The values of zero leaves by leaf index: the value of `LEAF` zero bytes at offset
/// `i * LEAF`. They depend on nothing but the index, so one table serves the whole process
/// and nobody has to hand it around; the cache keeps a copy (`load_zero_leaves`,
/// `save_zero_leaves`), checked by a digest of its own, so a run does not recompute them.
static ZERO_LEAVES: RwLock<ZeroTable> = RwLock::new(ZeroTable {
    cvs: Vec::new(),
    saved: 0,
});

struct ZeroTable {
    cvs: Vec<Cv>,
    /// How many of `cvs` a saved copy already holds.
    saved: usize,
}

const ZERO_MAGIC: &[u8; 8] = b"KATOZL01";

fn zero_table() -> std::sync::RwLockReadGuard<'static, ZeroTable> {
    ZERO_LEAVES.read().unwrap_or_else(|e| e.into_inner())
}

fn zero_table_mut() -> std::sync::RwLockWriteGuard<'static, ZeroTable> {
    ZERO_LEAVES.write().unwrap_or_else(|e| e.into_inner())
}

/// Adopts the table saved at `path` if it is longer than the one in memory; a missing or
/// damaged file is ignored (it only costs a recomputation).
pub(crate) fn load_zero_leaves(path: &Path) {
    let Some(cvs) = std::fs::read(path)
        .ok()
        .and_then(|bytes| parse_checked(&bytes, ZERO_MAGIC))
        .map(|body| cvs_from(&body))
    else {
        return;
    };
    let mut table = zero_table_mut();
    if cvs.len() >= table.cvs.len() {
        table.saved = cvs.len();
        table.cvs = cvs;
    }
}

/// Saves the table at `path` if it grew since it was loaded or saved; failures only cost a
/// recomputation next time.
pub fn save_zero_leaves(path: &Path) {
    let mut table = zero_table_mut();
    if table.cvs.len() <= table.saved {
        return;
    }
    let mut body = Vec::with_capacity(table.cvs.len() * 32);
    for cv in &table.cvs {
        body.extend_from_slice(cv);
    }
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if crate::atomic::write_atomic(path, &seal(ZERO_MAGIC, &body)).is_ok() {
        table.saved = table.cvs.len();
    }
}

/// Makes sure the first `count` values exist, computing the missing ones on every core.
pub(crate) fn ensure_zero_leaves(count: u64) {
    let have = zero_table().cvs.len() as u64;
    if count <= have {
        return;
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let missing = count - have;
    let per = missing.div_ceil(threads.max(1));
    let parts: Vec<Vec<Cv>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let from = have + t * per;
                let to = (from + per).min(count);
                scope.spawn(move || (from..to).map(zero_leaf).collect::<Vec<Cv>>())
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("hashing zeros does not panic"))
            .collect()
    });
    let mut table = zero_table_mut();
    // Another thread may have grown the table meanwhile; the values are the same.
    if table.cvs.len() as u64 == have {
        for part in parts {
            table.cvs.extend(part);
        }
    }
}

/// The value of the zero leaf at index `i` (computed if missing).
pub(crate) fn zero_leaf_value(i: u64) -> Cv {
    if let Some(cv) = zero_table().cvs.get(i as usize) {
        return *cv;
    }
    ensure_zero_leaves(i + 1);
    zero_table()
        .cvs
        .get(i as usize)
        .copied()
        .unwrap_or_else(|| zero_leaf(i))
}

fn zero_leaf(i: u64) -> Cv {
    blake3::Hasher::new()
        .set_input_offset(i * LEAF)
        .update(&ZERO_LEAF)
        .finalize_non_root()
}

/// `magic`, the body, and the BLAKE3 of both: a damaged file is noticed and recomputed.
fn seal(magic: &[u8; 8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 40);
    out.extend_from_slice(magic);
    out.extend_from_slice(body);
    let check = blake3::hash(&out);
    out.extend_from_slice(check.as_bytes());
    out
}

/// The body of a sealed file, if its magic and check value are right.
fn parse_checked(bytes: &[u8], magic: &[u8; 8]) -> Option<Vec<u8>> {
    if bytes.len() < 40 || &bytes[..8] != magic {
        return None;
    }
    let (sealed, check) = bytes.split_at(bytes.len() - 32);
    (blake3::hash(sealed).as_bytes() == check).then(|| sealed[8..].to_vec())
}

fn cvs_from(body: &[u8]) -> Vec<Cv> {
    body.chunks_exact(32)
        .map(|c| c.try_into().expect("32 bytes"))
        .collect()
}

/// The leaf values of one input (a whole image, or one partition), and its length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaves {
    pub len: u64,
    /// One per `LEAF` of input (the last may be short). For an input of one leaf or less the
    /// single value is its root hash instead: BLAKE3 finalises a lone chunk run differently.
    pub(crate) cvs: Vec<Cv>,
}

impl Leaves {
    /// The BLAKE3 of the whole input.
    pub fn root(&self) -> blake3::Hash {
        match self.cvs.len() {
            0 => blake3::hash(b""),
            1 => blake3::Hash::from_bytes(self.cvs[0]),
            _ => {
                let left = left_subtree_len(self.len);
                let k = (left / LEAF) as usize;
                merge_subtrees_root(
                    &subtree(&self.cvs[..k], left),
                    &subtree(&self.cvs[k..], self.len - left),
                    Mode::Hash,
                )
            }
        }
    }
}

/// The non-root value of the subtree of `len` bytes whose leaves are `cvs`.
fn subtree(cvs: &[Cv], len: u64) -> Cv {
    if cvs.len() == 1 {
        return cvs[0];
    }
    let left = left_subtree_len(len);
    let k = (left / LEAF) as usize;
    merge_subtrees_non_root(
        &subtree(&cvs[..k], left),
        &subtree(&cvs[k..], len - left),
        Mode::Hash,
    )
}

/// Builds the leaves of an input fed in order, a piece at a time, with zero pieces marked
/// so that a leaf that stays all zero is never hashed.
pub(crate) struct LeafBuilder {
    len: u64,
    cvs: Vec<Cv>,
    /// The current leaf's hasher, once it has seen data; zeros before that are owed to it.
    current: Option<blake3::Hasher>,
    /// Bytes of the current leaf fed so far.
    filled: u64,
}

impl Default for LeafBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LeafBuilder {
    pub fn new() -> Self {
        LeafBuilder {
            len: 0,
            cvs: Vec::new(),
            current: None,
            filled: 0,
        }
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Feeds `data` (all zeros if `zero`, in which case only its length matters).
    pub fn push(&mut self, mut data: &[u8], zero: bool) {
        while !data.is_empty() {
            self.make_room();
            let take = (LEAF - self.filled).min(data.len() as u64) as usize;
            let (piece, rest) = data.split_at(take);
            if !zero {
                self.hasher().update(piece);
            } else if let Some(hasher) = &mut self.current {
                hasher.update(&ZERO_LEAF[..take]);
            }
            self.filled += take as u64;
            self.len += take as u64;
            data = rest;
        }
    }

    /// Feeds `n` zero bytes.
    pub(crate) fn push_zeros(&mut self, mut n: u64) {
        while n > 0 {
            self.make_room();
            let take = (LEAF - self.filled).min(n);
            if let Some(hasher) = &mut self.current {
                hasher.update(&ZERO_LEAF[..take as usize]);
            }
            self.filled += take;
            self.len += take;
            n -= take;
        }
    }

    fn hasher(&mut self) -> &mut blake3::Hasher {
        let filled = self.filled as usize;
        let index = self.cvs.len() as u64;
        self.current.get_or_insert_with(|| {
            let mut hasher = blake3::Hasher::new();
            hasher.set_input_offset(index * LEAF);
            hasher.update(&ZERO_LEAF[..filled]);
            hasher
        })
    }

    /// A full leaf is closed only when more input comes: if none does and it is the only
    /// leaf, it is the root and is finalised as one.
    fn make_room(&mut self) {
        if self.filled == LEAF {
            self.close_leaf();
        }
    }

    fn close_leaf(&mut self) {
        let index = self.cvs.len() as u64;
        let cv = match self.current.take() {
            Some(hasher) => hasher.finalize_non_root(),
            None if self.filled == LEAF => zero_leaf_value(index),
            None => blake3::Hasher::new()
                .set_input_offset(index * LEAF)
                .update(&ZERO_LEAF[..self.filled as usize])
                .finalize_non_root(),
        };
        self.cvs.push(cv);
        self.filled = 0;
    }

    /// The leaves of everything fed.
    pub fn finish(mut self) -> Leaves {
        if self.cvs.is_empty() {
            let root = match self.current.take() {
                Some(hasher) => hasher.finalize(),
                None => blake3::hash(&ZERO_LEAF[..self.filled as usize]),
            };
            return Leaves {
                len: self.len,
                cvs: if self.len == 0 {
                    Vec::new()
                } else {
                    vec![*root.as_bytes()]
                },
            };
        }
        if self.filled > 0 {
            self.close_leaf();
        }
        Leaves {
            len: self.len,
            cvs: self.cvs,
        }
    }
}

/// Feeds the bytes `[start, end)` of a sparse file to `builder`: holes as zeros, unread.
fn feed_range(file: &File, start: u64, end: u64, builder: &mut LeafBuilder) -> io::Result<()> {
    let mut buffer = vec![0u8; LEAF as usize];
    let mut at = start;
    for (offset, length) in sparse::data_extents(file, start, end)? {
        builder.push_zeros(offset - at);
        let mut done = 0;
        while done < length {
            let step = (length - done).min(LEAF) as usize;
            file.read_exact_at(&mut buffer[..step], offset + done)?;
            let zero = sparse::is_zero(&buffer[..step]);
            builder.push(&buffer[..step], zero);
            done += step as u64;
        }
        at = offset + length;
    }
    builder.push_zeros(end - at);
    Ok(())
}

/// The leaves of the bytes `[start, end)` of `file`, as an input of their own.
pub(crate) fn leaves_of(file: &File, start: u64, end: u64) -> io::Result<Leaves> {
    let mut builder = LeafBuilder::new();
    feed_range(file, start, end, &mut builder)?;
    Ok(builder.finish())
}

/// The BLAKE3 of the bytes `[start, end)` of `file`, reading only its data extents.
pub(crate) fn hash_range(file: &File, start: u64, end: u64) -> io::Result<blake3::Hash> {
    Ok(leaves_of(file, start, end)?.root())
}

/// The leaves of `file` (now `len` bytes long) made from `before`, the leaves of the file it
/// was copied from: leaves that no range in `written` touches keep their value; the others
/// are hashed again from the file.
pub(crate) fn update_leaves(
    file: &File,
    len: u64,
    before: &Leaves,
    written: &Ranges,
) -> io::Result<Leaves> {
    // Small inputs, and a last leaf whose length changed, are simplest hashed afresh.
    if len <= LEAF || before.len <= LEAF {
        return leaves_of(file, 0, len);
    }
    let count = len.div_ceil(LEAF);
    let mut cvs = Vec::with_capacity(count as usize);
    let mut buffer = vec![0u8; LEAF as usize];
    for i in 0..count {
        let (start, end) = (i * LEAF, ((i + 1) * LEAF).min(len));
        let full = end - start == LEAF;
        let same_shape = (i as usize) < before.cvs.len()
            && (full && (i + 1) * LEAF <= before.len || before.len == len);
        if same_shape && !written.touches(start, end) {
            cvs.push(before.cvs[i as usize]);
            continue;
        }
        let extents = sparse::data_extents(file, start, end)?;
        if full && extents.is_empty() {
            cvs.push(zero_leaf_value(i));
            continue;
        }
        let leaf = &mut buffer[..(end - start) as usize];
        leaf.fill(0);
        for (offset, length) in extents {
            file.read_exact_at(
                &mut leaf[(offset - start) as usize..(offset - start + length) as usize],
                offset,
            )?;
        }
        cvs.push(
            blake3::Hasher::new()
                .set_input_offset(start)
                .update(leaf)
                .finalize_non_root(),
        );
    }
    Ok(Leaves { len, cvs })
}

/// The bytes kept from the start of a stream to find its partition table in.
const HEAD: usize = LEAF as usize;

/// Digests of a disk image computed as it is written (by a `SparseWriter`): the image's
/// leaves and, once its primary partition table has gone by, each partition's digest.
pub(crate) struct StreamDigests {
    image: LeafBuilder,
    /// The stream's first bytes, until the partition table is read from them.
    head: Option<Vec<u8>>,
    partitions: Vec<PartitionFeed>,
    at: u64,
}

struct PartitionFeed {
    slot: u32,
    start: u64,
    end: u64,
    builder: LeafBuilder,
}

impl Default for StreamDigests {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamDigests {
    pub fn new() -> Self {
        StreamDigests {
            image: LeafBuilder::new(),
            head: Some(Vec::with_capacity(HEAD)),
            partitions: Vec::new(),
            at: 0,
        }
    }

    /// Keeps the head; once it is whole, reads the partition table from it and feeds the
    /// partitions what they missed.
    fn keep_head(&mut self, piece: Piece<'_>, len: u64) {
        let Some(head) = &mut self.head else { return };
        let want = (HEAD - head.len()).min(len as usize);
        match piece {
            Piece::Data(bytes) => head.extend_from_slice(&bytes[..want]),
            Piece::Zeros => head.resize(head.len() + want, 0),
        }
        if head.len() == HEAD {
            self.read_table();
        }
    }

    fn read_table(&mut self) {
        let Some(head) = self.head.take() else { return };
        let layout = super::gpt::primary_layout(&head).unwrap_or_default();
        self.partitions = layout
            .into_iter()
            .map(|(slot, start, end)| PartitionFeed {
                slot,
                start,
                end,
                builder: LeafBuilder::new(),
            })
            .collect();
        let fed = head.len() as u64;
        self.feed_partitions(0, Piece::Data(&head), fed);
    }

    /// Gives each partition its part of the bytes `[at, at + len)`.
    fn feed_partitions(&mut self, at: u64, piece: Piece<'_>, len: u64) {
        let end = at + len;
        for p in &mut self.partitions {
            let (from, to) = (at.max(p.start), end.min(p.end));
            if from >= to {
                continue;
            }
            match piece {
                Piece::Data(bytes) => p
                    .builder
                    .push(&bytes[(from - at) as usize..(to - at) as usize], false),
                Piece::Zeros => p.builder.push_zeros(to - from),
            }
        }
    }

    fn piece(&mut self, piece: Piece<'_>, len: u64) {
        let at = self.at;
        self.at += len;
        let mut taken = 0;
        if let Some(head) = &self.head {
            taken = (HEAD - head.len()).min(len as usize) as u64;
            self.keep_head(piece, len);
            if self.head.is_some() {
                return;
            }
        }
        if taken < len {
            let rest = match piece {
                Piece::Data(bytes) => Piece::Data(&bytes[taken as usize..]),
                Piece::Zeros => Piece::Zeros,
            };
            self.feed_partitions(at + taken, rest, len - taken);
        }
    }

    /// The digests of everything written: the image's leaves, and the partitions found in
    /// its primary table (none if it had no readable one).
    pub fn finish(mut self) -> ImageDigests {
        self.read_table();
        let partitions = self
            .partitions
            .into_iter()
            .filter(|p| p.builder.len() == p.end - p.start)
            .map(|p| PartitionHash {
                slot: p.slot,
                start: p.start,
                len: p.end - p.start,
                blake3: hex(&p.builder.finish().root()),
            })
            .collect();
        ImageDigests {
            leaves: self.image.finish(),
            partitions,
        }
    }
}

#[derive(Clone, Copy)]
enum Piece<'a> {
    Data(&'a [u8]),
    Zeros,
}

impl super::sparse::Observe for StreamDigests {
    fn data(&mut self, bytes: &[u8]) {
        self.image.push(bytes, false);
        self.piece(Piece::Data(bytes), bytes.len() as u64);
    }

    fn zeros(&mut self, len: u64) {
        self.image.push_zeros(len);
        self.piece(Piece::Zeros, len);
    }
}

/// What is cached beside a decompressed vendor image: its leaves and its partitions'
/// digests, with the identity of the file they were computed from. A record whose file has
/// changed since (another inode, size or change time), or whose check value is wrong, is
/// not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDigests {
    pub leaves: Leaves,
    /// `(slot, start, len, blake3)` of each partition.
    pub partitions: Vec<PartitionHash>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionHash {
    pub slot: u32,
    pub start: u64,
    pub len: u64,
    pub blake3: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    ctime: i64,
    ctime_nsec: i64,
}

impl Identity {
    fn of(file: &File) -> io::Result<Identity> {
        use std::os::unix::fs::MetadataExt;
        let m = file.metadata()?;
        Ok(Identity {
            dev: m.dev(),
            ino: m.ino(),
            size: m.len(),
            ctime: m.ctime(),
            ctime_nsec: m.ctime_nsec(),
        })
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    identity: Identity,
    len: u64,
    leaves: u64,
    partitions: Vec<PartitionHash>,
}

const DIGESTS_MAGIC: &[u8; 8] = b"KATOID01";

impl ImageDigests {
    /// The record at `path` for `file`, if it is intact and `file` has not changed.
    pub fn load(path: &Path, file: &File) -> Option<ImageDigests> {
        let body = parse_checked(&std::fs::read(path).ok()?, DIGESTS_MAGIC)?;
        let newline = body.iter().position(|&b| b == b'\n')?;
        let header: Header = serde_json::from_slice(&body[..newline]).ok()?;
        let cvs = &body[newline + 1..];
        let identity = Identity::of(file).ok()?;
        (header.identity == identity
            && header.len == identity.size
            && cvs.len() as u64 == header.leaves * 32
            && header.leaves == expected_leaves(header.len))
        .then(|| ImageDigests {
            leaves: Leaves {
                len: header.len,
                cvs: cvs_from(cvs),
            },
            partitions: header.partitions,
        })
    }

    /// Saves the record for `file` at `path` (atomically).
    pub(crate) fn save(&self, path: &Path, file: &File) -> io::Result<()> {
        let header = Header {
            identity: Identity::of(file)?,
            len: self.leaves.len,
            leaves: self.leaves.cvs.len() as u64,
            partitions: self.partitions.clone(),
        };
        let mut body = serde_json::to_vec(&header).expect("headers serialise");
        body.push(b'\n');
        for cv in &self.leaves.cvs {
            body.extend_from_slice(cv);
        }
        crate::atomic::write_atomic(path, &seal(DIGESTS_MAGIC, &body))
    }
}

fn expected_leaves(len: u64) -> u64 {
    len.div_ceil(LEAF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pattern(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn ranges_merge_and_touch() {
        let mut r = Ranges::default();
        r.add(10, 20);
        r.add(30, 40);
        r.add(20, 25);
        assert_eq!(r.0, [(10, 25), (30, 40)]);
        r.add(5, 35);
        assert_eq!(r.0, [(5, 40)]);
        assert!(r.touches(39, 50) && !r.touches(40, 50) && !r.touches(0, 5));
    }

    #[test]
    fn zero_leaves_match_hashing_zeros() {
        for len in [0u64, 1, LEAF - 1, LEAF, LEAF + 1, 3 * LEAF, 5 * LEAF + 4097] {
            let mut builder = LeafBuilder::new();
            builder.push_zeros(len);
            let leaves = builder.finish();
            assert_eq!(
                leaves.root(),
                blake3::hash(&vec![0u8; len as usize]),
                "{len} zeros"
            );
        }
    }

    #[test]
    fn zero_table_survives_a_round_trip_and_rejects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z");
        ensure_zero_leaves(5);
        zero_table_mut().saved = 0;
        save_zero_leaves(&path);
        let saved = parse_checked(&std::fs::read(&path).unwrap(), ZERO_MAGIC).unwrap();
        assert_eq!(cvs_from(&saved)[..5], zero_table().cvs[..5]);
        assert_eq!(cvs_from(&saved)[4], zero_leaf(4));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 1;
        assert!(parse_checked(&bytes, ZERO_MAGIC).is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Pieces of data and zeros in any order and size give `blake3::hash` of the whole.
        #[test]
        fn built_leaves_equal_the_plain_hash(pieces in prop::collection::vec((0usize..700_000, any::<bool>(), any::<u64>()), 0..8)) {
                let mut builder = LeafBuilder::new();
            let mut all = Vec::new();
            for (len, zero, seed) in pieces {
                if zero {
                    builder.push_zeros(len as u64);
                    all.extend(std::iter::repeat_n(0u8, len));
                } else {
                    let data = pattern(len, seed);
                    builder.push(&data, false);
                    all.extend(data);
                }
            }
            prop_assert_eq!(builder.finish().root(), blake3::hash(&all));
        }

        /// Updating leaves after writes equals hashing the file afresh.
        #[test]
        fn updated_leaves_equal_a_full_hash(len in 0u64..(6 * LEAF), grow in 0u64..(2 * LEAF), writes in prop::collection::vec((0u64..(8 * LEAF), 1usize..300_000, any::<bool>()), 0..5)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("image");
            let file = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path).unwrap();
            file.set_len(len).unwrap();
            let data = pattern((len / 3) as usize, len);
            file.write_all_at(&data, len / 3).unwrap();
                let before = leaves_of(&file, 0, len).unwrap();
            prop_assert_eq!(before.root(), blake3::hash(&std::fs::read(&path).unwrap()));
            let new_len = len + grow;
            file.set_len(new_len).unwrap();
            let mut written = Ranges::default();
            written.add(len.min(new_len), new_len);
            for (at, size, punch) in writes {
                let at = at.min(new_len);
                let end = (at + size as u64).min(new_len);
                if punch {
                    let mut f = file.try_clone().unwrap();
                    sparse::punch_hole(&mut f, at, end - at).unwrap();
                } else {
                    file.write_all_at(&pattern((end - at) as usize, at), at).unwrap();
                }
                written.add(at, end);
            }
            let after = update_leaves(&file, new_len, &before, &written).unwrap();
            prop_assert_eq!(after.root(), blake3::hash(&std::fs::read(&path).unwrap()));
        }
    }

    #[test]
    fn image_digests_are_refused_once_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raw");
        std::fs::write(&path, pattern(3 << 20, 7)).unwrap();
        let file = File::open(&path).unwrap();
        let digests = ImageDigests {
            leaves: leaves_of(&file, 0, 3 << 20).unwrap(),
            partitions: Vec::new(),
        };
        let record = dir.path().join("raw.digests");
        digests.save(&record, &file).unwrap();
        assert_eq!(ImageDigests::load(&record, &file), Some(digests.clone()));
        // A damaged record is not used.
        let mut bytes = std::fs::read(&record).unwrap();
        let n = bytes.len();
        bytes[n - 40] ^= 0x10;
        std::fs::write(&record, &bytes).unwrap();
        assert_eq!(ImageDigests::load(&record, &file), None);
        // Nor one for a file that was written since.
        digests.save(&record, &file).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all_at(b"x", 5)
            .unwrap();
        let file = File::open(&path).unwrap();
        assert_eq!(ImageDigests::load(&record, &file), None);
    }
}
