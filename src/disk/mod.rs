//! The disk engine: vendor images decompressed once into a sparse cache, per-role working
//! copies that copy no holes, the partition table, partition windows and layout changes.

pub mod bzip2_blocks;
pub mod decompress;
pub mod gpt;
pub mod guid;
pub mod layout;
pub mod sparse;
pub mod window;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use decompress::{Compression, DecompressError};
pub use gpt::{GptError, Partition, PartitionTable};
pub use guid::Guid;
pub use window::Window;

use crate::cache::{Cache, hex};
use crate::progress::Progress;

/// Flatcar's partition type GUIDs, by role.
pub mod types {
    pub const EFI_SYSTEM: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
    pub const BIOS_BOOT: &str = "21686148-6449-6E6F-744E-656564454649";
    pub const FLATCAR_USR: &str = "5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6";
    pub const LINUX_DATA: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
    pub const FLATCAR_RESERVED: &str = "C95DC21A-DF0E-4340-8D7B-26CBFA9A03E0";
    pub const FLATCAR_ROOT: &str = "3884DD41-8582-4404-B9A8-E9B84F2DF50E";
}

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{file}: {source}")]
    Gpt { file: String, source: GptError },
    #[error(transparent)]
    Decompress(#[from] DecompressError),
    #[error("{file}: {source}")]
    Io { file: String, source: io::Error },
    #[error("{file}: no partition named {name} (partitions: {present})")]
    Missing {
        file: String,
        name: String,
        present: String,
    },
}

impl DiskError {
    pub fn io(file: &Path) -> impl FnOnce(io::Error) -> DiskError + '_ {
        move |source| DiskError::Io {
            file: file.display().to_string(),
            source,
        }
    }
}

/// Opens a raw image and reads its partition table.
pub fn open_table(path: &Path, allow_backup: bool) -> Result<(File, PartitionTable), DiskError> {
    let mut file = File::open(path).map_err(DiskError::io(path))?;
    let table = PartitionTable::read(&mut file, allow_backup).map_err(|source| DiskError::Gpt {
        file: path.display().to_string(),
        source,
    })?;
    Ok((file, table))
}

/// The decompressed, sparse form of a verified artifact, made once per artifact digest.
/// An interrupted decompression leaves only a temporary file that nothing reads.
pub fn cached_raw(
    cache: &Cache,
    artifact: &Path,
    sha512: &str,
    progress: &dyn Progress,
) -> Result<PathBuf, DiskError> {
    let dir = cache.root().join("raw");
    std::fs::create_dir_all(&dir).map_err(DiskError::io(&dir))?;
    let path = dir.join(format!("{sha512}.raw"));
    if path.exists() {
        return Ok(path);
    }
    let temp = crate::fsutil::temp_path(&path);
    let result = decompress::decompress_to_sparse(artifact, &temp, progress)
        .map_err(DiskError::from)
        .and_then(|_| std::fs::rename(&temp, &path).map_err(DiskError::io(&path)));
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map(|()| path)
}

/// SHA-256 of each used partition, by slot. Holes are hashed as zeros without being read.
pub fn partition_digests(
    file: &File,
    table: &PartitionTable,
) -> Result<BTreeMap<u32, String>, io::Error> {
    table
        .partitions()
        .into_iter()
        .map(|p| Ok((p.slot, sha256_range(file, p.start(), p.end())?)))
        .collect()
}

