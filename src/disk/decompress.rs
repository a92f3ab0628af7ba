//! Streaming decompression, chosen by magic bytes (never by file name), into a sparse file.
//! Decoding runs on its own thread; the writer turns zero runs into holes on the other.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use super::bzip2::block::Piece;
use super::digest::{ImageDigests, StreamDigests};
use super::sparse::SparseWriter;
use crate::io::{At, ChunkWriter, Counting, PathError};
use crate::progress::Progress;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Bzip2,
    Gzip,
    Zstd,
    Xz,
}

impl Compression {
    /// From the first bytes of a file.
    pub fn detect(head: &[u8]) -> Compression {
        match head {
            [b'B', b'Z', b'h', b'1'..=b'9', ..] => Compression::Bzip2,
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Compression::Xz,
            _ => Compression::None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Bzip2 => "bzip2",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    #[error("{file}: {format} data is corrupt near compressed byte {offset}: {message}")]
    Corrupt {
        file: String,
        format: &'static str,
        offset: u64,
        message: String,
    },
    #[error(transparent)]
    Io(#[from] PathError),
}

/// Reads the first bytes of `path` to tell its compression.
pub(crate) fn detect_file(path: &Path) -> io::Result<Compression> {
    let mut head = [0u8; 8];
    let mut file = File::open(path)?;
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(Compression::detect(&head[..filled]))
}

/// A decompressed image: its length and, if asked for, its digests, computed as it was
/// written.
#[derive(Debug, Clone)]
pub(crate) struct Decoded {
    pub digests: Option<ImageDigests>,
}

/// Decompresses `source` (whatever its compression, or none) into a new sparse file at
/// `destination`; with `hash`, computing its digests on the way.
/// `label` names the file in progress and errors (a cached file's own name is a digest).
pub(crate) fn decompress_to_sparse(
    source: &Path,
    label: &str,
    destination: &Path,
    hash: bool,
    progress: &dyn Progress,
) -> Result<Decoded, DecompressError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match decompress_with(source, label, destination, hash, progress, cores) {
        // bzip2 is split into blocks for the cores; a split that does not decode (a magic
        // number inside a block, or damage) is left to the sequential decoder to judge.
        Err(DecompressError::Corrupt {
            format: "bzip2", ..
        }) if cores > 1 => {
            let decoded = decompress_with(source, label, destination, hash, progress, 1)?;
            progress.note(&format!(
                "{label}: its bzip2 blocks did not decode apart, so it was decoded on one core"
            ));
            Ok(decoded)
        }
        result => result,
    }
}

fn decompress_with(
    source: &Path,
    label: &str,
    destination: &Path,
    hash: bool,
    progress: &dyn Progress,
    workers: usize,
) -> Result<Decoded, DecompressError> {
    let compression = detect_file(source).at(label)?;
    let input = File::open(source).at(label)?;
    let compressed_len = input.metadata().at(label)?.len();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counting = Counting {
        inner: input,
        count: count.clone(),
    };
    let output = File::create(destination).at(destination)?;
    progress.start(&format!("decompressing {label}"), Some(compressed_len));

    let (sender, receiver) = std::sync::mpsc::sync_channel::<Piece>(8);
    let decoder = std::thread::spawn(move || -> io::Result<()> {
        let mut writer = ChunkWriter::new(sender);
        let mut reader = BufReader::with_capacity(1 << 20, counting);
        match compression {
            Compression::None => io::copy(&mut reader, &mut writer).map(|_| ())?,
            Compression::Bzip2 if workers > 1 => {
                super::bzip2::blocks::decode(reader, workers, |piece| writer.send(piece))?
            }
            Compression::Bzip2 => {
                io::copy(&mut bzip2::read::MultiBzDecoder::new(reader), &mut writer).map(|_| ())?
            }
            Compression::Gzip => {
                io::copy(&mut flate2::read::MultiGzDecoder::new(reader), &mut writer).map(|_| ())?
            }
            Compression::Zstd => {
                let mut decoder = ruzstd::decoding::StreamingDecoder::new(reader)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                io::copy(&mut decoder, &mut writer).map(|_| ())?
            }
            Compression::Xz => lzma_rs::xz_decompress(&mut reader, &mut writer)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, xz_words(&e)))?,
        }
        writer.flush()
    });
    let mut sparse = SparseWriter::observed(output, hash.then(StreamDigests::new));
    let mut reported = 0u64;
    let mut write_error = None;
    for piece in receiver.iter() {
        let written = match piece {
            Piece::Data(bytes) => sparse.write_all(&bytes),
            Piece::Zeros(n) => sparse.write_zeros(n),
        };
        if let Err(e) = written {
            write_error = Some(e);
            break;
        }
        let now = count.load(std::sync::atomic::Ordering::Relaxed);
        progress.advance(now - reported);
        reported = now;
    }
    drop(receiver);
    let decoded = decoder.join().expect("the decoder thread does not panic");
    progress.finish();
    if let Some(e) = write_error {
        let path = destination.to_path_buf();
        return Err(PathError { path, source: e }.into());
    }
    decoded.map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData
        | io::ErrorKind::InvalidInput
        | io::ErrorKind::UnexpectedEof
        | io::ErrorKind::Other
            if compression != Compression::None =>
        {
            DecompressError::Corrupt {
                file: label.to_string(),
                format: compression.name(),
                offset: count.load(std::sync::atomic::Ordering::Relaxed),
                message: e.to_string(),
            }
        }
        _ => PathError {
            path: label.into(),
            source: e,
        }
        .into(),
    })?;
    let (file, digests) = sparse.finish_observed().at(destination)?;
    file.sync_all().at(destination)?;
    Ok(Decoded {
        digests: digests.map(StreamDigests::finish),
    })
}

