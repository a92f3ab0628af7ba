//! A small HTTP/1.1 file server on 127.0.0.1 for tests, with faults on demand: error
//! statuses, connections dropped part way, slow transfers. It logs every request so tests can
//! assert what was (not) asked for. Ranges and `If-Range` behave as in real servers.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and no body.
    Status(u16),
    /// Promise the whole length, send this many body bytes, then close.
    DropAfter(u64),
    /// Announce a body of this many bytes, send none, and close.
    Announce(u64),
}

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub if_range: Option<String>,
}

struct State {
    root: PathBuf,
    log: Mutex<Vec<Request>>,
    faults: Mutex<HashMap<String, VecDeque<Fault>>>,
    bytes_per_second: AtomicU64,
    stop: AtomicBool,
}

pub struct Server {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl Server {
    pub fn start(root: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            root: root.to_path_buf(),
            log: Mutex::new(Vec::new()),
            faults: Mutex::new(HashMap::new()),
            bytes_per_second: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let state = shared.clone();
                    std::thread::spawn(move || {
                        let _ = handle(stream, &state);
                    });
                }
            }
        });
        Server { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The next request for `path` (e.g. `/stable/amd64-usr/1.2.3/f.bin`) gets `fault`.
    pub fn fault(&self, path: &str, fault: Fault) {
        self.state
            .faults
            .lock()
            .unwrap()
            .entry(path.to_string())
            .or_default()
            .push_back(fault);
    }

    /// Limits every transfer to about this rate (0: no limit).
    pub fn throttle(&self, bytes_per_second: u64) {
        self.state
            .bytes_per_second
            .store(bytes_per_second, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.log.lock().unwrap().clone()
    }

    pub fn clear_log(&self) {
        self.state.log.lock().unwrap().clear();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn handle(stream: TcpStream, state: &State) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    state.log.lock().unwrap().push(Request {
        method: method.clone(),
        path: path.clone(),
        range: headers.get("range").cloned(),
        if_range: headers.get("if-range").cloned(),
    });
    let mut out = stream;
    let fault = state
        .faults
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(VecDeque::pop_front);
    if let Some(Fault::Status(code)) = fault {
        return write!(
            out,
            "HTTP/1.1 {code} Injected\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }
    if let Some(Fault::Announce(len)) = fault {
        return write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
        );
    }
    let relative = path.trim_start_matches('/');
    let file = state.root.join(relative);
    if relative.split('/').any(|p| p == "..") || !file.is_file() {
        return write!(
            out,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }
    let data = std::fs::read(&file)?;
    let modified = std::fs::metadata(&file)?
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let etag = format!("\"{}-{}\"", data.len(), modified.as_nanos());
    let len = data.len() as u64;
    let mut start = 0;
    let ranged = headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<u64>().ok());
    let validator_ok = headers.get("if-range").is_none_or(|v| *v == etag);
    let status = match ranged {
        Some(from) if validator_ok && from < len => {
            start = from;
            format!(
                "206 Partial Content\r\nContent-Range: bytes {from}-{}/{len}",
                len - 1
            )
        }
        Some(from) if validator_ok && from >= len => {
            return write!(
                out,
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
        _ => "200 OK".to_string(),
    };
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nETag: {etag}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n",
        len - start
    )?;
    if method == "HEAD" {
        return Ok(());
    }
    let mut body = &data[start as usize..];
    if let Some(Fault::DropAfter(n)) = fault {
        body = &body[..(n as usize).min(body.len())];
    }
    let rate = state.bytes_per_second.load(Ordering::SeqCst);
    if rate == 0 {
        out.write_all(body)?;
    } else {
        let chunk = (rate / 20).max(1) as usize;
        for piece in body.chunks(chunk) {
            out.write_all(piece)?;
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    out.flush()?;
    let _ = out.shutdown(std::net::Shutdown::Both);
    let _ = reader.read(&mut [0u8; 1]);
    Ok(())
}
