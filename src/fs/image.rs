//! What the read-only readers of image files (squashfs, EROFS) share: one error type that
//! names the byte offset and what was expected there, and one way to look a file up.

use std::io::{self, Read, Seek, SeekFrom};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{format}: at byte {offset}: expected {expected}")]
    Corrupt {
        format: &'static str,
        offset: u64,
        expected: String,
    },
    #[error("cannot read at byte {offset}: {source}")]
    Io { offset: u64, source: io::Error },
    #[error("/{path} is {size} bytes, more than the {limit} kato-image reads from it")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("/{path} is not a regular file")]
    NotAFile { path: String },
    #[error("{format}: {what} are not read by kato-image")]
    Unsupported { format: &'static str, what: String },
}

pub(crate) fn at(offset: u64) -> impl FnOnce(io::Error) -> ImageError {
    move |source| ImageError::Io { offset, source }
}

/// A filesystem image read without mounting it.
pub trait ReadOnlyImage {
    /// The names in the folder at `path` (`None` if there is no such folder).
    fn list(&mut self, path: &[&str]) -> Result<Option<Vec<String>>, ImageError>;
    /// The bytes of the regular file at `path` if it has at most `limit`; `None` if nothing
    /// is there, an error if something else is.
    fn read_file(&mut self, path: &[&str], limit: u64) -> Result<Option<Vec<u8>>, ImageError>;
}

/// Refuses a file of `size` bytes at `path` that is larger than a caller's `limit`.
pub(crate) fn within_limit(path: &[&str], size: u64, limit: u64) -> Result<(), ImageError> {
    if size > limit {
        return Err(ImageError::TooLarge {
            path: path.join("/"),
            size,
            limit,
        });
    }
    Ok(())
}

/// The `count` bytes at `offset` of a `len`-byte image, refused before anything is allocated
/// if they are not all inside it.
pub(crate) fn read_at(
    format: &'static str,
    image: &mut (impl Read + Seek),
    len: u64,
    offset: u64,
    count: usize,
) -> Result<Vec<u8>, ImageError> {
    if count == 0 {
        // Nothing to read (an EROFS inline file has no whole block, and its block address
        // means nothing).
        return Ok(Vec::new());
    }
    if offset.checked_add(count as u64).is_none_or(|end| end > len) {
        return Err(ImageError::Corrupt {
            format,
            offset,
            expected: format!("{count} bytes inside the {len}-byte image"),
        });
    }
    let mut bytes = vec![0; count];
    image.seek(SeekFrom::Start(offset)).map_err(at(offset))?;
    image.read_exact(&mut bytes).map_err(at(offset))?;
    Ok(bytes)
}

pub(crate) fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

pub(crate) fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}

pub(crate) fn le64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}
