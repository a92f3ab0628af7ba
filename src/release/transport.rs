//! Getting bytes from a release location: HTTP(S) with timeouts, ranges and validators, or a
//! local `file://` mirror. Retrying is the caller's job; this says which failures are worth it.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::time::Duration;

/// Small files (version.txt, DIGESTS, signatures) are refused past this size.
const SMALL_LIMIT: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("{url}: not found (HTTP 404)")]
    NotFound { url: String },
    #[error("{url}: HTTP {status}")]
    Status {
        url: String,
        status: u16,
        transient: bool,
    },
    #[error("{url}: {message}")]
    Network { url: String, message: String },
    /// Not transient: a name that does not resolve now will not in a second either.
    #[error(
        "cannot resolve {host} (no network? `scripts/demo` in the repository shows kato-image offline)"
    )]
    Unresolved { url: String, host: String },
    /// Not transient: a server that promises more than any file can be will again.
    #[error(
        "{url}: the server announces {announced} bytes, more than any file kato-image fetches (at most {} GiB)",
        MAX_BODY >> 30
    )]
    Announced { url: String, announced: u64 },
    #[error("{url}: larger than {limit} bytes, which this small file cannot be")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: {source}")]
    Io { url: String, source: io::Error },
    #[error("{url}: not authorised (HTTP {status})")]
    Unauthorized {
        url: String,
        status: u16,
        /// The `WWW-Authenticate` header, saying how to authenticate.
        challenge: Option<String>,
    },
    #[error("{url}: unsupported URL (use http://, https:// or file://)")]
    Scheme { url: String },
}

impl TransportError {
    /// Whether trying again may help: network trouble, timeouts, 5xx and 429.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            TransportError::Network { .. } => true,
            TransportError::Status { transient, .. } => *transient,
            TransportError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::TimedOut
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::Interrupted
                    | io::ErrorKind::Other
            ),
            _ => false,
        }
    }
}

/// A response body being read.
pub(crate) struct Body {
    pub reader: Box<dyn Read + Send>,
    /// The response's `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The response's `Docker-Content-Digest`, if any (registries send it with manifests).
    pub(crate) content_digest: Option<String>,
    /// The offset the body starts at: the requested one, or 0 when the whole file is sent.
    pub start: u64,
    /// The whole file's length, when known.
    pub total: Option<u64>,
    /// ETag or Last-Modified, to resume only the same file later.
    pub validator: Option<String>,
}

/// How anything is downloaded, whether a release file or a container image: where it is
/// kept, whether the network may be used at all, and how hard to try.
#[derive(Debug, Clone)]
pub struct NetOptions {
    pub cache: crate::cache::Cache,
    /// Make no request: use what the cache holds.
    pub offline: bool,
    /// Further attempts after a transient failure.
    pub retries: u32,
    /// The first wait between attempts; it doubles each time, up to 30 s.
    pub retry_delay: Duration,
    pub transport: TransportOptions,
}

#[derive(Debug, Clone)]
pub struct TransportOptions {
    pub(crate) connect_timeout: Duration,
    /// How long a read may wait for the next bytes.
    pub(crate) read_timeout: Duration,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(60),
        }
    }
}

pub(crate) struct Transport {
    client: reqwest::blocking::Client,
}

