//! A read-only EROFS reader, enough to find and read one small file by path: system
//! extensions made by `mkfs.erofs` (and the root of Flatcar's signed sysext images since the
//! 4628 releases) are EROFS. Nothing is mounted; every size read from the image is bounded
//! first.
//!
//! Layout (little-endian), from the kernel's `fs/erofs/erofs_fs.h`:
//! - superblock at byte 1024: magic 0xE0F5E1E2 (+0), block size bits (+12), root inode
//!   number (+14, u16), blocks (+36), metadata block address (+40), incompatible features
//!   (+80), extra devices (+86);
//! - inode `nid` at `meta_blkaddr * block + nid * 32`: a compact (32 bytes) or extended (64)
//!   inode, by bit 0 of its format (+0); bits 1-3 are the data layout (0 plain, 2 inline, 1
//!   and 3 compressed, 4 chunked); xattr count (+2), mode (+4), size (+8, u32 or u64), the
//!   first data block (+16);
//! - a plain file's data is contiguous blocks; an inline file keeps its last partial block
//!   right after the inode and its xattrs, in the same block;
//! - a folder's data is blocks of 12-byte entries (node number, name offset, type) followed
//!   by the names; the first entry's name offset tells how many entries the block has;
//! - compressed files (`mkfs.erofs -z`) are read through their cluster map (`zmap.rs`).

mod zmap;

use std::io::{Read, Seek};

use super::image::{self, ImageError, ReadOnlyImage, le16, le32, le64};

const FORMAT: &str = "EROFS";

const SUPERBLOCK_AT: u64 = 1024;
const SUPERBLOCK_LEN: usize = 128;
const MAGIC: u32 = 0xE0F5_E1E2;
const DIRENT_LEN: usize = 12;
/// A folder larger than this is no system extension's.
const LISTING_MAX: u64 = 16 << 20;
const S_IFMT: u16 = 0o170_000;
const S_IFDIR: u16 = 0o040_000;
const S_IFREG: u16 = 0o100_000;

const LAYOUT_FLAT_PLAIN: u16 = 0;
const LAYOUT_COMPRESSED_FULL: u16 = 1;
const LAYOUT_FLAT_INLINE: u16 = 2;
const LAYOUT_COMPRESSED_COMPACT: u16 = 3;
/// Features this reader does not know: 48-bit block addresses (0x80), metadata in an inode
/// of its own (0x100), and anything newer.
const INCOMPAT_UNREAD: u32 = !0x7F;

/// The superblock fields the reader uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    pub block_bits: u8,
    pub root_nid: u64,
    pub blocks: u32,
    pub meta_blkaddr: u32,
    pub feature_incompat: u32,
}

impl Superblock {
    pub fn block_size(&self) -> u64 {
        1 << self.block_bits
    }

    /// Parses the 128 bytes at byte 1024 of an image of `image_len` bytes.
    pub fn parse(bytes: &[u8], image_len: u64) -> Result<Self, ImageError> {
        let bad = |offset: u64, expected: String| corrupt(SUPERBLOCK_AT + offset, expected);
        if bytes.len() < SUPERBLOCK_LEN || le32(bytes, 0) != MAGIC {
            return Err(bad(0, "the EROFS magic 0xE0F5E1E2".into()));
        }
        let block_bits = bytes[12];
        if !(9..=16).contains(&block_bits) {
            return Err(bad(
                12,
                format!("a block size of 512 B to 64 KiB, not 2^{block_bits}"),
            ));
        }
        let extra_devices = le16(bytes, 86);
        if extra_devices != 0 {
            return Err(ImageError::Unsupported {
                format: "EROFS",
                what: format!("images whose data is on {extra_devices} other devices"),
            });
        }
        let incompat = le32(bytes, 80);
        if incompat & INCOMPAT_UNREAD != 0 {
            return Err(ImageError::Unsupported {
                format: "EROFS",
                what: format!(
                    "images with incompatible features {:#x}",
                    incompat & INCOMPAT_UNREAD
                ),
            });
        }
        let superblock = Superblock {
            block_bits,
            root_nid: u64::from(le16(bytes, 14)),
            blocks: le32(bytes, 36),
            meta_blkaddr: le32(bytes, 40),
            feature_incompat: le32(bytes, 80),
        };
        let needed = u64::from(superblock.blocks) << block_bits;
        if needed > image_len {
            return Err(bad(
                36,
                format!("at most the image's {image_len} bytes in blocks, not {needed}"),
            ));
        }
        Ok(superblock)
    }
}

/// One inode, as far as a lookup needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Inode {
    nid: u64,
    at: u64,
    mode: u16,
    layout: u16,
    size: u64,
    first_block: u32,
    /// Bytes from the inode's start to its inline data (the inode and its xattrs).
    inline_at: u64,
}

