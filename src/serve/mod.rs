//! Serving an iPXE payload folder over HTTP/1.1: GET and HEAD, byte ranges and
//! Last-Modified (tower-http's ServeDir), ETag / If-None-Match (here), and a guard that keeps
//! every answer inside the folder: no `..`, no encoded slashes or backslashes, no symlink
//! that leads out.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::services::ServeDir;

mod body;
mod connections;

pub use connections::Limits;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{}: {source}", path.display())]
    Root {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Io(std::io::Error),
}

/// One request, for the access log.
#[derive(Debug, Clone)]
pub struct AccessLog {
    pub peer: SocketAddr,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub bytes: Option<u64>,
    pub duration: Duration,
}

#[derive(Clone)]
struct Guard {
    root: PathBuf,
    log: std::sync::Arc<dyn Fn(AccessLog) + Send + Sync>,
}

/// The folder to serve, checked: it exists and is a folder.
pub fn root(dir: &Path) -> Result<PathBuf, ServeError> {
    let root = dir.canonicalize().map_err(|source| ServeError::Root {
        path: dir.to_path_buf(),
        source,
    })?;
    if !root.is_dir() {
        return Err(ServeError::Root {
            path: dir.to_path_buf(),
            source: std::io::Error::other("not a folder"),
        });
    }
    Ok(root)
}

/// Serves `root` on `listener` within `limits` until `shutdown` completes; calls `log` once
/// per request.
pub async fn serve(
    root: &Path,
    listener: tokio::net::TcpListener,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    log: impl Fn(AccessLog) + Send + Sync + 'static,
) -> Result<(), ServeError> {
    let root = self::root(root)?;
    let guard = Guard {
        root: root.clone(),
        log: std::sync::Arc::new(log),
    };
    // Large reads: fewer wakeups per byte for multi-MiB kernels and initramfs files.
    let files = ServeDir::new(&root)
        .append_index_html_on_directories(false)
        .with_buf_chunk_size(256 << 10);
    let app = axum::Router::new()
        .fallback_service(files)
        .layer(middleware::from_fn_with_state(guard, guarded));
    connections::run(listener, app, limits, shutdown).await;
    Ok(())
}

/// Binds `addr`; says whether it is reachable from other machines.
pub async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, bool), ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen { addr, source })?;
    Ok((listener, !addr.ip().is_loopback()))
}

fn status(code: StatusCode) -> Response {
    (code, code.canonical_reason().unwrap_or("")).into_response()
}

/// A regular file inside the served folder, open.
struct Opened {
    file: std::fs::File,
    meta: std::fs::Metadata,
    real: PathBuf,
}

/// The regular file a request path names, if it stays inside `root`.
fn resolve(root: &Path, raw_path: &str) -> Result<Opened, StatusCode> {
    let lower = raw_path.to_ascii_lowercase();
    // Encoded separators and NULs would let one path segment act as several.
    if lower.contains("%2f")
        || lower.contains("%5c")
        || lower.contains("%00")
        || raw_path.contains('\\')
    {
        return Err(StatusCode::BAD_REQUEST);
    }
    let decoded = percent_decode(raw_path).ok_or(StatusCode::BAD_REQUEST)?;
    let mut path = root.to_path_buf();
    for part in decoded.split('/').filter(|p| !p.is_empty()) {
        if part == ".." || part == "." {
            return Err(StatusCode::BAD_REQUEST);
        }
        path.push(part);
    }
    // Symlinks are fine as long as where they lead is still inside the folder. The check is
    // made on the opened file itself, so a link swapped after the check changes nothing.
    let file = std::fs::File::open(&path).map_err(|_| StatusCode::NOT_FOUND)?;
    let real = opened_path(&file)
        .or_else(|| path.canonicalize().ok())
        .ok_or(StatusCode::NOT_FOUND)?;
    if !real.starts_with(root) {
        return Err(StatusCode::NOT_FOUND);
    }
    let meta = file.metadata().map_err(|_| StatusCode::NOT_FOUND)?;
    if !meta.is_file() {
        return Err(StatusCode::NOT_FOUND);
    }
    Ok(Opened { file, meta, real })
}

/// The real path of the regular file `raw_path` would serve from `root` (as [`root`] returns
/// it), if any: the guard every request goes through, for fuzzing and tests.
pub fn resolved_path(root: &Path, raw_path: &str) -> Option<PathBuf> {
    resolve(root, raw_path).ok().map(|opened| opened.real)
}

/// Where an open file really is, from the kernel (one call instead of a walk over every
/// component of the path).
fn opened_path(file: &std::fs::File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The plain case, a GET or HEAD of the whole file with no date conditions, answered here
/// with a body that reads on the runtime thread; ranges and date conditions go to `ServeDir`.
fn whole_file(request: &Request, opened: Opened) -> Option<Response> {
    let headers = request.headers();
    let conditional = [
        header::RANGE,
        header::IF_MODIFIED_SINCE,
        header::IF_UNMODIFIED_SINCE,
        header::IF_MATCH,
    ];
    if conditional.iter().any(|name| headers.contains_key(name)) {
        return None;
    }
    let Opened { file, meta, real } = opened;
    let path = real.as_path();
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, mime.as_ref())
        .header(header::CONTENT_LENGTH, meta.len())
        .header(header::ACCEPT_RANGES, "bytes");
    if let Ok(modified) = meta.modified() {
        builder = builder.header(header::LAST_MODIFIED, httpdate::fmt_http_date(modified));
    }
    let body = if request.method() == Method::HEAD {
        Body::empty()
    } else {
        Body::new(body::FileBody::new(file, meta.len()))
    };
    builder.body(body).ok()
}

/// A strong validator from size and modification time: changes whenever the file does.
fn etag(meta: &std::fs::Metadata) -> Option<String> {
    let modified = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some(format!("\"{:x}-{:x}\"", meta.len(), modified.as_nanos()))
}

async fn guarded(
    State(guard): State<Guard>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = if method != Method::GET && method != Method::HEAD {
        let mut response = status(StatusCode::METHOD_NOT_ALLOWED);
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        response
    } else {
        match resolve(&guard.root, &path) {
            Err(code) => status(code),
            Ok(opened) => {
                let tag = etag(&opened.meta);
                let matches = tag.as_ref().is_some_and(|tag| {
                    request
                        .headers()
                        .get(header::IF_NONE_MATCH)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"))
                });
                let mut response = if matches {
                    Response::builder()
                        .status(StatusCode::NOT_MODIFIED)
                        .body(Body::empty())
                        .expect("a valid response")
                } else if let Some(response) = whole_file(&request, opened) {
                    response
                } else {
                    next.run(request).await
                };
                if let Some(tag) = tag.and_then(|t| HeaderValue::from_str(&t).ok()) {
                    response.headers_mut().insert(header::ETAG, tag);
                }
                response
            }
        }
    };
    let bytes = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (guard.log)(AccessLog {
        peer,
        method: method.to_string(),
        path,
        status: response.status().as_u16(),
        bytes,
        duration: started.elapsed(),
    });
    response
}
