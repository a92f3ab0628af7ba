//! Pulling from a registry over the OCI distribution API: manifests resolved to the board's
//! platform and every blob streamed into the cache while its SHA-256 is checked. A blob is
//! never used, or even named by its digest, before the check passes.

use std::collections::BTreeMap;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

use super::auth::{self, Challenge, Credentials};
use super::manifest::{self, Descriptor, Document, ImageManifest};
use super::reference::{Reference, check_digest};
use crate::cache::hex;
use crate::io::{At, PathError};
use crate::progress::Progress;
use crate::release::transport::{NetOptions, Transport, TransportError, redact};
use crate::wording::JsonFault;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{reference}: {source}")]
    Transport {
        reference: String,
        source: TransportError,
    },
    #[error(
        "{reference}: the registry refused access{}",
        if *with_credentials { " with the credentials from the Docker config" } else { " and no credentials for it were found (log in with `docker login`, or set DOCKER_CONFIG)" }
    )]
    Unauthorized {
        reference: String,
        with_credentials: bool,
    },
    #[error("{reference}: {what} has digest {actual}, not {expected}: refusing it")]
    DigestMismatch {
        reference: String,
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{reference}: no image for linux/{architecture} (the index offers {offered})")]
    NoPlatform {
        reference: String,
        architecture: String,
        offered: String,
    },
    #[error("{reference}: {why}")]
    Invalid { reference: String, why: String },
    #[error("{0}")]
    Config(#[from] auth::ConfigError),
    #[error("{0}")]
    Cache(#[from] crate::cache::CacheError),
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("--offline: {reference}: {what} is not in the cache {cache} (pull it once online)")]
    Offline {
        reference: String,
        what: String,
        cache: String,
    },
}

/// A 404 for a manifest says, in the user's terms, which image or which part of it is
/// missing; anything else is passed on.
fn missing_manifest(error: RegistryError, reference: &Reference, wanted: &str) -> RegistryError {
    let RegistryError::Transport {
        source: TransportError::NotFound { .. },
        ..
    } = &error
    else {
        return error;
    };
    let named =
        reference.tag.as_deref() == Some(wanted) || reference.digest.as_deref() == Some(wanted);
    let why = if named {
        let what = if wanted.starts_with("sha256:") {
            format!("digest {wanted}")
        } else {
            format!("tag `{wanted}`")
        };
        format!(
            "no such image: {} has no repository `{}` with {what} (check the name, the tag and that you may see it)",
            reference.registry, reference.repository
        )
    } else {
        format!("its index names the manifest {wanted}, which the registry does not have")
    };
    RegistryError::Invalid {
        reference: reference.to_string(),
        why,
    }
}

pub struct PullOptions {
    /// Offline, a tag is the digest it last resolved to.
    pub net: NetOptions,
    /// Blobs downloaded at once.
    pub workers: usize,
}

/// What a tag resolved to when it was last pulled online.
#[derive(serde::Serialize, serde::Deserialize)]
struct TagRecord {
    reference: String,
    digest: String,
}

fn tag_key(reference: &Reference) -> String {
    hex(&Sha256::digest(reference.name().as_bytes())[..16])
}

/// An image's platform manifest and its blobs, all verified and in the cache.
#[derive(Debug, Clone)]
pub struct PulledImage {
    pub reference: Reference,
    /// What the reference resolves to: the index's digest for multi-platform images.
    pub digest: String,
    /// The platform manifest's digest and bytes (verified).
    pub manifest_digest: String,
    pub(crate) manifest_media_type: String,
    pub(crate) manifest_bytes: Vec<u8>,
    pub manifest: ImageManifest,
    /// Cache paths of the config and layers, in manifest order.
    pub config_path: PathBuf,
    pub(crate) layer_paths: Vec<PathBuf>,
}

pub struct Registry<'a> {
    options: &'a PullOptions,
    transport: Transport,
    docker_config: Option<PathBuf>,
    /// `Authorization` values by registry and repository, once earned.
    tokens: Mutex<BTreeMap<String, HeaderValue>>,
}

type Attempt = crate::release::transport::Attempt<RegistryError>;

