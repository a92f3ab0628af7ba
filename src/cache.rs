//! The local cache: verified artifacts stored by their SHA-512, and small records that say
//! which release file each one is. Everything is written under a temporary name and renamed
//! into place, so an interrupted run leaves nothing a later run would trust.
//!
//! ```text
//! CACHE/blobs/sha512/<hex>                                 verified release files
//! CACHE/blobs/sha256/<hex>                                 verified registry blobs
//! CACHE/releases/<channel>/<board>/<version>/<file>.json   what <file> is (digest, signer)
//! CACHE/releases/<channel>/<board>/current.json            the last version `current` named
//! CACHE/partial/<key>.part, <key>.json, <key>.lock         downloads in progress (never trusted)
//! CACHE/raw/<sha512>.raw                                   a verified disk image, decompressed (sparse)
//! CACHE/raw/<sha512>.digests                               its BLAKE3 leaf and partition digests
//! CACHE/digests/zero-leaves                                BLAKE3 values of zero leaves, by offset
//! CACHE/archives/<key>.tar, <key>.json                     container images as `docker load` tars
//! CACHE/tags/<key>.json                                    the digest a registry tag last resolved to
//! ```

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::release::{Board, Channel};
use crate::trust::SignatureInfo;

#[derive(Debug, thiserror::Error)]
#[error("cache {}: {source}", path.display())]
pub struct CacheError {
    pub path: PathBuf,
    pub source: io::Error,
}

fn error(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |source| CacheError {
        path: path.to_path_buf(),
        source,
    }
}

/// What the cache knows about one release file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    pub file: String,
    /// Where it came from (credentials and query removed).
    pub url: String,
    pub sha512: String,
    pub size: u64,
    /// `None` when fetched with `--insecure-skip-signature`: such records satisfy only
    /// other insecure fetches.
    pub signature: Option<SignatureInfo>,
    pub digests_asc_verified: bool,
}

/// Release coordinates inside the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseKey {
    pub channel: Channel,
    pub board: Board,
    pub version: String,
}

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct CurrentRecord {
    version: String,
}

/// A download in progress: its bytes, what URL and validator they belong to, and a lock so
/// two runs do not write the same file.
pub struct Partial {
    pub data: PathBuf,
    pub meta: PathBuf,
    lock_path: PathBuf,
    _lock: File,
}

/// Whether `file` is the file at `path` now.
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PartialMeta {
    pub url: String,
    pub validator: Option<String>,
}

