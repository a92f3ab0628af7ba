//! Decoders of compressed blocks that never give more than a caller's bound, however the
//! block claims to expand: what the btrfs and squashfs readers share.

use std::io::Read;

/// A zlib stream, decoded to at most `limit` bytes.
pub(crate) fn zlib(data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    bounded(&mut flate2::read::ZlibDecoder::new(data), limit)
}

/// A zstd frame, decoded to at most `limit` bytes.
pub(crate) fn zstd(data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let mut decoder = ruzstd::decoding::StreamingDecoder::new(data).map_err(|e| e.to_string())?;
    bounded(&mut decoder, limit)
}

fn bounded(reader: &mut dyn Read, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(limit.min(1 << 20));
    reader
        .take(limit as u64)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}
