//! Fetching a release: resolve the version, then for each file get its signature and digests,
//! refuse an untrusted signer before downloading, stream the file to disk while hashing it
//! (SHA-512 here, the signature's hash on the other core), and only then cache it.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use sha2::Digest;

use super::digests::{self, DigestsError};
use super::transport::{NetOptions, Transport, TransportError, redact};
use super::{ArtifactKind, Board, Channel, ReleaseSpec, is_version, parse_version_txt};
use crate::cache::{ArtifactRecord, CacheError, ReleaseKey, hex};
use crate::io::PathError;
use crate::io::Sha512Pipe;
use crate::progress::Progress;
use crate::trust::{Keyring, Signer, VerifyError, parse_detached};

const CHUNK: usize = 256 << 10;
/// How much written data may wait before its writeback is started.
const WRITEBACK_STEP: u64 = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("release URL template {template:?}: {why}")]
    Template { template: String, why: String },
    #[error("version {0:?} is neither `current` nor a version like 4593.1.0")]
    Version(String),
    #[error("{url}: no FLATCAR_VERSION= line with a version in it")]
    VersionTxt { url: String },
    #[error("{what} was not found: {source}")]
    Missing {
        what: String,
        source: TransportError,
    },
    #[error("{0}")]
    Transport(#[from] TransportError),
    #[error("{0}")]
    Verify(#[from] VerifyError),
    #[error("{0}")]
    Digests(#[from] DigestsError),
    #[error(
        "{file}: SHA-512 {actual} does not match {expected} from {source_name}; the download was deleted"
    )]
    DigestMismatch {
        file: String,
        actual: String,
        expected: String,
        source_name: String,
    },
    #[error("{file}: {source_name} says SHA-512 {signed}, but {file}.DIGESTS says {unsigned}")]
    DigestsDisagree {
        file: String,
        source_name: String,
        signed: String,
        unsigned: String,
    },
    #[error("--offline: {0}")]
    Offline(String),
    #[error("{0}")]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Io(#[from] PathError),
}

pub struct FetchOptions {
    pub net: NetOptions,
    pub keyring: Keyring,
    pub insecure_skip_signature: bool,
}

/// A verified release file in the cache: the cache's record of it, and where it is.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FetchedArtifact {
    #[serde(flatten)]
    pub record: ArtifactRecord,
    pub path: PathBuf,
    pub from_cache: bool,
}

/// A release's PXE kernel and initramfs, verified.
#[derive(Debug, Clone)]
pub struct PxeFiles {
    pub kernel: FetchedArtifact,
    pub initramfs: FetchedArtifact,
}

/// The release a build's vendor files come from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReleaseInfo {
    pub channel: Channel,
    pub board: Board,
    /// What was asked for (`current` or a version).
    pub requested_version: String,
    /// The concrete version.
    pub version: String,
    /// The release folder's URL (credentials and query removed).
    pub base_url: String,
    /// Signatures were not checked (`--insecure-skip-signature`).
    pub insecure_skip_signature: bool,
    /// The folder's URL as given, to download from; never recorded.
    #[serde(skip)]
    url: String,
}

/// What `fetch` reports: a release and the files of one artifact kind, in `kind.files()`
/// order.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FetchedRelease {
    #[serde(flatten)]
    pub release: ReleaseInfo,
    pub artifact: ArtifactKind,
    pub artifacts: Vec<FetchedArtifact>,
}

/// Fetches the files of `kind` from the release `spec` names.
pub fn fetch(
    spec: &ReleaseSpec,
    kind: ArtifactKind,
    options: &FetchOptions,
    progress: &dyn Progress,
) -> Result<FetchedRelease, ReleaseError> {
    let mut fetcher = Fetcher::new(options, progress);
    let release = fetcher.resolve(spec)?;
    let artifacts = kind
        .files()
        .iter()
        .map(|file| fetcher.artifact(&release, file))
        .collect::<Result<_, _>>()?;
    Ok(FetchedRelease {
        release,
        artifact: kind,
        artifacts,
    })
}

/// Resolves releases and fetches their files, reusing one connection pool.
pub struct Fetcher<'a> {
    session: Session<'a>,
}