/// Bytes read and hashed at a time.
const READ_CHUNK: usize = 1 << 20;

impl<'a> Registry<'a> {
    pub fn new(options: &'a PullOptions) -> Result<Self, RegistryError> {
        let transport =
            Transport::new(&options.net.transport).map_err(|source| RegistryError::Transport {
                reference: String::new(),
                source,
            })?;
        Ok(Registry {
            options,
            transport,
            docker_config: auth::docker_config_path(),
            tokens: Mutex::new(BTreeMap::new()),
        })
    }

    /// Resolves `reference` to the manifest for `architecture` and brings every blob it names
    /// into the cache.
    pub fn pull(
        &self,
        reference: &Reference,
        architecture: &str,
        progress: &dyn Progress,
    ) -> Result<PulledImage, RegistryError> {
        let name = reference.to_string();
        let wanted = match (&reference.digest, &reference.tag) {
            (Some(digest), _) => digest.clone(),
            (None, Some(_)) if self.options.net.offline => self.offline_tag(reference)?,
            (None, Some(tag)) => tag.clone(),
            (None, None) => unreachable!("references have a tag or a digest"),
        };
        let (top_digest, media, bytes) = self.manifest(reference, &wanted, progress)?;
        if reference.digest.is_none() && !self.options.net.offline {
            self.record_tag(reference, &top_digest);
        }
        let invalid = |why: String| RegistryError::Invalid {
            reference: name.clone(),
            why,
        };
        let (manifest_digest, media, bytes) = match manifest::parse(&media, &bytes)
            .map_err(invalid)?
        {
            Document::Image(_) => (top_digest.clone(), media, bytes),
            Document::Index(index) => {
                let entry = manifest::select(&index, architecture).ok_or_else(|| {
                    RegistryError::NoPlatform {
                        reference: name.clone(),
                        architecture: architecture.to_string(),
                        offered: manifest::platforms(&index),
                    }
                })?;
                check_digest(&entry.digest).map_err(invalid)?;
                let (digest, media, bytes) = self.manifest(reference, &entry.digest, progress)?;
                (digest, media, bytes)
            }
        };
        let image = match manifest::parse(&media, &bytes).map_err(invalid)? {
            Document::Image(image) => image,
            Document::Index(_) => {
                return Err(invalid("an index entry points at another index".into()));
            }
        };
        let media_type = manifest::media_type(&media, &bytes);
        let total: u64 = image.layers.iter().map(|l| l.size).sum::<u64>() + image.config.size;
        progress.start(&name, Some(total));
        let mut blobs: Vec<&Descriptor> = vec![&image.config];
        blobs.extend(image.layers.iter());
        let paths = self.blobs(reference, &blobs, progress);
        progress.finish();
        let mut paths = paths?.into_iter();
        let config_path = paths.next().expect("the config was asked for");
        Ok(PulledImage {
            reference: reference.clone(),
            digest: top_digest,
            manifest_digest,
            manifest_media_type: media_type,
            manifest_bytes: bytes,
            manifest: image.clone(),
            config_path,
            layer_paths: paths.collect(),
        })
    }