impl Transport {
    pub fn new(options: &TransportOptions) -> Result<Self, TransportError> {
        // ring, not aws-lc: a pure-Rust build. Another part of the process may have installed
        // a provider already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::blocking::Client::builder()
            .user_agent(concat!("kato-image/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(options.connect_timeout)
            .timeout(options.read_timeout)
            .build()
            .map_err(|e| TransportError::Network {
                url: String::new(),
                message: format!("cannot set up the HTTP client: {e}"),
            })?;
        Ok(Transport { client })
    }

    /// Fetches a small file whole.
    pub(crate) fn get_small(&self, url: &str) -> Result<Vec<u8>, TransportError> {
        let body = self.open(url, 0, None)?;
        if body.total.is_some_and(|t| t > SMALL_LIMIT) {
            return Err(TransportError::TooLarge {
                url: redact(url),
                limit: SMALL_LIMIT,
            });
        }
        let mut bytes = Vec::new();
        body.reader
            .take(SMALL_LIMIT + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| TransportError::Io {
                url: redact(url),
                source,
            })?;
        if bytes.len() as u64 > SMALL_LIMIT {
            return Err(TransportError::TooLarge {
                url: redact(url),
                limit: SMALL_LIMIT,
            });
        }
        Ok(bytes)
    }

    /// Opens `url` from byte `offset`. With a `validator` from an earlier response, the server
    /// sends the rest only if the file is unchanged (`If-Range`), else the whole file.
    pub fn open(
        &self,
        url: &str,
        offset: u64,
        validator: Option<&str>,
    ) -> Result<Body, TransportError> {
        self.open_with(url, offset, validator, &reqwest::header::HeaderMap::new())
    }

    /// `open` with extra request headers (authorisation, content negotiation). reqwest drops
    /// `Authorization` when a redirect leaves the host, so blob stores never see it.
    pub(crate) fn open_with(
        &self,
        url: &str,
        offset: u64,
        validator: Option<&str>,
        headers: &reqwest::header::HeaderMap,
    ) -> Result<Body, TransportError> {
        if let Some(path) = url.strip_prefix("file://") {
            return open_file(url, PathBuf::from(path), offset);
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(TransportError::Scheme { url: redact(url) });
        }
        let mut request = self.client.get(url).headers(headers.clone());
        if offset > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={offset}-"));
            if let Some(validator) = validator {
                request = request.header(reqwest::header::IF_RANGE, validator);
            }
        }
        let response = request.send().map_err(|e| request_failed(url, e))?;
        let status = response.status().as_u16();
        let header = |name: reqwest::header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let validator = header(reqwest::header::ETAG)
            .filter(|etag| !etag.starts_with("W/"))
            .or_else(|| header(reqwest::header::LAST_MODIFIED));
        let length = response.content_length();
        let too_large = |announced: u64| TransportError::Announced {
            url: redact(url),
            announced,
        };
        if let Some(announced) = length.filter(|&n| n > MAX_BODY) {
            return Err(too_large(announced));
        }
        match status {
            200 => Ok(Body {
                content_type: header(reqwest::header::CONTENT_TYPE),
                content_digest: header(reqwest::header::HeaderName::from_static(
                    "docker-content-digest",
                )),
                start: 0,
                total: length,
                validator,
                reader: Box::new(response),
            }),
            206 => {
                let range = header(reqwest::header::CONTENT_RANGE).unwrap_or_default();
                let (start, total) =
                    parse_content_range(&range).ok_or_else(|| TransportError::Network {
                        url: redact(url),
                        message: format!("206 with an unusable Content-Range {range:?}"),
                    })?;
                if let Some(announced) = total.filter(|&n| n > MAX_BODY) {
                    return Err(too_large(announced));
                }
                if start != offset {
                    return Err(TransportError::Network {
                        url: redact(url),
                        message: format!("asked for bytes from {offset}, got from {start}"),
                    });
                }
                Ok(Body {
                    content_type: header(reqwest::header::CONTENT_TYPE),
                    content_digest: None,
                    start,
                    total,
                    validator,
                    reader: Box::new(response),
                })
            }
            404 | 410 => Err(TransportError::NotFound { url: redact(url) }),
            401 | 403 => Err(TransportError::Unauthorized {
                url: redact(url),
                status,
                challenge: header(reqwest::header::WWW_AUTHENTICATE),
            }),
            416 => Err(TransportError::Status {
                url: redact(url),
                status,
                transient: true,
            }),
            _ => Err(TransportError::Status {
                url: redact(url),
                status,
                transient: status == 408 || status == 429 || status >= 500,
            }),
        }
    }
}

/// The most any file fetched may claim to be: Flatcar's largest image is about 1 GiB
/// compressed, and container image layers are smaller; a server announcing more is wrong.
pub(crate) const MAX_BODY: u64 = 64 << 30;

fn open_file(url: &str, path: PathBuf, offset: u64) -> Result<Body, TransportError> {
    use std::io::{Seek, SeekFrom};
    let mut file = File::open(&path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => TransportError::NotFound {
            url: url.to_string(),
        },
        _ => TransportError::Io {
            url: url.to_string(),
            source,
        },
    })?;
    let io_error = |source| TransportError::Io {
        url: url.to_string(),
        source,
    };
    let total = file.metadata().map_err(io_error)?.len();
    let start = offset.min(total);
    file.seek(SeekFrom::Start(start)).map_err(io_error)?;
    Ok(Body {
        content_type: None,
        content_digest: None,
        reader: Box::new(file),
        start,
        total: Some(total),
        validator: None,
    })
}

