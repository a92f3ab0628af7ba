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

/// Serves `root` on `listener` until `shutdown` completes; calls `log` once per request.
pub async fn serve(
    root: &Path,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    log: impl Fn(AccessLog) + Send + Sync + 'static,
) -> Result<(), ServeError> {
    let root = root.canonicalize().map_err(|source| ServeError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    if !root.is_dir() {
        return Err(ServeError::Root {
            path: root,
            source: std::io::Error::other("not a folder"),
        });
    }
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
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(ServeError::Io)
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

/// The file a request path names, if it stays inside `root`.
fn resolve(root: &Path, raw_path: &str) -> Result<PathBuf, StatusCode> {
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
    // Symlinks are fine as long as where they lead is still inside the folder.
    match path.canonicalize() {
        Ok(real) if real.starts_with(root) => Ok(real),
        Ok(_) => Err(StatusCode::NOT_FOUND),
        Err(_) => Err(StatusCode::NOT_FOUND),
    }
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

/// A strong validator from size and modification time: changes whenever the file does.
fn etag(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
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
            Ok(file) if file.is_dir() => status(StatusCode::NOT_FOUND),
            Ok(file) => {
                let tag = etag(&file);
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
