//! The disk engine: vendor images decompressed once into a sparse cache, per-role working
//! copies that copy no holes, the partition table, partition windows and layout changes.

pub mod bzip2;
pub mod decompress;
pub mod digest;
pub mod gpt;
pub(crate) mod guid;
pub mod layout;
pub mod sparse;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub use crate::io::Window;
pub use decompress::{Compression, DecompressError};
pub use digest::{ImageDigests, PartitionHash, Ranges};
pub use gpt::{GptError, Partition, PartitionTable};
pub use guid::Guid;

use crate::cache::Cache;
use crate::io::{At, PathError};
use crate::progress::Progress;
use crate::release::FetchedArtifact;

/// Flatcar's partition type GUIDs, by role.
pub mod types {
    pub(crate) const EFI_SYSTEM: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
    pub(crate) const BIOS_BOOT: &str = "21686148-6449-6E6F-744E-656564454649";
    pub(crate) const FLATCAR_USR: &str = "5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6";
    pub const LINUX_DATA: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
    pub(crate) const FLATCAR_RESERVED: &str = "C95DC21A-DF0E-4340-8D7B-26CBFA9A03E0";
    pub(crate) const FLATCAR_ROOT: &str = "3884DD41-8582-4404-B9A8-E9B84F2DF50E";
}

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{file}: {source}")]
    Gpt { file: String, source: GptError },
    #[error(transparent)]
    Decompress(#[from] DecompressError),
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("{file}: no partition named {name} (partitions: {present})")]
    Missing {
        file: String,
        name: String,
        present: String,
    },
}

/// Opens a raw image and reads its partition table.
pub fn open_table(path: &Path, allow_backup: bool) -> Result<(File, PartitionTable), DiskError> {
    let mut file = File::open(path).at(path)?;
    let table = PartitionTable::read(&mut file, allow_backup).map_err(|source| DiskError::Gpt {
        file: path.display().to_string(),
        source,
    })?;
    Ok((file, table))
}

/// A vendor disk image: the verified release file, and its decompressed form.
#[derive(Debug, Clone)]
pub struct VendorImage {
    pub artifact: FetchedArtifact,
    pub image: CachedImage,
}

/// A verified disk image decompressed into the cache, and its digests.
#[derive(Debug, Clone)]
pub struct CachedImage {
    pub path: PathBuf,
    pub digests: ImageDigests,
}

/// The decompressed, sparse form of a verified artifact, made once per artifact digest, with
/// its digests computed while it is written. An interrupted decompression leaves only a
/// temporary file that nothing reads; digests whose record is missing, damaged or older than
/// the file are computed again from the file.
pub fn cached_raw(
    cache: &Cache,
    artifact: &FetchedArtifact,
    progress: &dyn Progress,
) -> Result<CachedImage, DiskError> {
    let (name, sha512) = (&artifact.record.file, &artifact.record.sha512);
    let path = cache.raw_path(sha512);
    let record = cache.raw_digests_path(sha512);
    if path.exists() {
        let file = File::open(&path).at(&path)?;
        let digests = match ImageDigests::load(&record, &file) {
            Some(digests) => digests,
            None => {
                progress.note(&format!(
                    "{name}: hashing the cached image (its digest record is missing or out of date)"
                ));
                let digests = image_digests(&file).at(&path)?;
                digests.save(&record, &file).at(&record)?;
                digests
            }
        };
        return Ok(CachedImage { path, digests });
    }
    let temp = crate::atomic::temp_path(&path);
    let result = decompress::decompress_to_sparse(&artifact.path, name, &temp, true, progress)
        .map_err(DiskError::from)
        .and_then(|decoded| {
            std::fs::rename(&temp, &path).at(&path)?;
            Ok(decoded)
        });
    let decoded = match result {
        Ok(decoded) => decoded,
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
    };
    let file = File::open(&path).at(&path)?;
    let mut digests = decoded.digests.expect("asked for");
    // The partitions were hashed from the primary table as it went by; the table must say
    // the same once read whole (both copies), or they are hashed again from the file.
    let table = PartitionTable::read(&mut file.try_clone().at(&path)?, false)
        .ok()
        .map(|t| layout_of(&t));
    let streamed: Vec<(u32, u64, u64)> = digests
        .partitions
        .iter()
        .map(|p| (p.slot, p.start, p.len))
        .collect();
    if table.as_ref() != Some(&streamed) {
        digests.partitions = match &table {
            Some(_) => partition_hashes(&file).at(&path)?,
            None => Vec::new(),
        };
    }
    digests.save(&record, &file).at(&record)?;
    Ok(CachedImage { path, digests })
}

/// `(slot, start, len)` of each partition, by start.
fn layout_of(table: &PartitionTable) -> Vec<(u32, u64, u64)> {
    let mut layout: Vec<_> = table
        .partitions()
        .into_iter()
        .map(|p| (p.slot, p.start(), p.len()))
        .collect();
    layout.sort_by_key(|&(_, start, _)| start);
    layout
}

/// The leaves of `file` and the digests of its partitions (none if it has no readable
/// table), reading only its data extents.
pub(crate) fn image_digests(file: &File) -> io::Result<ImageDigests> {
    let len = file.metadata()?.len();
    Ok(ImageDigests {
        leaves: digest::leaves_of(file, 0, len)?,
        partitions: partition_hashes(file)?,
    })
}

