//! `kato-image serve`: HTTP semantics (ranges, validators, types), the folder guard (path
//! escapes, encoded slashes, symlinks out), malformed requests, the access log and shutdown.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::Duration;

struct Served {
    child: Child,
    port: u16,
    /// What serve printed before it was ready.
    banner: String,
    stderr: BufReader<std::process::ChildStderr>,
    _dir: tempfile::TempDir,
}

fn start(listen: &str) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ipxe");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("master.ipxe"), "#!ipxe\nboot\n").unwrap();
    std::fs::write(
        root.join("kernel.vmlinuz"),
        (0..100_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    std::fs::write(dir.path().join("secret"), "outside the folder").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret"), root.join("escape")).unwrap();
    std::os::unix::fs::symlink("master.ipxe", root.join("alias.ipxe")).unwrap();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kato-image"))
        .arg("serve")
        .arg(&root)
        .args(["--listen", listen])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut port = 0;
    let mut banner = String::new();
    for _ in 0..3 {
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        banner.push_str(&line);
        if let Some(rest) = line.split("http://").nth(1) {
            port = rest
                .split(['/', ' '])
                .next()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            break;
        }
    }
    assert!(port > 0, "serve printed no address");
    Served {
        child,
        port,
        banner,
        stderr,
        _dir: dir,
    }
}

/// Sends raw bytes, returns (status, headers lower-cased, body).
fn raw(port: u16, request: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, response[split + 4..].to_vec())
}

fn get(port: u16, path: &str, headers: &str) -> (u16, String, Vec<u8>) {
    raw(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n").as_bytes(),
    )
}

#[test]
fn serves_files_with_ranges_validators_and_types() {
    let served = start("127.0.0.1:0");
    let port = served.port;
    let (status, head, body) = get(port, "/master.ipxe", "");
    assert_eq!((status, body.as_slice()), (200, &b"#!ipxe\nboot\n"[..]));
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .expect("an ETag")
        .to_string();
    assert!(head.contains("content-type: "), "{head}");

    let (status, _, body) = get(port, "/master.ipxe", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!((status, body.len()), (304, 0));

    let (status, head, body) = get(port, "/kernel.vmlinuz", "Range: bytes=10-19\r\n");
    assert_eq!(status, 206);
    assert!(head.contains("content-range: bytes 10-19/100000"), "{head}");
    assert_eq!(
        body,
        (10..20u32).map(|i| (i % 251) as u8).collect::<Vec<_>>()
    );

    let (status, head, body) = raw(
        port,
        b"HEAD /kernel.vmlinuz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((status, body.len()), (200, 0));
    assert!(head.contains("content-length: 100000"), "{head}");

    let (status, _, body) = get(port, "/alias.ipxe", "");
    assert_eq!(
        (status, body.as_slice()),
        (200, &b"#!ipxe\nboot\n"[..]),
        "a symlink inside the folder is served"
    );
    let (status, _, _) = get(port, "/missing", "");
    assert_eq!(status, 404);
}

#[test]
fn nothing_outside_the_folder_is_reachable() {
    let served = start("127.0.0.1:0");
    for path in [
        "/../secret",
        "/%2e%2e/secret",
        "/a/..%2fsecret",
        "/..%2Fsecret",
        "/%2e%2e%2fsecret",
        "/escape",
        "/.%2e/secret",
        "/..\\secret",
    ] {
        let (status, _, body) = get(served.port, path, "");
        assert!(matches!(status, 400 | 404), "{path}: {status}");
        assert!(
            !String::from_utf8_lossy(&body).contains("outside the folder"),
            "{path} leaked the file"
        );
    }
}

#[test]
fn malformed_requests_and_other_methods_are_refused() {
    let served = start("127.0.0.1:0");
    let (status, head, _) = raw(
        served.port,
        b"POST /master.ipxe HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 405);
    assert!(head.contains("allow: get, head"), "{head}");
    let (status, _, _) = raw(served.port, b"GARBAGE\r\n\r\n");
    assert_eq!(status, 400);
}

#[test]
fn logs_each_request_and_stops_cleanly_on_sigterm() {
    let mut served = start("127.0.0.1:0");
    get(served.port, "/master.ipxe", "");
    let mut line = String::new();
    served.stderr.read_line(&mut line).unwrap();
    assert!(line.contains("GET /master.ipxe 200 12"), "{line}");
    // SIGTERM: a clean exit, status 0.
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(served.child.id() as i32, libc::SIGTERM) };
    let status = served.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn loopback_by_default_and_a_warning_when_wider() {
    let mut narrow = start("127.0.0.1:0");
    assert!(!narrow.banner.contains("WARNING"), "{}", narrow.banner);
    let mut wide = start("0.0.0.0:0");
    assert!(
        wide.banner.contains("WARNING: listening on 0.0.0.0"),
        "{}",
        wide.banner
    );
    for served in [&mut narrow, &mut wide] {
        let _ = served.child.kill();
        let _ = served.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