    /// A manifest by tag or digest: its digest (checked against the digest asked for), media
    /// type and bytes.
    fn manifest(
        &self,
        reference: &Reference,
        wanted: &str,
        progress: &dyn Progress,
    ) -> Result<(String, String, Vec<u8>), RegistryError> {
        // Manifests named by digest are content-addressed like any blob: a cached one needs no
        // registry (pinned images build offline once pulled).
        let cached = wanted
            .strip_prefix("sha256:")
            .map(|hex| self.options.net.cache.blob_sha256_path(hex));
        if let Some(bytes) = cached.as_ref().and_then(|path| std::fs::read(path).ok())
            && format!("sha256:{}", hex(&Sha256::digest(&bytes))) == wanted
        {
            return Ok((wanted.to_string(), String::new(), bytes));
        }
        if self.options.net.offline {
            return Err(self.offline(reference, &format!("manifest {wanted}")));
        }
        let url = format!("{}/manifests/{wanted}", reference.api_base());
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(manifest::ACCEPT));
        let (body, bytes) = self
            .retrying(reference, &url, progress, |this| {
                let body = this.open(reference, &url, 0, None, &headers)?;
                let mut bytes = Vec::new();
                let mut limited = body.reader.take(manifest::MANIFEST_LIMIT + 1);
                limited
                    .read_to_end(&mut bytes)
                    .map_err(|source| transient(&url, source))?;
                Ok(((body.content_type, body.content_digest), bytes))
            })
            .map_err(|error| missing_manifest(error, reference, wanted))?;
        if bytes.len() as u64 > manifest::MANIFEST_LIMIT {
            return Err(RegistryError::Invalid {
                reference: reference.to_string(),
                why: format!(
                    "the manifest is larger than {} bytes",
                    manifest::MANIFEST_LIMIT
                ),
            });
        }
        let digest = format!("sha256:{}", hex(&Sha256::digest(&bytes)));
        let expected = if wanted.starts_with("sha256:") {
            Some(wanted.to_string())
        } else {
            body.1.clone()
        };
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(RegistryError::DigestMismatch {
                reference: reference.to_string(),
                what: format!("manifest {wanted}"),
                expected,
                actual: digest,
            });
        }
        let path = self
            .options
            .net
            .cache
            .blob_sha256_path(&digest["sha256:".len()..]);
        crate::atomic::write_atomic(&path, &bytes).at(&path)?;
        Ok((digest, body.0.unwrap_or_default(), bytes))
    }

    fn offline(&self, reference: &Reference, what: &str) -> RegistryError {
        RegistryError::Offline {
            reference: reference.to_string(),
            what: what.to_string(),
            cache: self.options.net.cache.root().display().to_string(),
        }
    }

    /// Offline, a tag means the digest it resolved to the last time it was pulled.
    fn offline_tag(&self, reference: &Reference) -> Result<String, RegistryError> {
        let path = self.options.net.cache.tag_path(&tag_key(reference));
        std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<TagRecord>(&bytes).ok())
            .filter(|record| record.reference == reference.name())
            .map(|record| record.digest)
            .filter(|digest| check_digest(digest).is_ok())
            .ok_or_else(|| self.offline(reference, "what the tag resolves to"))
    }

    /// Remembers what a tag resolved to, for offline runs; a failure only costs that.
    fn record_tag(&self, reference: &Reference, digest: &str) {
        let record = TagRecord {
            reference: reference.name(),
            digest: digest.to_string(),
        };
        let path = self.options.net.cache.tag_path(&tag_key(reference));
        let _ = crate::atomic::write_atomic(
            &path,
            &serde_json::to_vec(&record).expect("records serialise"),
        );
    }

    /// Downloads `blobs` (skipping those already cached) on a few threads; paths in order.
    fn blobs(
        &self,
        reference: &Reference,
        blobs: &[&Descriptor],
        progress: &dyn Progress,
    ) -> Result<Vec<PathBuf>, RegistryError> {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Result<PathBuf, RegistryError>>>> =
            Mutex::new((0..blobs.len()).map(|_| None).collect());
        let workers = self.options.workers.clamp(1, 8).min(blobs.len().max(1));
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(blob) = blobs.get(i) else { break };
                        let result = self.blob(reference, blob, progress);
                        let failed = result.is_err();
                        results.lock().expect("no panics while locked")[i] = Some(result);
                        if failed {
                            // The others finish their current blob; no new ones start.
                            next.store(blobs.len(), std::sync::atomic::Ordering::Relaxed);
                            break;
                        }
                    }
                });
            }
        });
        let results = results.into_inner().expect("no panics while locked");
        let mut paths = Vec::new();
        let mut first_error = None;
        for result in results.into_iter().flatten() {
            match result {
                Ok(path) => paths.push(path),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(paths),
        }
    }

    /// One blob into the cache, resuming a partial download, checked against its digest and
    /// size before it gets its name.
    fn blob(
        &self,
        reference: &Reference,
        blob: &Descriptor,
        progress: &dyn Progress,
    ) -> Result<PathBuf, RegistryError> {
        check_digest(&blob.digest).map_err(|why| RegistryError::Invalid {
            reference: reference.to_string(),
            why,
        })?;
        let cache = &self.options.net.cache;
        let path = cache.blob_sha256_path(&blob.digest["sha256:".len()..]);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == blob.size) {
            progress.advance(blob.size);
            return Ok(path);
        }
        if self.options.net.offline {
            return Err(self.offline(reference, &format!("blob {}", blob.digest)));
        }
        let url = format!("{}/blobs/{}", reference.api_base(), blob.digest);
        let partial = cache.partial(&url)?;
        let io = |path: &PathBuf| {
            let path = path.clone();
            move |source| Attempt::Fail(RegistryError::Io(PathError { path, source }))
        };
        let mismatch = self.retrying(reference, &url, progress, |this| {
            let (have, validator) = partial.resume_state(&url);
            let body = this.open(
                reference,
                &url,
                have,
                validator.as_deref(),
                &HeaderMap::new(),
            )?;
            let mut out = partial
                .resume(&url, body.validator.clone(), body.start)
                .map_err(|e| {
                    Attempt::Fail(RegistryError::Io(PathError {
                        path: e.path,
                        source: e.source,
                    }))
                })?;
            if body.start > 0 {
                progress.note(&format!("{}: resuming at byte {}", blob.digest, body.start));
            }
            let mut hasher = Sha256::new();
            let mut buffer = vec![0u8; READ_CHUNK];
            out.seek(SeekFrom::Start(0)).map_err(io(&partial.data))?;
            let mut prefix = (&mut out).take(body.start);
            loop {
                let n = prefix.read(&mut buffer).map_err(io(&partial.data))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buffer[..n]);
            }
            out.seek(SeekFrom::Start(body.start))
                .map_err(io(&partial.data))?;
            let mut size = body.start;
            let mut reader = body.reader;
            loop {
                let n = reader
                    .read(&mut buffer)
                    .map_err(|source| transient(&url, source))?;
                if n == 0 {
                    break;
                }
                size += n as u64;
                if size > blob.size {
                    break;
                }
                hasher.update(&buffer[..n]);
                out.write_all(&buffer[..n]).map_err(io(&partial.data))?;
                progress.advance(n as u64);
            }
            let actual = format!("sha256:{}", hex(&hasher.finalize()));
            if size != blob.size || actual != blob.digest {
                partial.discard();
                let actual = if size == blob.size {
                    actual
                } else {
                    format!(
                        "{actual} over {size} bytes (the manifest says {})",
                        blob.size
                    )
                };
                return Ok(Some(actual));
            }
            Ok(None)
        })?;
        if let Some(actual) = mismatch {
            return Err(RegistryError::DigestMismatch {
                reference: reference.to_string(),
                what: format!("blob {}", blob.digest),
                expected: blob.digest.clone(),
                actual,
            });
        }
        crate::atomic::commit(&partial.data, &path).at(&path)?;
        partial.finish();
        Ok(path)
    }

    /// Opens `url` with the authorisation earned so far; a 401 earns it (once) and retries.
    fn open(
        &self,
        reference: &Reference,
        url: &str,
        offset: u64,
        validator: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<crate::release::transport::Body, Attempt> {
        let key = format!("{}/{}", reference.registry, reference.repository);
        let mut tried_auth = false;
        loop {
            let mut headers = headers.clone();
            if let Some(value) = self.tokens.lock().expect("no panics").get(&key) {
                headers.insert(AUTHORIZATION, value.clone());
            }
            match self.transport.open_with(url, offset, validator, &headers) {
                Ok(body) => return Ok(body),
                Err(TransportError::Unauthorized { challenge, .. }) if !tried_auth => {
                    tried_auth = true;
                    let value = self
                        .authorize(reference, challenge.as_deref())
                        .map_err(Attempt::Fail)?;
                    self.tokens
                        .lock()
                        .expect("no panics")
                        .insert(key.clone(), value);
                }
                Err(TransportError::Unauthorized { .. }) => {
                    return Err(Attempt::Fail(RegistryError::Unauthorized {
                        reference: reference.to_string(),
                        with_credentials: self.credentials(reference)?.is_some(),
                    }));
                }
                Err(e) if e.is_transient() => return Err(Attempt::Retry(e)),
                Err(source) => {
                    return Err(Attempt::Fail(RegistryError::Transport {
                        reference: reference.to_string(),
                        source,
                    }));
                }
            }
        }
    }

    fn credentials(&self, reference: &Reference) -> Result<Option<Credentials>, Attempt> {
        match &self.docker_config {
            Some(path) => auth::credentials_for(path, &reference.registry)
                .map_err(|e| Attempt::Fail(e.into())),
            None => Ok(None),
        }
    }

    /// Answers a 401's challenge: a bearer token from the token service (with the Docker
    /// config's credentials, if any), or those credentials as Basic.
    fn authorize(
        &self,
        reference: &Reference,
        challenge: Option<&str>,
    ) -> Result<HeaderValue, RegistryError> {
        let credentials = self.credentials(reference).map_err(|a| match a {
            Attempt::Fail(e) => e,
            Attempt::Retry(source) => RegistryError::Transport {
                reference: reference.to_string(),
                source,
            },
        })?;
        let refused = || RegistryError::Unauthorized {
            reference: reference.to_string(),
            with_credentials: credentials.is_some(),
        };
        let sensitive = |text: String| {
            let mut value = HeaderValue::from_str(&text).map_err(|_| refused())?;
            value.set_sensitive(true);
            Ok(value)
        };
        match challenge.and_then(auth::parse_challenge) {
            Some(Challenge::Basic) => match &credentials {
                Some(c) => sensitive(c.basic_header()),
                None => Err(refused()),
            },
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let scope =
                    scope.unwrap_or_else(|| format!("repository:{}:pull", reference.repository));
                let mut url = realm.clone();
                url.push(if realm.contains('?') { '&' } else { '?' });
                if let Some(service) = &service {
                    url.push_str(&format!(
                        "service={}&",
                        crate::url::percent_encode(service.as_bytes())
                    ));
                }
                url.push_str(&format!(
                    "scope={}",
                    crate::url::percent_encode(scope.as_bytes())
                ));
                let mut headers = HeaderMap::new();
                if let Some(c) = &credentials {
                    headers.insert(AUTHORIZATION, sensitive(c.basic_header())?);
                }
                let body = self
                    .transport
                    .open_with(&url, 0, None, &headers)
                    .map_err(|source| match source {
                        TransportError::Unauthorized { .. } => refused(),
                        source => RegistryError::Transport {
                            reference: reference.to_string(),
                            source,
                        },
                    })?;
                let mut bytes = Vec::new();
                body.reader
                    .take(1 << 20)
                    .read_to_end(&mut bytes)
                    .map_err(|source| RegistryError::Transport {
                        reference: reference.to_string(),
                        source: transient_error(&url, source),
                    })?;
                #[derive(serde::Deserialize)]
                struct TokenAnswer {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let answer: TokenAnswer =
                    serde_json::from_slice(&bytes).map_err(|e| RegistryError::Invalid {
                        reference: reference.to_string(),
                        why: format!(
                            "the token service {} answered: {}",
                            redact(&realm),
                            JsonFault::from(e)
                        ),
                    })?;
                let token = answer.token.or(answer.access_token).ok_or_else(refused)?;
                sensitive(format!("Bearer {token}"))
            }
            None => Err(refused()),
        }
    }

    fn retrying<T>(
        &self,
        reference: &Reference,
        url: &str,
        progress: &dyn Progress,
        mut attempt: impl FnMut(&Self) -> Result<T, Attempt>,
    ) -> Result<T, RegistryError> {
        let options = self.options;
        crate::release::transport::retrying(
            url,
            options.net.retries,
            options.net.retry_delay,
            progress,
            || attempt(self),
        )
        .map_err(|e| {
            e.unwrap_or_else(|source| RegistryError::Transport {
                reference: reference.to_string(),
                source,
            })
        })
    }
}

fn transient_error(url: &str, source: std::io::Error) -> TransportError {
    TransportError::Io {
        url: redact(url),
        source,
    }
}

fn transient(url: &str, source: std::io::Error) -> Attempt {
    Attempt::Retry(transient_error(url, source))
}