/// SHA-256 of the whole file and of each partition, in one read: the image's hash on one
/// core, the partitions' on the other. Holes are hashed as zeros without being read.
pub fn image_and_partition_digests(
    file: &File,
    table: &PartitionTable,
) -> Result<(String, BTreeMap<u32, String>), io::Error> {
    use std::sync::Arc;
    use std::sync::mpsc::sync_channel;
    enum Piece {
        Data(Arc<Vec<u8>>),
        Zeros(u64),
    }
    let len = file.metadata()?.len();
    let mut partitions = table.partitions();
    partitions.sort_by_key(|p| p.first_lba);
    let (to_image, image_rx) = sync_channel::<Piece>(8);
    let (to_parts, parts_rx) = sync_channel::<(u64, Piece)>(8);
    let zeros = Arc::new(vec![0u8; 1 << 20]);
    let feed_zeros = |sha: &mut Sha256, zeros: &[u8], mut n: u64| {
        while n > 0 {
            let step = n.min(zeros.len() as u64) as usize;
            sha.update(&zeros[..step]);
            n -= step as u64;
        }
    };
    std::thread::scope(|scope| {
        let image = scope.spawn({
            let zeros = zeros.clone();
            move || {
                let mut sha = Sha256::new();
                for piece in image_rx {
                    match piece {
                        Piece::Data(d) => sha.update(&d[..]),
                        Piece::Zeros(n) => feed_zeros(&mut sha, &zeros, n),
                    }
                }
                hex(&sha.finalize())
            }
        });
        let parts = scope.spawn({
            let zeros = zeros.clone();
            let partitions = partitions.clone();
            move || {
                // Pieces arrive in file order with their offset; each byte goes to the
                // partition that holds it.
                let mut digests = BTreeMap::new();
                let mut current: Option<(usize, Sha256)> = None;
                let mut next = 0usize;
                let finish = |current: &mut Option<(usize, Sha256)>,
                              digests: &mut BTreeMap<u32, String>| {
                    if let Some((i, sha)) = current.take() {
                        digests.insert(partitions[i].slot, hex(&sha.finalize()));
                    }
                };
                for (mut at, piece) in parts_rx {
                    let (mut data, mut zero_len): (&[u8], u64) = match &piece {
                        Piece::Data(d) => (&d[..], 0),
                        Piece::Zeros(n) => (&[], *n),
                    };
                    let mut remaining = data.len() as u64 + zero_len;
                    while remaining > 0 {
                        if let Some((i, _)) = &current
                            && at >= partitions[*i].end()
                        {
                            finish(&mut current, &mut digests);
                        }
                        if current.is_none()
                            && next < partitions.len()
                            && at >= partitions[next].start()
                        {
                            current = Some((next, Sha256::new()));
                            next += 1;
                        }
                        let limit = match &current {
                            Some((i, _)) => partitions[*i].end(),
                            None => partitions.get(next).map_or(u64::MAX, |p| p.start()),
                        };
                        let step = remaining.min(limit - at);
                        if let Some((_, sha)) = &mut current {
                            if zero_len > 0 {
                                feed_zeros(sha, &zeros, step);
                            } else {
                                sha.update(&data[..step as usize]);
                            }
                        }
                        if zero_len > 0 {
                            zero_len -= step;
                        } else {
                            data = &data[step as usize..];
                        }
                        at += step;
                        remaining -= step;
                    }
                }
                finish(&mut current, &mut digests);
                digests
            }
        });
        let mut reader = file.try_clone()?;
        let mut at = 0u64;
        let send = |at: u64, piece: Piece| {
            let copy = match &piece {
                Piece::Data(d) => Piece::Data(d.clone()),
                Piece::Zeros(n) => Piece::Zeros(*n),
            };
            let _ = to_image.send(piece);
            let _ = to_parts.send((at, copy));
        };
        for (offset, length) in sparse::data_extents(file, 0, len)? {
            if offset > at {
                send(at, Piece::Zeros(offset - at));
            }
            reader.seek(SeekFrom::Start(offset))?;
            let mut done = 0;
            while done < length {
                let step = (length - done).min(1 << 20) as usize;
                let mut buffer = vec![0u8; step];
                reader.read_exact(&mut buffer)?;
                send(offset + done, Piece::Data(Arc::new(buffer)));
                done += step as u64;
            }
            at = offset + length;
        }
        if len > at {
            send(at, Piece::Zeros(len - at));
        }
        drop(to_image);
        drop(to_parts);
        let image = image.join().expect("the image hasher does not panic");
        let parts = parts.join().expect("the partition hasher does not panic");
        Ok((image, parts))
    })
}

/// SHA-256 of the bytes `[start, end)` of a (sparse) file; holes are hashed as zeros
/// without being read.
pub fn sha256_range(file: &File, start: u64, end: u64) -> Result<String, io::Error> {
    let zeros = vec![0u8; 1 << 20];
    let mut buffer = vec![0u8; 1 << 20];
    let mut reader = file.try_clone()?;
    let mut sha = Sha256::new();
    let feed_zeros = |sha: &mut Sha256, mut n: u64| {
        while n > 0 {
            let step = n.min(zeros.len() as u64) as usize;
            sha.update(&zeros[..step]);
            n -= step as u64;
        }
    };
    let mut at = start;
    for (offset, length) in sparse::data_extents(file, start, end)? {
        feed_zeros(&mut sha, offset - at);
        reader.seek(SeekFrom::Start(offset))?;
        let mut left = length;
        while left > 0 {
            let step = left.min(buffer.len() as u64) as usize;
            reader.read_exact(&mut buffer[..step])?;
            sha.update(&buffer[..step]);
            left -= step as u64;
        }
        at = offset + length;
    }
    feed_zeros(&mut sha, end - at);
    Ok(hex(&sha.finalize()))
}

/// A role's image being made from a cached base: a copy under a temporary name beside the
/// output that becomes the output only on `commit`, and is deleted if dropped before.
pub struct WorkingCopy {
    pub file: File,
    pub table: PartitionTable,
    pub method: sparse::CopyMethod,
    temp: PathBuf,
    output: PathBuf,
    committed: bool,
}

impl WorkingCopy {
    /// Checks `base` (a readable GPT with every partition in `required`), then copies it.
    pub fn create(base: &Path, output: &Path, required: &[&str]) -> Result<Self, DiskError> {
        let (source, table) = open_table(base, false)?;
        let present = table.partitions();
        for name in required {
            if !present.iter().any(|p| p.name == *name) {
                return Err(DiskError::Missing {
                    file: base.display().to_string(),
                    name: name.to_string(),
                    present: present
                        .iter()
                        .map(|p| format!("{} {}", p.slot, p.name))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        let temp = crate::fsutil::temp_path(output);
        let (file, method) = sparse::copy_sparse(&source, &temp).map_err(|e| {
            // Nothing half-written stays behind (a full disk, for one).
            let _ = std::fs::remove_file(&temp);
            DiskError::io(output)(e)
        })?;
        Ok(WorkingCopy {
            file,
            table,
            method,
            temp,
            output: output.to_path_buf(),
            committed: false,
        })
    }

    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Syncs the copy and renames it to the output name.
    pub fn commit(mut self) -> Result<PathBuf, DiskError> {
        self.file.sync_all().map_err(DiskError::io(&self.output))?;
        std::fs::rename(&self.temp, &self.output).map_err(DiskError::io(&self.output))?;
        self.committed = true;
        Ok(self.output.clone())
    }
}

impl Drop for WorkingCopy {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}