impl<'a> Fetcher<'a> {
    pub fn new(options: &'a FetchOptions, progress: &'a dyn Progress) -> Self {
        Fetcher {
            session: Session {
                options,
                progress,
                transport: None,
            },
        }
    }

    /// The concrete release `spec` names (`current` costs one request for `version.txt`).
    pub fn resolve(&mut self, spec: &ReleaseSpec) -> Result<ReleaseInfo, ReleaseError> {
        let version = self.session.resolve_version(spec)?;
        let base_url = spec.base_url(&version)?;
        Ok(ReleaseInfo {
            channel: spec.channel,
            board: spec.board,
            requested_version: spec.version.clone(),
            version,
            base_url: redact(&base_url),
            insecure_skip_signature: self.session.options.insecure_skip_signature,
            url: base_url,
        })
    }

    /// One file of `release`, verified, from the cache or downloaded into it.
    pub fn artifact(
        &mut self,
        release: &ReleaseInfo,
        file: &str,
    ) -> Result<FetchedArtifact, ReleaseError> {
        let key = ReleaseKey {
            channel: release.channel,
            board: release.board,
            version: release.version.clone(),
        };
        self.session.artifact(&key, &release.url, file)
    }
}

struct Session<'a> {
    options: &'a FetchOptions,
    progress: &'a dyn Progress,
    transport: Option<Transport>,
}

/// Why one download attempt ended early.
type Attempt = crate::release::transport::Attempt<ReleaseError>;

impl From<ReleaseError> for Attempt {
    fn from(e: ReleaseError) -> Self {
        Attempt::Fail(e)
    }
}

