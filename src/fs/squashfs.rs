//! A read-only squashfs 4.0 reader, enough to find and read one small file by path: Flatcar's
//! system extensions up to the 4593 stable releases are squashfs images (zstd), and so are many
//! hand-made ones. Nothing is mounted; every size read from the image is bounded first.
//!
//! Layout (little-endian), from squashfs-tools' `squashfs_fs.h`:
//! - superblock at 0, 96 bytes: magic `hsqs` (+0), inode count (+4), block size (+12),
//!   fragment count (+16), compressor id (+20), block log (+22), flags (+24), major (+28, = 4),
//!   root inode reference (+32), bytes used (+40), inode table (+64), directory table (+72),
//!   fragment table (+80);
//! - metadata blocks: a u16 header (bit 15: stored uncompressed; low 15 bits: stored length),
//!   then at most 8 KiB once decoded. Inode references are `block << 16 | offset`, the block
//!   counted from the inode table's start;
//! - a directory listing is runs of a 12-byte header (count - 1, inode block, base inode
//!   number) followed by entries (u16 offset, i16 inode delta, u16 type, u16 name length - 1,
//!   the name);
//! - a file's data is blocks whose u32 sizes follow its inode (bit 24: stored uncompressed; 0:
//!   a hole), then possibly a tail in a fragment block named by the fragment table.

use std::io::{Read, Seek};

use super::codec;
use super::image::{self, ImageError, ReadOnlyImage, le16, le32, le64};

const FORMAT: &str = "squashfs";

const MAGIC: &[u8; 4] = b"hsqs";
const SUPERBLOCK_LEN: usize = 96;
const METADATA_MAX: usize = 8192;
/// squashfs-tools' own limit for a data block.
const BLOCK_MAX: u32 = 1 << 20;
/// A directory listing longer than this is no system extension's.
const LISTING_MAX: u64 = 16 << 20;
const NO_FRAGMENT: u32 = 0xFFFF_FFFF;

const BASIC_DIR: u16 = 1;
const BASIC_FILE: u16 = 2;
const BASIC_SYMLINK: u16 = 3;
const EXT_DIR: u16 = 8;
const EXT_FILE: u16 = 9;
const EXT_SYMLINK: u16 = 10;

/// How the image's blocks are compressed (squashfs compressor ids 1 to 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compressor {
    Gzip,
    Lzma,
    Lzo,
    Xz,
    Lz4,
    Zstd,
}

impl Compressor {
    fn from_id(id: u16) -> Option<Self> {
        Some(match id {
            1 => Compressor::Gzip,
            2 => Compressor::Lzma,
            3 => Compressor::Lzo,
            4 => Compressor::Xz,
            5 => Compressor::Lz4,
            6 => Compressor::Zstd,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Compressor::Gzip => "gzip",
            Compressor::Lzma => "lzma",
            Compressor::Lzo => "lzo",
            Compressor::Xz => "xz",
            Compressor::Lz4 => "lz4",
            Compressor::Zstd => "zstd",
        }
    }

    /// Decodes one block into at most `limit` bytes.
    fn decode(self, data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
        // One byte over the limit tells a block that decodes to too much.
        let out = match self {
            Compressor::Gzip => codec::zlib(data, limit + 1)?,
            Compressor::Zstd => codec::zstd(data, limit + 1)?,
            Compressor::Xz | Compressor::Lzma => {
                let mut sink = crate::io::LimitedVec::new(limit);
                let result = if self == Compressor::Xz {
                    xz_footer_fits(data)?;
                    lzma_rs::xz_decompress(&mut &data[..], &mut sink)
                } else {
                    lzma_rs::lzma_decompress(&mut &data[..], &mut sink)
                };
                result.map_err(|e| format!("{e:?}"))?;
                sink.into_inner()
            }
            Compressor::Lzo => {
                let mut out = Vec::new();
                crate::fs::btrfs::lzo::decompress_lzo1x(data, &mut out, limit)
                    .map_err(|e| e.to_string())?;
                out
            }
            Compressor::Lz4 => crate::fs::lz4::decode(data, limit + 1)?,
        };
        if out.len() > limit {
            return Err(format!("decodes to more than {limit} bytes"));
        }
        Ok(out)
    }
}

/// An xz stream ends with a 12-byte footer whose backward size (+4, u32) gives its index's
/// length in 4-byte units, minus one; lzma-rs adds that one without checking for overflow, so
/// a footer that cannot fit the block is refused here first.
fn xz_footer_fits(data: &[u8]) -> Result<(), String> {
    let footer = data
        .len()
        .checked_sub(12)
        .filter(|&at| at >= 12 && &data[data.len() - 2..] == b"YZ")
        .ok_or("an xz stream ending with its footer")?;
    let backward = u64::from(le32(data, footer + 4));
    if (backward + 1) * 4 > footer as u64 {
        return Err(format!(
            "an xz index of {} bytes inside the block",
            (backward + 1) * 4
        ));
    }
    Ok(())
}

/// The superblock fields the reader uses, each checked against the image's length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    pub compressor: Compressor,
    pub block_size: u32,
    pub fragments: u32,
    pub root_inode: u64,
    pub bytes_used: u64,
    pub inode_table: u64,
    pub directory_table: u64,
    pub fragment_table: u64,
}

