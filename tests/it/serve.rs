//! `kato-image serve`: HTTP semantics (ranges, validators, types), the folder guard (path
//! escapes, encoded slashes, symlinks out), malformed requests, the access log and shutdown.

use crate::common;

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
    start_with(listen, &[], None)
}

/// `serve` with extra flags, and (if given) this open-files limit, as a shell sets it.
fn start_with(listen: &str, flags: &[&str], nofile: Option<u64>) -> Served {
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
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("kato-image"));
    command
        .arg("serve")
        .arg(&root)
        .args(["--listen", listen])
        .args(flags)
        .stderr(Stdio::piped());
    if let Some(limit) = nofile {
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit in the child before exec touches only the child.
        unsafe {
            command.pre_exec(move || {
                let rlimit = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    let mut child = command.spawn().unwrap();
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

/// Raises this process's open-files limit to its hard limit (the flood needs over 1100).
fn raise_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit on this process with a struct it owns.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max.min(65_536);
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

#[test]
fn a_flood_of_idle_connections_does_not_stop_it_answering() {
    raise_open_files();
    // The usual 1024 open files; 1100 connections that send nothing, and a few that send
    // half a header.
    let served = start_with(
        "127.0.0.1:0",
        &["--header-timeout", "2", "--idle-timeout", "4"],
        Some(1024),
    );
    let mut idle = Vec::new();
    for _ in 0..1100 {
        match TcpStream::connect(("127.0.0.1", served.port)) {
            Ok(stream) => idle.push(stream),
            Err(_) => break,
        }
    }
    let mut partial = Vec::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(("127.0.0.1", served.port)).unwrap();
        stream
            .write_all(b"GET /master.ipxe HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        partial.push(stream);
    }
    // During the flood, a new client is answered.
    let started = std::time::Instant::now();
    let (status, _, body) = get(served.port, "/master.ipxe", "");
    assert_eq!((status, body.as_slice()), (200, &b"#!ipxe\nboot\n"[..]));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // Half a header is dropped within the header timeout, silence within the idle one.
    for mut stream in partial.into_iter().chain(idle.drain(..20)) {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut rest = Vec::new();
        // The server closing it ends the read; still open, the read times out instead.
        let ended = stream.read_to_end(&mut rest);
        assert!(ended.is_ok(), "still open after the timeouts: {ended:?}");
    }
    drop(idle);
    // After the flood, still answering.
    let (status, _, _) = get(served.port, "/kernel.vmlinuz", "");
    assert_eq!(status, 200);
}

#[test]
fn a_client_that_half_closes_after_its_request_gets_the_answer() {
    let served = start("127.0.0.1:0");
    for request in [
        &b"GET /kernel.vmlinuz HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n\r\n"[..],
        b"GET /master.ipxe HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let mut stream = TcpStream::connect(("127.0.0.1", served.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let text = String::from_utf8_lossy(&response);
        assert!(
            text.starts_with("HTTP/1.1 206") || text.starts_with("HTTP/1.1 200"),
            "{text}"
        );
    }
}

#[test]
fn a_missing_folder_is_one_line_and_nothing_about_serving() {
    let out = common::kato()
        .args(["serve", "/nonexistent/ipxe", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("/nonexistent/ipxe") && !stderr.contains("serving"),
        "{stderr}"
    );
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