/// An opened EROFS image.
pub struct Erofs<R> {
    image: R,
    len: u64,
    pub superblock: Superblock,
}

impl<R: Read + Seek> Erofs<R> {
    pub fn open(mut image: R, len: u64) -> Result<Self, ImageError> {
        let bytes = image::read_at(FORMAT, &mut image, len, SUPERBLOCK_AT, SUPERBLOCK_LEN)?;
        let superblock = Superblock::parse(&bytes, len)?;
        Ok(Erofs {
            image,
            len,
            superblock,
        })
    }

    fn lookup(&mut self, path: &[&str]) -> Result<Option<Inode>, ImageError> {
        let mut inode = self.inode(self.superblock.root_nid)?;
        for name in path {
            if inode.mode & S_IFMT != S_IFDIR {
                return Ok(None);
            }
            let Some((_, nid)) = self.listing(&inode)?.into_iter().find(|(n, _)| n == name) else {
                return Ok(None);
            };
            inode = self.inode(nid)?;
        }
        Ok(Some(inode))
    }

    fn inode(&mut self, nid: u64) -> Result<Inode, ImageError> {
        let at = (u64::from(self.superblock.meta_blkaddr) << self.superblock.block_bits)
            .saturating_add(nid.saturating_mul(32));
        let compact = image::read_at(FORMAT, &mut self.image, self.len, at, 32)?;
        let format = le16(&compact, 0);
        let extended = format & 1 == 1;
        let b = if extended {
            image::read_at(FORMAT, &mut self.image, self.len, at, 64)?
        } else {
            compact
        };
        let xattr_count = u64::from(le16(&b, 2));
        let xattr_len = if xattr_count == 0 {
            0
        } else {
            12 + (xattr_count - 1) * 4
        };
        Ok(Inode {
            nid,
            at,
            mode: le16(&b, 4),
            layout: (format >> 1) & 0x7,
            size: if extended {
                le64(&b, 8)
            } else {
                u64::from(le32(&b, 8))
            },
            first_block: le32(&b, 16),
            inline_at: if extended { 64 } else { 32 } + xattr_len,
        })
    }

    /// The bytes of an inode's data, if its layout is one this reader knows.
    fn data(&mut self, inode: &Inode) -> Result<Vec<u8>, ImageError> {
        let block = self.superblock.block_size();
        let start = u64::from(inode.first_block) << self.superblock.block_bits;
        match inode.layout {
            LAYOUT_FLAT_PLAIN => image::read_at(
                FORMAT,
                &mut self.image,
                self.len,
                start,
                inode.size as usize,
            ),
            LAYOUT_FLAT_INLINE => {
                let tail = inode.size % block;
                let mut data = image::read_at(
                    FORMAT,
                    &mut self.image,
                    self.len,
                    start,
                    (inode.size - tail) as usize,
                )?;
                let tail_at = inode.at + inode.inline_at;
                if tail_at % block + tail > block {
                    return Err(corrupt(
                        inode.at,
                        format!(
                            "inline data of inode {} inside its block ({tail} bytes at {tail_at})",
                            inode.nid
                        ),
                    ));
                }
                data.extend(image::read_at(
                    FORMAT,
                    &mut self.image,
                    self.len,
                    tail_at,
                    tail as usize,
                )?);
                Ok(data)
            }
            LAYOUT_COMPRESSED_FULL | LAYOUT_COMPRESSED_COMPACT
                if inode.mode & S_IFMT == S_IFDIR =>
            {
                Err(corrupt(
                    inode.at,
                    format!("inode {}: a folder that is not compressed", inode.nid),
                ))
            }
            LAYOUT_COMPRESSED_FULL | LAYOUT_COMPRESSED_COMPACT => self.compressed(inode),
            other => Err(ImageError::Unsupported {
                format: "EROFS",
                what: format!("files of data layout {other} (4 is chunked)"),
            }),
        }
    }

    /// A folder's entries with the node number of each.
    fn listing(&mut self, dir: &Inode) -> Result<Vec<(String, u64)>, ImageError> {
        if dir.size > LISTING_MAX {
            return Err(corrupt(
                dir.at,
                format!("a folder of at most {LISTING_MAX} bytes, not {}", dir.size),
            ));
        }
        let data = self.data(dir)?;
        let mut entries = Vec::new();
        for block in data.chunks(self.superblock.block_size() as usize) {
            parse_dir_block(block, &mut entries).map_err(|expected| corrupt(dir.at, expected))?;
        }
        Ok(entries
            .into_iter()
            .filter(|(name, _)| name != "." && name != "..")
            .collect())
    }
}