impl Superblock {
    pub fn parse(bytes: &[u8], image_len: u64) -> Result<Self, ImageError> {
        let bad = |offset: u64, expected: String| ImageError::Corrupt {
            format: "squashfs",
            offset,
            expected,
        };
        if bytes.len() < SUPERBLOCK_LEN || &bytes[..4] != MAGIC {
            return Err(bad(0, "the squashfs magic `hsqs`".into()));
        }
        let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
        if u16_at(28) != 4 {
            return Err(bad(
                28,
                format!("version 4.0, not {}.{}", u16_at(28), u16_at(30)),
            ));
        }
        let compressor = Compressor::from_id(u16_at(20))
            .ok_or_else(|| bad(20, format!("a compressor id 1 to 6, not {}", u16_at(20))))?;
        let block_size = u32_at(12);
        if !block_size.is_power_of_two() || !(4096..=BLOCK_MAX).contains(&block_size) {
            return Err(bad(
                12,
                format!("a block size 4 KiB to 1 MiB, not {block_size}"),
            ));
        }
        let superblock = Superblock {
            compressor,
            block_size,
            fragments: u32_at(16),
            root_inode: u64_at(32),
            bytes_used: u64_at(40),
            inode_table: u64_at(64),
            directory_table: u64_at(72),
            fragment_table: u64_at(80),
        };
        if superblock.bytes_used > image_len {
            return Err(bad(
                40,
                format!(
                    "at most the image's {image_len} bytes used, not {}",
                    superblock.bytes_used
                ),
            ));
        }
        for (offset, table) in [
            (64, superblock.inode_table),
            (72, superblock.directory_table),
        ] {
            if table >= superblock.bytes_used {
                return Err(bad(
                    offset,
                    format!(
                        "a table inside the {} bytes used, not at {table}",
                        superblock.bytes_used
                    ),
                ));
            }
        }
        Ok(superblock)
    }
}