/// `bytes 100-199/1000` gives (100, Some(1000)).
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

/// The error and its causes on one line (reqwest nests the interesting part).
/// A request that got no answer: a name that does not resolve, or other network trouble.
fn request_failed(url: &str, error: reqwest::Error) -> TransportError {
    // reqwest repeats the URL in its message ("error sending request for url (...)"), and
    // ours names it already, redacted.
    let error = error.without_url();
    let message = crate::origin::with_causes(&error);
    if error.is_connect() && message.contains("dns error") {
        let host = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        return TransportError::Unresolved {
            host,
            url: redact(url),
        };
    }
    // reqwest's layers ("error sending request: client error (Connect): tcp connect
    // error: ...") say less than the last of them.
    let mut innermost: &dyn std::error::Error = &error;
    while let Some(cause) = innermost.source() {
        innermost = cause;
    }
    let message = if error.is_connect() {
        format!("cannot connect ({innermost})")
    } else if error.is_timeout() {
        format!("no answer in time ({innermost})")
    } else {
        message.replace("error sending request: ", "")
    };
    TransportError::Network {
        url: redact(url),
        message,
    }
}

/// The wait before retry number `failures + 1`: `first`, doubling each time, at most 30 s.
pub fn backoff(first: Duration, failures: u32) -> Duration {
    first
        .saturating_mul(1 << failures.min(16))
        .min(Duration::from_secs(30))
}

/// How one try of a download went wrong: worth trying again, or not.
pub(crate) enum Attempt<E> {
    Retry(TransportError),
    Fail(E),
}

/// Runs `attempt` until it succeeds, fails for good, or has been retried `retries` times,
/// waiting `backoff(first_delay, n)` between tries and saying so on `progress`. Running out of
/// retries gives the last transport error.
pub(crate) fn retrying<T, E>(
    url: &str,
    retries: u32,
    first_delay: Duration,
    progress: &dyn crate::progress::Progress,
    mut attempt: impl FnMut() -> Result<T, Attempt<E>>,
) -> Result<T, Result<E, TransportError>> {
    let mut failures = 0;
    loop {
        match attempt() {
            Ok(value) => return Ok(value),
            Err(Attempt::Fail(e)) => return Err(Ok(e)),
            Err(Attempt::Retry(e)) if failures >= retries => return Err(Err(e)),
            Err(Attempt::Retry(e)) => {
                let delay = backoff(first_delay, failures);
                failures += 1;
                progress.note(&format!(
                    "{}: {e}; retry {failures} of {retries} in {:.1}s",
                    redact(url),
                    delay.as_secs_f64()
                ));
                std::thread::sleep(delay);
            }
        }
    }
}

/// A URL fit for logs and errors: no user or password, no query (signed URLs carry tokens).
pub(crate) fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let path = match path.split_once('?') {
        Some((path, _)) => format!("{path}?…"),
        None => path.to_string(),
    };
    if scheme.is_empty() {
        format!("{host}{path}")
    } else {
        format!("{scheme}://{host}{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials_and_queries() {
        assert_eq!(
            redact("https://user:secret@mirror.example/x/y.bin?X-Amz-Signature=abc"),
            "https://mirror.example/x/y.bin?…"
        );
        assert_eq!(redact("http://127.0.0.1:8080/a"), "http://127.0.0.1:8080/a");
        assert_eq!(redact("file:///srv/m/a"), "file:///srv/m/a");
    }

    #[test]
    fn parses_content_range() {
        assert_eq!(
            parse_content_range("bytes 100-199/1000"),
            Some((100, Some(1000)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }
}