fn partition_hashes(file: &File) -> io::Result<Vec<PartitionHash>> {
    let Ok(table) = PartitionTable::read(&mut file.try_clone()?, false) else {
        return Ok(Vec::new());
    };
    layout_of(&table)
        .into_iter()
        .map(|(slot, start, len)| {
            Ok(PartitionHash {
                slot,
                start,
                len,
                blake3: digest::hex(&digest::hash_range(file, start, start + len)?),
            })
        })
        .collect()
}

/// The BLAKE3 of each used partition, by slot (what `dd` of the partition piped to `b3sum`
/// prints). Holes are not read.
pub fn partition_digests(
    file: &File,
    table: &PartitionTable,
) -> Result<BTreeMap<u32, String>, io::Error> {
    table
        .partitions()
        .into_iter()
        .map(|p| {
            let hash = digest::hash_range(file, p.start(), p.end())?;
            Ok((p.slot, digest::hex(&hash)))
        })
        .collect()
}

/// A working copy's file as its writers see it: every write, hole and change of length is
/// recorded, so digests of what was not written can be carried over from the base.
pub struct Tracked<'a> {
    file: &'a File,
    written: &'a mut Ranges,
    position: u64,
}

impl<'a> Tracked<'a> {
    /// `file`, with what is written to it recorded in `written`.
    pub fn new(file: &'a File, written: &'a mut Ranges) -> Self {
        Tracked {
            file,
            written,
            position: 0,
        }
    }

    pub fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Changes the length; a new tail reads as zeros.
    pub fn set_len(&mut self, len: u64) -> io::Result<()> {
        let old = self.len()?;
        self.file.set_len(len)?;
        self.written.add(old.min(len), old.max(len));
        Ok(())
    }

    /// Makes `[offset, offset + len)` a hole.
    pub(crate) fn punch_hole(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let mut file = self.file.try_clone()?;
        sparse::punch_hole(&mut file, offset, len)?;
        self.written.add(offset, offset + len);
        Ok(())
    }

    /// Copies `len` bytes at `from` to `to` within the file (the ranges must not overlap).
    pub(crate) fn copy_within(&mut self, from: u64, to: u64, len: u64) -> io::Result<()> {
        let mut destination = self.file.try_clone()?;
        sparse::copy_range(self.file, from, &mut destination, to, len)?;
        self.written.add(to, to + len);
        Ok(())
    }

    /// The data extents within `[start, end)`.
    pub(crate) fn data_extents(&self, start: u64, end: u64) -> io::Result<Vec<(u64, u64)>> {
        sparse::data_extents(self.file, start, end)
    }
}

impl Read for Tracked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.position)?;
        self.position += n as u64;
        Ok(n)
    }
}

impl Write for Tracked<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.write_at(buf, self.position)?;
        self.written.add(self.position, self.position + n as u64);
        self.position += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Tracked<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.position = crate::io::seek_target(to, self.position, || self.len())?;
        Ok(self.position)
    }
}

/// A role's image being made from a cached base: a copy under a temporary name beside the
/// output that becomes the output only on `commit`, and is deleted if dropped before. Writes
/// go through `tracked`, which records what changed.
pub struct WorkingCopy {
    file: File,
    pub table: PartitionTable,
    pub method: sparse::CopyMethod,
    written: Ranges,
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
        let temp = crate::atomic::temp_path(output);
        let (file, method) = sparse::copy_sparse(&source, &temp)
            .inspect_err(|_| {
                // Nothing half-written stays behind (a full disk, for one).
                let _ = std::fs::remove_file(&temp);
            })
            .at(output)?;
        Ok(WorkingCopy {
            file,
            table,
            method,
            written: Ranges::default(),
            temp,
            output: output.to_path_buf(),
            committed: false,
        })
    }

    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// The name it becomes on `commit`.
    pub fn output(&self) -> &Path {
        &self.output
    }

    /// The copy as a file, for readers that want positioned reads and its data extents.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The copy, for reading.
    pub fn reader(&self) -> crate::io::ReadOnly<'_> {
        crate::io::ReadOnly::new(&self.file)
    }

    /// The copy, for writing; what is written is recorded.
    pub(crate) fn tracked(&mut self) -> Tracked<'_> {
        Tracked {
            file: &self.file,
            written: &mut self.written,
            position: 0,
        }
    }

    /// Every byte range written since the copy was made.
    pub fn written(&self) -> &Ranges {
        &self.written
    }

    /// The copy's digests, from the digests of the base it was copied from: leaves and
    /// partitions nothing was written to keep the base's values.
    pub fn digests(&self, base: &ImageDigests) -> Result<ImageDigests, DiskError> {
        let len = self.file.metadata().at(&self.temp)?.len();
        let leaves =
            digest::update_leaves(&self.file, len, &base.leaves, &self.written).at(&self.temp)?;
        let mut partitions = Vec::new();
        for (slot, start, len) in layout_of(&self.table) {
            let unchanged = base
                .partitions
                .iter()
                .find(|p| p.slot == slot && p.start == start && p.len == len)
                .filter(|_| !self.written.touches(start, start + len));
            let blake3 = match unchanged {
                Some(p) => p.blake3.clone(),
                None => {
                    digest::hex(&digest::hash_range(&self.file, start, start + len).at(&self.temp)?)
                }
            };
            partitions.push(PartitionHash {
                slot,
                start,
                len,
                blake3,
            });
        }
        Ok(ImageDigests { leaves, partitions })
    }

    /// Syncs the copy and renames it to the output name.
    pub fn commit(mut self) -> Result<PathBuf, DiskError> {
        self.file.sync_all().at(&self.output)?;
        std::fs::rename(&self.temp, &self.output).at(&self.output)?;
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