impl Cache {
    /// `$KATO_IMAGE_CACHE`, else `$XDG_CACHE_HOME/kato-image`, else `~/.cache/kato-image`.
    /// Every command that caches (fetch, build, pull, publish) starts from here, so one
    /// variable moves them all, as CI jobs with a cached folder want.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("KATO_IMAGE_CACHE").filter(|v| !v.is_empty()) {
            return PathBuf::from(dir);
        }
        std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"))
            .join("kato-image")
    }

    pub fn open(root: &Path) -> Result<Self, CacheError> {
        for sub in [
            "blobs/sha512",
            "blobs/sha256",
            "releases",
            "partial",
            "raw",
            "digests",
            "archives",
            "tags",
        ] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(error(&dir))?;
            atomic::remove_stale_temps(&dir);
        }
        crate::disk::digest::load_zero_leaves(&Cache::zero_leaves_in(root));
        Ok(Cache {
            root: root.to_path_buf(),
        })
    }

    /// Keeps the values of zero leaves computed since the cache was opened, for the next run
    /// (see `disk::digest`).
    pub fn save_zero_leaves(&self) {
        crate::disk::digest::save_zero_leaves(&self.zero_leaves_path());
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn blob_path(&self, sha512: &str) -> PathBuf {
        self.root.join("blobs/sha512").join(sha512)
    }

    /// The decompressed, sparse form of the verified file `sha512`.
    pub fn raw_path(&self, sha512: &str) -> PathBuf {
        self.root.join("raw").join(format!("{sha512}.raw"))
    }

    /// The digests of `raw_path(sha512)`, computed when it was decompressed.
    pub(crate) fn raw_digests_path(&self, sha512: &str) -> PathBuf {
        self.root.join("raw").join(format!("{sha512}.digests"))
    }

    /// BLAKE3 values of all-zero leaves, which depend only on their offset.
    fn zero_leaves_path(&self) -> PathBuf {
        Cache::zero_leaves_in(&self.root)
    }

    /// The same for a cache folder not opened (`verify` reads only this table).
    fn zero_leaves_in(root: &Path) -> PathBuf {
        root.join("digests").join("zero-leaves")
    }

    /// A container image archive and its record, by the archive's key.
    pub(crate) fn archive_paths(&self, key: &str) -> (PathBuf, PathBuf) {
        let dir = self.root.join("archives");
        (
            dir.join(format!("{key}.tar")),
            dir.join(format!("{key}.json")),
        )
    }

    /// What a registry tag last resolved to, by a key derived from the tag's reference.
    pub(crate) fn tag_path(&self, key: &str) -> PathBuf {
        self.root.join("tags").join(format!("{key}.json"))
    }

    /// A registry blob (layer, config, manifest) by the hex of its SHA-256.
    pub(crate) fn blob_sha256_path(&self, sha256: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(sha256)
    }

    fn release_dir(&self, key: &ReleaseKey) -> PathBuf {
        self.root
            .join("releases")
            .join(key.channel.name())
            .join(key.board.name())
            .join(&key.version)
    }

    /// The record of `file`, if its blob is present with the recorded size.
    pub fn lookup(&self, key: &ReleaseKey, file: &str) -> Option<ArtifactRecord> {
        let path = self.release_dir(key).join(format!("{file}.json"));
        let record: ArtifactRecord = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
        let size = fs::metadata(self.blob_path(&record.sha512)).ok()?.len();
        (record.file == file && size == record.size && is_hex_digest(&record.sha512))
            .then_some(record)
    }

    /// Moves a verified file into the blob store and records it.
    pub fn insert(
        &self,
        key: &ReleaseKey,
        verified: &Path,
        record: &ArtifactRecord,
    ) -> Result<PathBuf, CacheError> {
        let blob = self.blob_path(&record.sha512);
        atomic::commit(verified, &blob).map_err(error(&blob))?;
        let dir = self.release_dir(key);
        fs::create_dir_all(&dir).map_err(error(&dir))?;
        let path = dir.join(format!("{}.json", record.file));
        let json = serde_json::to_vec_pretty(record).expect("records serialise");
        atomic::write_atomic(&path, &json).map_err(error(&path))?;
        Ok(blob)
    }

    pub fn current(&self, channel: Channel, board: Board) -> Option<String> {
        let path = self
            .root
            .join("releases")
            .join(channel.name())
            .join(board.name())
            .join("current.json");
        let record: CurrentRecord = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
        Some(record.version)
    }

    pub(crate) fn set_current(
        &self,
        channel: Channel,
        board: Board,
        version: &str,
    ) -> Result<(), CacheError> {
        let dir = self
            .root
            .join("releases")
            .join(channel.name())
            .join(board.name());
        fs::create_dir_all(&dir).map_err(error(&dir))?;
        let path = dir.join("current.json");
        let json = serde_json::to_vec(&CurrentRecord {
            version: version.to_string(),
        })
        .expect("serialises");
        atomic::write_atomic(&path, &json).map_err(error(&path))
    }

    /// The partial download for `url`, locked for this process (waits for another run
    /// fetching the same file).
    pub fn partial(&self, url: &str) -> Result<Partial, CacheError> {
        use sha2::Digest;
        let key = hex(&sha2::Sha256::digest(url.as_bytes())[..16]);
        let dir = self.root.join("partial");
        let lock_path = dir.join(format!("{key}.lock"));
        // A finished download removes its lock file while holding it: a run that was
        // waiting then holds a lock on a file no longer there, so it opens the path again.
        let lock = loop {
            let lock = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(error(&lock_path))?;
            lock.lock().map_err(error(&lock_path))?;
            if same_file(&lock, &lock_path) {
                break lock;
            }
        };
        Ok(Partial {
            data: dir.join(format!("{key}.part")),
            meta: dir.join(format!("{key}.json")),
            lock_path,
            _lock: lock,
        })
    }
}

impl Partial {
    /// Bytes already downloaded for `url` and the validator they came with; anything left by
    /// a different URL or without a record is thrown away.
    pub(crate) fn resume_state(&self, url: &str) -> (u64, Option<String>) {
        let meta: Option<PartialMeta> = fs::read(&self.meta)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        match (meta, fs::metadata(&self.data)) {
            (Some(meta), Ok(data)) if meta.url == url => (data.len(), meta.validator),
            _ => {
                self.discard();
                (0, None)
            }
        }
    }

    /// Records that the bytes about to be written come from `url` as of `validator`, and opens
    /// the data file cut to the `start` bytes being kept.
    pub fn resume(
        &self,
        url: &str,
        validator: Option<String>,
        start: u64,
    ) -> Result<File, CacheError> {
        let meta = PartialMeta {
            url: url.to_string(),
            validator,
        };
        atomic::write_atomic(&self.meta, &serde_json::to_vec(&meta).expect("serialises"))
            .map_err(error(&self.meta))?;
        let data = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&self.data)
            .map_err(error(&self.data))?;
        data.set_len(start).map_err(error(&self.data))?;
        Ok(data)
    }

    pub(crate) fn discard(&self) {
        let _ = fs::remove_file(&self.data);
        let _ = fs::remove_file(&self.meta);
    }

    /// The download is in the cache: its partial files and its lock file go.
    pub fn finish(self) {
        self.discard();
        let _ = fs::remove_file(&self.lock_path);
    }
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn is_hex_digest(text: &str) -> bool {
    text.len() == 128 && text.bytes().all(|b| b.is_ascii_hexdigit())
}