impl Session<'_> {
    fn transport(&mut self) -> Result<&Transport, ReleaseError> {
        if self.transport.is_none() {
            self.transport = Some(Transport::new(&self.options.net.transport)?);
        }
        Ok(self.transport.as_ref().expect("just set"))
    }

    fn resolve_version(&mut self, spec: &ReleaseSpec) -> Result<String, ReleaseError> {
        if spec.version != "current" {
            return if is_version(&spec.version) {
                Ok(spec.version.clone())
            } else {
                Err(ReleaseError::Version(spec.version.clone()))
            };
        }
        let (channel, board) = (spec.channel, spec.board);
        if self.options.net.offline {
            return self.options.net.cache.current(channel, board).ok_or_else(|| {
                ReleaseError::Offline(format!(
                    "which version `current` is for {channel}/{board} is not in the cache {} (fetch it once online, or give --version)",
                    self.options.net.cache.root().display()
                ))
            });
        }
        let url = format!("{}version.txt", spec.base_url("current")?);
        let text = self.get_small(&url, "the release's version.txt")?;
        let version = parse_version_txt(&String::from_utf8_lossy(&text))
            .ok_or_else(|| ReleaseError::VersionTxt { url: redact(&url) })?;
        self.options
            .net
            .cache
            .set_current(channel, board, &version)?;
        Ok(version)
    }

    /// A small file, retried on transient failures; `what` names it when it is missing.
    fn get_small(&mut self, url: &str, what: &str) -> Result<Vec<u8>, ReleaseError> {
        self.retrying(url, |session| {
            session.transport()?.get_small(url).map_err(|e| match e {
                e if e.is_transient() => Attempt::Retry(e),
                TransportError::NotFound { .. } => Attempt::Fail(ReleaseError::Missing {
                    what: what.into(),
                    source: e,
                }),
                e => Attempt::Fail(e.into()),
            })
        })
    }

    fn retrying<T>(
        &mut self,
        url: &str,
        mut attempt: impl FnMut(&mut Self) -> Result<T, Attempt>,
    ) -> Result<T, ReleaseError> {
        let (options, progress) = (self.options, self.progress);
        crate::release::transport::retrying(
            url,
            options.net.retries,
            options.net.retry_delay,
            progress,
            || attempt(self),
        )
        .map_err(|e| e.unwrap_or_else(ReleaseError::Transport))
    }

    fn artifact(
        &mut self,
        key: &ReleaseKey,
        base_url: &str,
        file: &str,
    ) -> Result<FetchedArtifact, ReleaseError> {
        let options = self.options;
        let skip = options.insecure_skip_signature;
        let trusted = options.keyring.fingerprints();
        if let Some(record) = options.net.cache.lookup(key, file) {
            let acceptable = match &record.signature {
                Some(signature) => trusted.contains(&signature.primary_fingerprint),
                None => skip,
            };
            if acceptable {
                return Ok(FetchedArtifact {
                    path: options.net.cache.blob_path(&record.sha512),
                    record,
                    from_cache: true,
                });
            }
        }
        if options.net.offline {
            return Err(ReleaseError::Offline(format!(
                "{file} of {}/{}/{} is not in the cache {}",
                key.channel,
                key.board,
                key.version,
                options.net.cache.root().display()
            )));
        }

        let url = format!("{base_url}{file}");
        let digests_text = self.get_small(&format!("{url}.DIGESTS"), &format!("{file}.DIGESTS"))?;
        let digests_name = format!("{file}.DIGESTS");
        let mut expected =
            digests::sha512_for(&String::from_utf8_lossy(&digests_text), file, &digests_name)?;
        let mut expected_from = digests_name;
        let mut digests_asc_verified = false;
        let signature = if skip {
            None
        } else {
            match self.get_small(&format!("{url}.DIGESTS.asc"), "DIGESTS.asc") {
                Ok(armored) => {
                    let name = format!("{file}.DIGESTS.asc");
                    let (text, _) = options.keyring.verify_cleartext(&armored, &name)?;
                    let signed = digests::sha512_for(&text, file, &name)?;
                    if signed != expected {
                        return Err(ReleaseError::DigestsDisagree {
                            file: file.into(),
                            source_name: name,
                            signed,
                            unsigned: expected,
                        });
                    }
                    digests_asc_verified = true;
                    expected_from = name;
                    expected = signed;
                }
                // Optional: the detached signature below is what must exist.
                Err(ReleaseError::Missing { .. }) => {}
                Err(e) => return Err(e),
            }
            let sig_name = format!("{file}.sig");
            let bytes =
                self.get_small(&format!("{url}.sig"), &format!("the signature {sig_name}"))?;
            Some(parse_detached(&bytes, &sig_name)?)
        };
        // The signer is judged before the download: an untrusted key costs no transfer.
        let signer = match &signature {
            Some(signature) => Some(options.keyring.signer(signature, file)?),
            None => None,
        };

        let partial = options.net.cache.partial(&url)?;
        let outcome = self.retrying(&url, |session| {
            session.download_once(
                &url,
                file,
                &partial,
                signature.as_ref().zip(signer.as_ref()),
            )
        });
        let (sha512, size) = match outcome {
            Ok(done) => done,
            Err(e) => {
                // Trust failures throw the bytes away; network failures keep them to resume.
                if matches!(e, ReleaseError::Verify(_)) {
                    partial.discard();
                }
                return Err(e);
            }
        };
        if sha512 != expected {
            partial.discard();
            return Err(ReleaseError::DigestMismatch {
                file: file.into(),
                actual: sha512,
                expected,
                source_name: expected_from,
            });
        }
        let record = ArtifactRecord {
            file: file.into(),
            url: redact(&url),
            sha512,
            size,
            signature: signer.map(|s| s.info),
            digests_asc_verified,
        };
        let path = options.net.cache.insert(key, &partial.data, &record)?;
        partial.finish();
        Ok(FetchedArtifact {
            record,
            path,
            from_cache: false,
        })
    }

    /// One attempt: resume what `partial` holds if the server still has the same file, write
    /// the rest, and hash everything. Returns the SHA-512 and size once the signature checks.
    fn download_once(
        &mut self,
        url: &str,
        file: &str,
        partial: &crate::cache::Partial,
        signed: Option<(&pgp::packet::Signature, &Signer<'_>)>,
    ) -> Result<(String, u64), Attempt> {
        let io = |source| {
            Attempt::Fail(ReleaseError::Io(PathError {
                path: partial.data.clone(),
                source,
            }))
        };
        let (have, validator) = partial.resume_state(url);
        let body = self
            .transport()?
            .open(url, have, validator.as_deref())
            .map_err(|e| match e {
                e if e.is_transient() => Attempt::Retry(e),
                TransportError::NotFound { .. } => Attempt::Fail(ReleaseError::Missing {
                    what: file.into(),
                    source: e,
                }),
                e => Attempt::Fail(e.into()),
            })?;
        if have > 0 && body.start == 0 {
            self.progress.note(&format!(
                "{file}: the server sent the whole file (changed, or no ranges); starting over"
            ));
        } else if body.start > 0 {
            self.progress
                .note(&format!("{file}: resuming at byte {}", body.start));
        }
        let mut out = partial
            .resume(url, body.validator.clone(), body.start)
            .map_err(|e| {
                Attempt::Fail(ReleaseError::Io(PathError {
                    path: e.path,
                    source: e.source,
                }))
            })?;
        self.progress.start(file, body.total);
        let progress = self.progress;
        let result = std::thread::scope(|scope| {
            // SHA-512 runs on its own core. When the signature is SHA-512 too (Flatcar's are)
            // that one pass serves both checks; otherwise rPGP hashes a copy on a third thread.
            let mut pipe = Sha512Pipe::spawn(CHUNK, 8);
            let shared = signed.is_some_and(|(signature, _)| Signer::shares_sha512(signature));
            let (copies, reader) = crate::io::chunk_channel(8);
            let separate = signed.filter(|_| !shared).map(|(signature, signer)| {
                scope.spawn(move || signer.check(signature, reader, file))
            });
            let copies = separate.as_ref().map(|_| copies);
            let send = |buffer: Vec<u8>, pipe: &mut Sha512Pipe| {
                if let Some(copies) = &copies {
                    // Fails only if the checker stopped early; its result says why.
                    let _ = copies.send(buffer.clone());
                }
                pipe.submit(buffer);
            };
            // Bytes from an earlier attempt are hashed again from disk.
            out.seek(SeekFrom::Start(0)).map_err(io)?;
            let mut prefix = (&mut out).take(body.start);
            loop {
                let mut buffer = pipe.buffer();
                let n = read_full(&mut prefix, &mut buffer).map_err(io)?;
                if n == 0 {
                    break;
                }
                buffer.truncate(n);
                send(buffer, &mut pipe);
            }
            progress.advance(body.start);
            out.seek(SeekFrom::Start(body.start)).map_err(io)?;
            let mut reader = body.reader;
            let mut size = body.start;
            let mut flushed = body.start;
            let mut interrupted = None;
            loop {
                let mut buffer = pipe.buffer();
                match read_full(&mut reader, &mut buffer) {
                    Ok(0) => break,
                    Ok(n) => {
                        buffer.truncate(n);
                        out.write_all(&buffer).map_err(io)?;
                        size += n as u64;
                        if size - flushed >= WRITEBACK_STEP {
                            crate::atomic::start_writeback(&out, flushed, size - flushed);
                            flushed = size;
                        }
                        progress.advance(n as u64);
                        send(buffer, &mut pipe);
                    }
                    Err(e) => {
                        interrupted = Some(e);
                        break;
                    }
                }
            }
            out.flush().map_err(io)?;
            drop(copies);
            let state = pipe.finish();
            let checked =
                separate.map(|c| c.join().expect("signature check thread does not panic"));
            if let Some(e) = interrupted {
                return Err(Attempt::Retry(TransportError::Io {
                    url: redact(url),
                    source: e,
                }));
            }
            if let Some(total) = body.total.filter(|total| size < *total) {
                return Err(Attempt::Retry(TransportError::Network {
                    url: redact(url),
                    message: format!("connection closed after {size} of {total} bytes"),
                }));
            }
            match (checked, signed) {
                (Some(checked), _) => checked.map_err(|e| Attempt::Fail(e.into()))?,
                (None, Some((signature, signer))) => signer
                    .check_sha512_state(signature, state.clone(), file)
                    .map_err(|e| Attempt::Fail(e.into()))?,
                (None, None) => {}
            }
            Ok((hex(&state.finalize()), size))
        });
        self.progress.finish();
        result
    }
}

/// Reads until `buffer` is full or the stream ends, so hashing sees whole chunks.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // Keep what arrived; a broken stream fails again (or ends short) on the next call.
            Err(_) if filled > 0 => break,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl From<TransportError> for Attempt {
    fn from(e: TransportError) -> Self {
        if e.is_transient() {
            Attempt::Retry(e)
        } else {
            Attempt::Fail(e.into())
        }
    }
}
