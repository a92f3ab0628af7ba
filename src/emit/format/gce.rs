//! Google Compute Engine's image archive: a gzip'd tar holding one file, `disk.raw`, stored
//! sparse in the old GNU format (what `tar --format=oldgnu -S` writes and GCE's import
//! reads), so a disk of mostly holes is an archive of its data only.
//!
//! Old GNU sparse member (512-byte blocks; numbers in octal, or base-256 when too large):
//!
//! | offset | size | field                                                         |
//! |--------|------|---------------------------------------------------------------|
//! | 0      | 100  | name `disk.raw`                                               |
//! | 100    | 8    | mode `0000644`                                                |
//! | 108    | 16   | uid, gid: 0                                                   |
//! | 124    | 12   | size: the bytes stored (the data extents), not the disk size |
//! | 136    | 12   | mtime                                                         |
//! | 148    | 8    | header checksum (sum of the block with this field as spaces)  |
//! | 156    | 1    | type `S`: sparse                                              |
//! | 257    | 8    | magic `ustar  \0` (old GNU)                                   |
//! | 265    | 64   | owner and group names `root`                                  |
//! | 386    | 96   | four sparse entries (offset 12, length 12)                    |
//! | 482    | 1    | 1 if extension blocks of 21 more entries follow               |
//! | 483    | 12   | real size: the disk's                                         |
//!
//! Each extension block holds 21 entries and its own "more follow" byte at 504. The data of
//! every entry follows, in order, padded to 512; then two zero blocks and padding to the
//! 10 KiB record GNU tar writes.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

pub(crate) const MEMBER: &str = "disk.raw";
const BLOCK: usize = 512;
const RECORD: u64 = 20 * BLOCK as u64;
const IN_HEADER: usize = 4;
const PER_EXTENSION: usize = 21;
/// Read at once when copying data.
const CHUNK: usize = 1 << 20;

/// Writes a 12-byte numeric field: octal with a NUL, or base-256 when it does not fit.
fn number(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    if value < 1u64 << (3 * digits) {
        let text = format!("{value:0digits$o}");
        field[..digits].copy_from_slice(text.as_bytes());
        field[digits] = 0;
    } else {
        field.fill(0);
        field[0] = 0x80;
        let bytes = value.to_be_bytes();
        let n = field.len();
        field[n - 8..].copy_from_slice(&bytes);
    }
}

fn entry(slot: &mut [u8], (offset, length): (u64, u64)) {
    number(&mut slot[0..12], offset);
    number(&mut slot[12..24], length);
}

/// The sparse map of a disk of `size` bytes with these data extents: GNU tar ends the map
/// at the real size, with an empty entry when the disk ends in a hole.
pub(crate) fn sparse_map(extents: &[(u64, u64)], size: u64) -> Vec<(u64, u64)> {
    let mut map: Vec<(u64, u64)> = extents.iter().copied().filter(|e| e.1 > 0).collect();
    if map.last().is_none_or(|&(o, l)| o + l < size) {
        map.push((size, 0));
    }
    map
}

/// The header block and extension blocks of `disk.raw`.
pub fn headers(map: &[(u64, u64)], size: u64, mtime: i64) -> Vec<u8> {
    let stored: u64 = map.iter().map(|e| e.1).sum();
    let mut header = [0u8; BLOCK];
    header[..MEMBER.len()].copy_from_slice(MEMBER.as_bytes());
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    number(&mut header[124..136], stored);
    number(&mut header[136..148], mtime.max(0) as u64);
    header[156] = b'S';
    header[257..265].copy_from_slice(b"ustar  \0");
    header[265..269].copy_from_slice(b"root");
    header[297..301].copy_from_slice(b"root");
    for (i, &e) in map.iter().take(IN_HEADER).enumerate() {
        entry(&mut header[386 + 24 * i..410 + 24 * i], e);
    }
    header[482] = u8::from(map.len() > IN_HEADER);
    number(&mut header[483..495], size);
    header[148..156].fill(b' ');
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = header.to_vec();
    let rest: Vec<_> = map.iter().skip(IN_HEADER).copied().collect();
    let chunks: Vec<_> = rest.chunks(PER_EXTENSION).collect();
    for (n, chunk) in chunks.iter().enumerate() {
        let mut block = [0u8; BLOCK];
        for (i, &e) in chunk.iter().enumerate() {
            entry(&mut block[24 * i..24 * i + 24], e);
        }
        block[504] = u8::from(n + 1 < chunks.len());
        out.extend_from_slice(&block);
    }
    out
}

/// Writes the archive (uncompressed) of `source`, a disk of `size` bytes whose data lies in
/// `extents`, into `out`; returns the tar's length.
pub fn write_tar(
    source: &File,
    size: u64,
    extents: &[(u64, u64)],
    mtime: i64,
    out: &mut impl Write,
) -> io::Result<u64> {
    let map = sparse_map(extents, size);
    let head = headers(&map, size, mtime);
    out.write_all(&head)?;
    let mut written = head.len() as u64;
    let mut buffer = vec![0u8; CHUNK];
    for &(offset, length) in &map {
        let mut done = 0;
        while done < length {
            let n = (length - done).min(CHUNK as u64) as usize;
            source.read_exact_at(&mut buffer[..n], offset + done)?;
            out.write_all(&buffer[..n])?;
            done += n as u64;
        }
        written += length;
    }
    let mut tail = (BLOCK as u64 - written % BLOCK as u64) % BLOCK as u64;
    tail += 2 * BLOCK as u64;
    tail += (RECORD - (written + tail) % RECORD) % RECORD;
    io::copy(&mut io::repeat(0).take_bytes(tail), out)?;
    Ok(written + tail)
}

trait TakeBytes: io::Read + Sized {
    fn take_bytes(self, n: u64) -> io::Take<Self> {
        self.take(n)
    }
}
impl<R: io::Read> TakeBytes for R {}

/// The gzip around the tar: no name, no time, so the same disk gives the same archive.
pub fn gzip<W: Write>(out: W) -> flate2::write::GzEncoder<W> {
    flate2::GzBuilder::new()
        .mtime(0)
        .write(out, flate2::Compression::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_too_large_for_octal_are_base_256() {
        let mut field = [0u8; 12];
        number(&mut field, 0o777);
        assert_eq!(&field, b"00000000777\0");
        number(&mut field, 30 << 30);
        assert_eq!(field[0], 0x80);
        assert_eq!(
            u64::from_be_bytes(field[4..12].try_into().unwrap()),
            30 << 30
        );
    }

    #[test]
    fn a_map_ends_at_the_real_size() {
        assert_eq!(sparse_map(&[], 4096), vec![(4096, 0)]);
        assert_eq!(sparse_map(&[(0, 512)], 4096), vec![(0, 512), (4096, 0)]);
        assert_eq!(sparse_map(&[(0, 4096)], 4096), vec![(0, 4096)]);
    }

    #[test]
    fn entries_past_four_go_to_extension_blocks_of_21() {
        let map: Vec<_> = (0..30).map(|i| (i * 8192, 512)).collect();
        let blocks = headers(&map, 30 * 8192, 0);
        assert_eq!(blocks.len(), 3 * BLOCK);
        assert_eq!(blocks[482], 1);
        assert_eq!(blocks[BLOCK + 504], 1);
        assert_eq!(blocks[2 * BLOCK + 504], 0);
    }
}