impl<R: Read + Seek> ReadOnlyImage for Erofs<R> {
    fn list(&mut self, path: &[&str]) -> Result<Option<Vec<String>>, ImageError> {
        match self.lookup(path)? {
            Some(dir) if dir.mode & S_IFMT == S_IFDIR => Ok(Some(
                self.listing(&dir)?
                    .into_iter()
                    .map(|(name, _)| name)
                    .collect(),
            )),
            _ => Ok(None),
        }
    }

    fn read_file(&mut self, path: &[&str], limit: u64) -> Result<Option<Vec<u8>>, ImageError> {
        let Some(inode) = self.lookup(path)? else {
            return Ok(None);
        };
        if inode.mode & S_IFMT != S_IFREG {
            return Err(ImageError::NotAFile {
                path: path.join("/"),
            });
        }
        super::image::within_limit(path, inode.size, limit)?;
        self.data(&inode).map(Some)
    }
}

/// Appends one folder block's names and node numbers to `entries`.
fn parse_dir_block(block: &[u8], entries: &mut Vec<(String, u64)>) -> Result<(), String> {
    if block.len() < DIRENT_LEN {
        return Err("a folder block holding at least one entry".into());
    }
    let first = usize::from(le16(block, 8));
    if first < DIRENT_LEN || first % DIRENT_LEN != 0 || first > block.len() {
        return Err(format!(
            "a first name offset that is a multiple of 12 inside the block, not {first}"
        ));
    }
    let count = first / DIRENT_LEN;
    for i in 0..count {
        let entry = &block[i * DIRENT_LEN..(i + 1) * DIRENT_LEN];
        let start = usize::from(le16(entry, 8));
        let end = if i + 1 < count {
            usize::from(le16(block, (i + 1) * DIRENT_LEN + 8))
        } else {
            block.len()
        };
        let name = block
            .get(start..end)
            .filter(|_| start >= first)
            .ok_or_else(|| format!("name {i} of the block between {first} and {}", block.len()))?;
        // The last name of a block may be followed by zero padding.
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        let name = std::str::from_utf8(name).map_err(|_| "names in UTF-8".to_string())?;
        if name.is_empty() || name.contains('/') {
            return Err(format!("an entry name without `/`, not {name:?}"));
        }
        entries.push((name.to_string(), le64(entry, 0)));
    }
    Ok(())
}

fn corrupt(offset: u64, expected: String) -> ImageError {
    ImageError::Corrupt {
        format: "EROFS",
        offset,
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dir_block(names: &[(&str, u64)]) -> Vec<u8> {
        let mut block = Vec::new();
        let mut name_at = names.len() * DIRENT_LEN;
        for (name, nid) in names {
            block.extend_from_slice(&nid.to_le_bytes());
            block.extend_from_slice(&(name_at as u16).to_le_bytes());
            block.extend_from_slice(&[1, 0]);
            name_at += name.len();
        }
        for (name, _) in names {
            block.extend_from_slice(name.as_bytes());
        }
        block.resize(4096, 0);
        block
    }

    #[test]
    fn a_folder_block_yields_names_and_node_numbers() {
        let mut entries = Vec::new();
        parse_dir_block(
            &dir_block(&[(".", 1), ("..", 1), ("usr", 40)]),
            &mut entries,
        )
        .unwrap();
        assert_eq!(
            entries,
            vec![(".".into(), 1), ("..".into(), 1), ("usr".into(), 40)]
        );
        let mut bad = dir_block(&[("usr", 40)]);
        bad[8] = 5;
        assert!(parse_dir_block(&bad, &mut Vec::new()).is_err());
    }

    #[test]
    fn superblock_fields_are_checked_against_the_image() {
        let mut b = vec![0u8; SUPERBLOCK_LEN];
        b[..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[12] = 12;
        b[36..40].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(Superblock::parse(&b, 8192).unwrap().block_size(), 4096);
        let error = Superblock::parse(&b, 8191).unwrap_err().to_string();
        assert_eq!(
            error,
            "EROFS: at byte 1060: expected at most the image's 8191 bytes in blocks, not 8192"
        );
        b[12] = 30;
        assert!(
            Superblock::parse(&b, 8192)
                .unwrap_err()
                .to_string()
                .contains("at byte 1036")
        );
    }

    proptest! {
        #[test]
        fn any_folder_block_is_parsed_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_dir_block(&bytes, &mut Vec::new());
        }

        #[test]
        fn any_image_is_read_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..8192)) {
            let mut bytes = bytes;
            if bytes.len() >= 1152 {
                bytes[1024..1028].copy_from_slice(&MAGIC.to_le_bytes());
                bytes[1036] = 12;
            }
            let len = bytes.len() as u64;
            if let Ok(mut fs) = Erofs::open(std::io::Cursor::new(bytes), len) {
                let _ = fs.read_file(&["usr", "lib", "x"], 1 << 16);
                let _ = fs.list(&["usr"]);
            }
        }
    }
}