/// What an inode is, as far as a lookup needs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Inode {
    Dir { block: u32, offset: u16, len: u32 },
    File(FileInode),
    Symlink,
    Other(u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileInode {
    blocks_start: u64,
    size: u64,
    fragment: u32,
    fragment_offset: u32,
    block_sizes: Vec<u32>,
}

/// An opened squashfs image.
pub struct Squashfs<R> {
    image: R,
    len: u64,
    pub superblock: Superblock,
}

impl<R: Read + Seek> Squashfs<R> {
    pub fn open(mut image: R, len: u64) -> Result<Self, ImageError> {
        let bytes = image::read_at(FORMAT, &mut image, len, 0, SUPERBLOCK_LEN)?;
        let superblock = Superblock::parse(&bytes, len)?;
        Ok(Squashfs {
            image,
            len,
            superblock,
        })
    }
}

impl<R: Read + Seek> ReadOnlyImage for Squashfs<R> {
    fn list(&mut self, path: &[&str]) -> Result<Option<Vec<String>>, ImageError> {
        match self.lookup(path)? {
            Some(Inode::Dir { block, offset, len }) => Ok(Some(
                self.listing(block, offset, len)?
                    .into_iter()
                    .map(|(name, _)| name)
                    .collect(),
            )),
            _ => Ok(None),
        }
    }

    fn read_file(&mut self, path: &[&str], limit: u64) -> Result<Option<Vec<u8>>, ImageError> {
        match self.lookup(path)? {
            None => Ok(None),
            Some(Inode::File(file)) => {
                super::image::within_limit(path, file.size, limit)?;
                self.file_bytes(&file).map(Some)
            }
            Some(_) => Err(ImageError::NotAFile {
                path: path.join("/"),
            }),
        }
    }
}

impl<R: Read + Seek> Squashfs<R> {
    fn lookup(&mut self, path: &[&str]) -> Result<Option<Inode>, ImageError> {
        let mut inode = self.inode(self.superblock.root_inode)?;
        for name in path {
            let Inode::Dir { block, offset, len } = inode else {
                return Ok(None);
            };
            let entries = self.listing(block, offset, len)?;
            let Some((_, reference)) = entries.into_iter().find(|(n, _)| n == name) else {
                return Ok(None);
            };
            inode = self.inode(reference)?;
        }
        Ok(Some(inode))
    }

    fn inode(&mut self, reference: u64) -> Result<Inode, ImageError> {
        let mut cursor = self.cursor(
            self.superblock.inode_table,
            reference >> 16,
            reference & 0xFFFF,
        )?;
        let header = cursor.take(self, 16)?;
        let kind = u16::from_le_bytes([header[0], header[1]]);
        Ok(match kind {
            BASIC_DIR => {
                let b = cursor.take(self, 16)?;
                Inode::Dir {
                    block: le32(&b, 0),
                    len: u32::from(le16(&b, 8)),
                    offset: le16(&b, 10),
                }
            }
            EXT_DIR => {
                let b = cursor.take(self, 24)?;
                Inode::Dir {
                    len: le32(&b, 4),
                    block: le32(&b, 8),
                    offset: le16(&b, 18),
                }
            }
            BASIC_FILE => {
                let b = cursor.take(self, 16)?;
                let (start, fragment, fragment_offset, size) =
                    (le32(&b, 0), le32(&b, 4), le32(&b, 8), le32(&b, 12));
                self.file_inode(
                    &mut cursor,
                    u64::from(start),
                    u64::from(size),
                    fragment,
                    fragment_offset,
                )?
            }
            EXT_FILE => {
                let b = cursor.take(self, 40)?;
                let (start, size) = (le64(&b, 0), le64(&b, 8));
                let (fragment, fragment_offset) = (le32(&b, 28), le32(&b, 32));
                self.file_inode(&mut cursor, start, size, fragment, fragment_offset)?
            }
            BASIC_SYMLINK | EXT_SYMLINK => Inode::Symlink,
            other => Inode::Other(other),
        })
    }

    fn file_inode(
        &mut self,
        cursor: &mut Cursor,
        blocks_start: u64,
        size: u64,
        fragment: u32,
        fragment_offset: u32,
    ) -> Result<Inode, ImageError> {
        if size > self.len.saturating_mul(u64::from(BLOCK_MAX)) {
            return Err(cursor.corrupt(format!("a file size that fits the image, not {size}")));
        }
        let block = u64::from(self.superblock.block_size);
        let count = if fragment == NO_FRAGMENT {
            size.div_ceil(block)
        } else {
            size / block
        };
        // Each block of a file has its 4-byte size in the inode table; more than the table
        // holds cannot be.
        if count > self.len / 4 {
            return Err(cursor.corrupt(format!(
                "a block list that fits the image, not {count} blocks"
            )));
        }
        let sizes = cursor.take(self, count as usize * 4)?;
        Ok(Inode::File(FileInode {
            blocks_start,
            size,
            fragment,
            fragment_offset,
            block_sizes: sizes.chunks_exact(4).map(|c| le32(c, 0)).collect(),
        }))
    }

    /// A folder's entries with the inode reference of each.
    fn listing(
        &mut self,
        block: u32,
        offset: u16,
        len: u32,
    ) -> Result<Vec<(String, u64)>, ImageError> {
        // The stored length counts three bytes more than the listing ("." and "..").
        let len = u64::from(len).saturating_sub(3);
        if len > LISTING_MAX {
            return Err(ImageError::Corrupt {
                format: "squashfs",
                offset: self
                    .superblock
                    .directory_table
                    .saturating_add(u64::from(block)),
                expected: format!("a folder listing of at most {LISTING_MAX} bytes, not {len}"),
            });
        }
        let mut cursor = self.cursor(
            self.superblock.directory_table,
            u64::from(block),
            u64::from(offset),
        )?;
        let bytes = cursor.take(self, len as usize)?;
        parse_listing(&bytes).map_err(|expected| cursor.corrupt(expected))
    }

    fn file_bytes(&mut self, file: &FileInode) -> Result<Vec<u8>, ImageError> {
        let block = self.superblock.block_size as usize;
        let mut out = Vec::new();
        let mut at = file.blocks_start;
        for &stored in &file.block_sizes {
            let want = block.min((file.size - out.len() as u64) as usize);
            if stored == 0 {
                out.resize(out.len() + want, 0);
                continue;
            }
            let length = u64::from(stored & 0x00FF_FFFF);
            let data = self.data_block(at, length, stored & (1 << 24) == 0, want)?;
            out.extend_from_slice(&data[..want.min(data.len())]);
            at = at.saturating_add(length);
        }
        if file.fragment != NO_FRAGMENT {
            let tail = (file.size - out.len() as u64) as usize;
            let fragment = self.fragment(file.fragment)?;
            let start = file.fragment_offset as usize;
            let piece = fragment
                .get(start..start + tail)
                .ok_or_else(|| ImageError::Corrupt {
                    format: "squashfs",
                    offset: self.superblock.fragment_table,
                    expected: format!("a fragment holding bytes {start}..{}", start + tail),
                })?;
            out.extend_from_slice(piece);
        }
        if out.len() as u64 != file.size {
            return Err(ImageError::Corrupt {
                format: "squashfs",
                offset: file.blocks_start,
                expected: format!("{} bytes of file data, found {}", file.size, out.len()),
            });
        }
        Ok(out)
    }

    fn fragment(&mut self, index: u32) -> Result<Vec<u8>, ImageError> {
        if index >= self.superblock.fragments {
            return Err(ImageError::Corrupt {
                format: "squashfs",
                offset: 16,
                expected: format!(
                    "fragment {index} among the {} fragments",
                    self.superblock.fragments
                ),
            });
        }
        // The table's u64s point at metadata blocks of 512 entries of 16 bytes each.
        let pointer_at = self
            .superblock
            .fragment_table
            .saturating_add(u64::from(index / 512) * 8);
        let pointer = le64(
            &image::read_at(FORMAT, &mut self.image, self.len, pointer_at, 8)?,
            0,
        );
        let mut cursor = Cursor::new(pointer, u64::from(index % 512) * 16)?;
        let entry = cursor.take(self, 16)?;
        let (start, stored) = (le64(&entry, 0), le32(&entry, 8));
        let block = self.superblock.block_size as usize;
        self.data_block(
            start,
            u64::from(stored & 0x00FF_FFFF),
            stored & (1 << 24) == 0,
            block,
        )
    }

    fn data_block(
        &mut self,
        at: u64,
        length: u64,
        compressed: bool,
        limit: usize,
    ) -> Result<Vec<u8>, ImageError> {
        if length > u64::from(BLOCK_MAX) {
            return Err(ImageError::Corrupt {
                format: "squashfs",
                offset: at,
                expected: format!("a data block of at most 1 MiB, not {length} bytes"),
            });
        }
        let stored = image::read_at(FORMAT, &mut self.image, self.len, at, length as usize)?;
        if !compressed {
            return Ok(stored);
        }
        self.decode(&stored, limit, at, "block")
    }

    /// Decodes a stored block or metadata block found at `at`.
    fn decode(
        &self,
        stored: &[u8],
        limit: usize,
        at: u64,
        what: &str,
    ) -> Result<Vec<u8>, ImageError> {
        let compressor = self.superblock.compressor;
        compressor
            .decode(stored, limit)
            .map_err(|why| ImageError::Corrupt {
                format: "squashfs",
                offset: at,
                expected: format!("a {} {what} ({why})", compressor.name()),
            })
    }

    fn cursor(&self, table: u64, block: u64, offset: u64) -> Result<Cursor, ImageError> {
        Cursor::new(table.saturating_add(block), offset)
    }

    /// One metadata block: its decoded bytes and where the next one starts.
    fn metadata_block(&mut self, at: u64) -> Result<(Vec<u8>, u64), ImageError> {
        let header = image::read_at(FORMAT, &mut self.image, self.len, at, 2)?;
        let header = le16(&header, 0);
        let length = usize::from(header & 0x7FFF);
        if length == 0 || length > METADATA_MAX {
            return Err(ImageError::Corrupt {
                format: "squashfs",
                offset: at,
                expected: format!("a metadata block of 1 to {METADATA_MAX} bytes, not {length}"),
            });
        }
        let stored = image::read_at(FORMAT, &mut self.image, self.len, at + 2, length)?;
        let data = if header & 0x8000 != 0 {
            stored
        } else {
            self.decode(&stored, METADATA_MAX, at, "metadata block")?
        };
        Ok((data, at + 2 + length as u64))
    }
}

/// A position in a run of metadata blocks: reads continue into the next block.
struct Cursor {
    block: u64,
    offset: usize,
}

impl Cursor {
    fn new(block: u64, offset: u64) -> Result<Self, ImageError> {
        if offset >= METADATA_MAX as u64 {
            return Err(ImageError::Corrupt {
                format: "squashfs",
                offset: block,
                expected: format!("an offset inside a metadata block, not {offset}"),
            });
        }
        Ok(Cursor {
            block,
            offset: offset as usize,
        })
    }

    fn take<R: Read + Seek>(
        &mut self,
        fs: &mut Squashfs<R>,
        len: usize,
    ) -> Result<Vec<u8>, ImageError> {
        let mut out = Vec::with_capacity(len.min(METADATA_MAX));
        while out.len() < len {
            let (data, next) = fs.metadata_block(self.block)?;
            let start = self.offset.min(data.len());
            let piece = &data[start..data.len().min(start + len - out.len())];
            if piece.is_empty() {
                return Err(self.corrupt(format!("{len} more bytes of metadata")));
            }
            out.extend_from_slice(piece);
            self.offset = start + piece.len();
            if self.offset == data.len() {
                self.block = next;
                self.offset = 0;
            }
        }
        Ok(out)
    }

    fn corrupt(&self, expected: String) -> ImageError {
        ImageError::Corrupt {
            format: "squashfs",
            offset: self.block,
            expected,
        }
    }
}

/// Parses a directory listing into names and inode references.
fn parse_listing(bytes: &[u8]) -> Result<Vec<(String, u64)>, String> {
    let mut entries = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let header = bytes.get(at..at + 12).ok_or("a whole listing header")?;
        let (count, start) = (le32(header, 0) as usize + 1, le32(header, 4));
        if count > 256 {
            return Err(format!("at most 256 entries under one header, not {count}"));
        }
        at += 12;
        for _ in 0..count {
            let entry = bytes.get(at..at + 8).ok_or("a whole folder entry")?;
            let offset = le16(entry, 0);
            let name_len = usize::from(le16(entry, 6)) + 1;
            let name = bytes
                .get(at + 8..at + 8 + name_len)
                .ok_or("a whole entry name")?;
            let name = std::str::from_utf8(name).map_err(|_| "entry names in UTF-8")?;
            if name.contains('/') || name == "." || name == ".." {
                return Err(format!("an entry name without `/`, not {name:?}"));
            }
            entries.push((name.to_string(), u64::from(start) << 16 | u64::from(offset)));
            at += 8 + name_len;
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn superblock(patch: impl FnOnce(&mut [u8])) -> Vec<u8> {
        let mut b = vec![0u8; SUPERBLOCK_LEN];
        b[..4].copy_from_slice(MAGIC);
        b[12..16].copy_from_slice(&131072u32.to_le_bytes());
        b[20..22].copy_from_slice(&6u16.to_le_bytes());
        b[28..30].copy_from_slice(&4u16.to_le_bytes());
        b[40..48].copy_from_slice(&4096u64.to_le_bytes());
        b[64..72].copy_from_slice(&200u64.to_le_bytes());
        b[72..80].copy_from_slice(&300u64.to_le_bytes());
        patch(&mut b);
        b
    }

    #[test]
    fn superblock_fields_are_checked_against_the_image() {
        let ok = Superblock::parse(&superblock(|_| {}), 4096).unwrap();
        assert_eq!(ok.compressor, Compressor::Zstd);
        assert_eq!(ok.block_size, 131072);
        let refused = |patch: fn(&mut [u8]), offset: u64| {
            let error = Superblock::parse(&superblock(patch), 4096).unwrap_err();
            assert!(
                matches!(error, ImageError::Corrupt { offset: o, .. } if o == offset),
                "{error}"
            );
        };
        refused(|b| b[0] = b'x', 0);
        refused(|b| b[28] = 3, 28);
        refused(|b| b[20] = 9, 20);
        refused(|b| b[12..16].copy_from_slice(&3000u32.to_le_bytes()), 12);
        refused(|b| b[40..48].copy_from_slice(&5000u64.to_le_bytes()), 40);
        refused(|b| b[72..80].copy_from_slice(&9000u64.to_le_bytes()), 72);
    }

    #[test]
    fn a_listing_yields_names_and_references() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&1u32.to_le_bytes()); // two entries
        bytes.extend_from_slice(&7u32.to_le_bytes()); // inode block 7
        bytes.extend_from_slice(&1i32.to_le_bytes());
        for (offset, name) in [(32u16, "a"), (96, "usr")] {
            bytes.extend_from_slice(&offset.to_le_bytes());
            bytes.extend_from_slice(&0i16.to_le_bytes());
            bytes.extend_from_slice(&1u16.to_le_bytes());
            bytes.extend_from_slice(&(name.len() as u16 - 1).to_le_bytes());
            bytes.extend_from_slice(name.as_bytes());
        }
        let entries = parse_listing(&bytes).unwrap();
        assert_eq!(
            entries,
            vec![("a".into(), 7 << 16 | 32), ("usr".into(), 7 << 16 | 96)]
        );
        assert!(parse_listing(&bytes[..bytes.len() - 1]).is_err());
    }

    /// The sixth fuzz finding: an xz footer whose backward size is 0xFFFFFFFF made lzma-rs
    /// overflow adding one to it.
    #[test]
    fn an_xz_footer_claiming_an_index_larger_than_its_block_is_refused() {
        let mut stream = vec![0u8; 12];
        stream.extend_from_slice(&[0, 0, 0, 0]);
        stream.extend_from_slice(&u32::MAX.to_le_bytes());
        stream.extend_from_slice(&[0, 4, b'Y', b'Z']);
        let error = Compressor::Xz.decode(&stream, 4096).unwrap_err();
        assert!(
            error.contains("an xz index of 17179869184 bytes"),
            "{error}"
        );
        assert!(Compressor::Xz.decode(&stream[..20], 4096).is_err());
        // The fuzzer's own input, read whole.
        let found = include_bytes!("../../fuzz/regressions/sysext_image-xz-footer");
        if let Ok(mut fs) = Squashfs::open(std::io::Cursor::new(&found[..]), found.len() as u64) {
            let _ = fs.read_file(
                &["usr", "lib", "extension-release.d", "extension-release.x"],
                1 << 16,
            );
        }
    }

    proptest! {
        #[test]
        fn any_listing_bytes_are_parsed_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_listing(&bytes);
        }

        #[test]
        fn any_image_is_read_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..4096), patch in any::<bool>()) {
            let mut bytes = bytes;
            if patch && bytes.len() >= SUPERBLOCK_LEN {
                bytes[..SUPERBLOCK_LEN].copy_from_slice(&superblock(|_| {}));
            }
            let len = bytes.len() as u64;
            if let Ok(mut fs) = Squashfs::open(std::io::Cursor::new(bytes), len) {
                let _ = fs.read_file(&["usr", "lib", "x"], 1 << 16);
                let _ = fs.list(&["usr"]);
            }
        }
    }
}