/// An xz decoder error, in words (the decoder's own text is its type's debug form).
fn xz_words(error: &lzma_rs::error::Error) -> String {
    match error {
        lzma_rs::error::Error::IoError(e) => e.to_string(),
        lzma_rs::error::Error::HeaderTooShort(_) => "the xz header is cut short".into(),
        lzma_rs::error::Error::LzmaError(why) => format!("the LZMA data is damaged ({why})"),
        lzma_rs::error::Error::XzError(why) => format!("the xz container is damaged ({why})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_magic() {
        assert_eq!(Compression::detect(b"BZh91AY&SY"), Compression::Bzip2);
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"\xfd7zXZ\x00"), Compression::Xz);
        assert_eq!(Compression::detect(b"BZh0"), Compression::None);
        assert_eq!(Compression::detect(b""), Compression::None);
    }

    #[test]
    fn every_format_round_trips_through_the_system_tools() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        let mut data = vec![0u8; 3 << 20];
        for (i, byte) in data.iter_mut().enumerate().skip(1 << 20).take(5000) {
            *byte = (i % 253) as u8;
        }
        std::fs::write(&raw, &data).unwrap();
        for (tool, args) in [
            ("bzip2", &["-kc"][..]),
            ("gzip", &["-c"]),
            ("zstd", &["-qc"]),
            ("xz", &["-c"]),
        ] {
            let Ok(out) = std::process::Command::new(tool)
                .args(args)
                .arg(&raw)
                .output()
            else {
                panic!("{tool} is needed for this test");
            };
            let compressed = dir.path().join(format!("c.{tool}"));
            std::fs::write(&compressed, out.stdout).unwrap();
            let decoded = dir.path().join(format!("d.{tool}"));
            let done =
                decompress_to_sparse(&compressed, tool, &decoded, true, &crate::progress::Silent)
                    .unwrap();
            let len = std::fs::metadata(&decoded).unwrap().len();
            assert_eq!(len, data.len() as u64, "{tool}");
            assert_eq!(
                done.digests.unwrap().leaves.root(),
                blake3::hash(&data),
                "{tool}"
            );
            assert_eq!(std::fs::read(&decoded).unwrap(), data, "{tool}");
        }
    }

    /// Many blocks (level 1: 100 kB each) in two concatenated streams, as parallel
    /// compressors write them, made by the system's bzip2: decoded split across cores.
    #[test]
    fn multi_block_multi_stream_bzip2_from_the_system_tool() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = Vec::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for i in 0..3_000_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Compressible but not trivially: text-like bytes with runs of zeros.
            data.push(if (i / 50_000) % 3 == 0 {
                0
            } else {
                b'a' + (x % 19) as u8
            });
        }
        let mut file = Vec::new();
        for half in data.chunks(data.len() / 2 + 1) {
            let raw = dir.path().join("half");
            std::fs::write(&raw, half).unwrap();
            let out = std::process::Command::new("bzip2")
                .args(["-1", "-c"])
                .arg(&raw)
                .output()
                .expect("bzip2 is needed for this test");
            file.extend(out.stdout);
        }
        let compressed = dir.path().join("image.bz2");
        std::fs::write(&compressed, &file).unwrap();
        let decoded = dir.path().join("decoded");
        let done = decompress_with(
            &compressed,
            "image.bz2",
            &decoded,
            true,
            &crate::progress::Silent,
            3,
        )
        .unwrap();
        assert_eq!(
            std::fs::metadata(&decoded).unwrap().len(),
            data.len() as u64
        );
        assert_eq!(done.digests.unwrap().leaves.root(), blake3::hash(&data));
        assert_eq!(std::fs::read(&decoded).unwrap(), data);
    }

    #[test]
    fn corrupt_bzip2_names_the_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("image.bin.bz2");
        let mut bytes = b"BZh91AY&SY".to_vec();
        bytes.extend(std::iter::repeat_n(0x55u8, 5000));
        std::fs::write(&bad, bytes).unwrap();
        let error = decompress_to_sparse(
            &bad,
            "image.bin.bz2",
            &dir.path().join("out"),
            false,
            &crate::progress::Silent,
        )
        .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("image.bin.bz2: bzip2 data is corrupt near compressed byte"),
            "{text}"
        );
    }
}
