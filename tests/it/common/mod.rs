//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod aws;
pub mod boot;
pub mod btrfs;
pub mod disk;
pub mod http;
pub mod ignition;
pub mod mirror;
pub mod node;
pub mod registry;
pub mod serve;
pub mod signing;

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn kato() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("kato-image").expect("binary is built");
    cmd.current_dir(repo());
    cmd
}

/// A copy of the repository's profiles and units in a temporary folder, to break on purpose.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        for folder in ["profiles", "units"] {
            let to = dir.path().join(folder);
            std::fs::create_dir(&to).unwrap();
            for entry in std::fs::read_dir(repo().join(folder)).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
        Scratch { dir }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn write(&self, relative: &str, text: &str) -> &Self {
        std::fs::write(self.path(relative), text).unwrap();
        self
    }

    /// `kato-image ARGS --profiles <scratch>/profiles`, run inside the scratch folder.
    pub fn kato(&self, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = kato();
        cmd.current_dir(self.dir.path()).args(args);
        cmd
    }

    /// The config `render --role ROLE` prints, failing the test with its stderr otherwise.
    pub fn rendered(&self, role: &str) -> serde_json::Value {
        let out = self.kato(&["render", "--role", role]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("render prints JSON")
    }
}

/// What `inspect PATH --json EXTRA` prints, failing the test with its stderr otherwise.
pub fn inspect_json(path: &Path, extra: &[&str]) -> serde_json::Value {
    let out = kato()
        .arg("inspect")
        .arg(path)
        .arg("--json")
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "inspect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A port free on 127.0.0.1 right now, for a server the test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether something listens on 127.0.0.1:`port` within 10 s.
pub fn wait_for_port(port: u16) -> bool {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

/// `kato-image publish ami IMAGE --dry-run --json [--parent PARENT]`: the upload plan.
pub fn upload_plan(image: &Path, parent: Option<&Path>) -> serde_json::Value {
    let mut cmd = kato();
    cmd.args(["publish", "ami"])
        .arg(image)
        .args(["--dry-run", "--json"]);
    if let Some(parent) = parent {
        cmd.arg("--parent").arg(parent);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Child processes (servers) killed and reaped when dropped.
#[derive(Default)]
pub struct Children(pub Vec<std::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs an external judge; a missing judge fails the test (`.ci/run` installs them all).
pub fn judge(program: &str, args: &[&str], input: Option<&Path>) -> std::process::Output {
    let mut cmd = Command::new(program);
    cmd.args(args);
    if let Some(path) = input {
        cmd.arg(path);
    }
    cmd.output().unwrap_or_else(|e| {
        panic!("cannot run `{program}` ({e}); .ci/run installs it, or install it yourself")
    })
}

/// The Python with PyYAML that `.ci/run` prepares, or the system's.
pub fn python() -> String {
    std::env::var("KATO_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Decodes the `data:` URLs kato-image writes (percent-encoded, or base64 where shorter).
pub fn decode_data_url(url: &str) -> String {
    String::from_utf8(decode_data_url_bytes(url)).unwrap()
}

pub fn decode_data_url_bytes(url: &str) -> Vec<u8> {
    use base64::Engine;
    if let Some(body) = url.strip_prefix("data:;base64,") {
        return base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
    }
    let body = url.strip_prefix("data:,").expect("a data URL");
    let bytes = body.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&body[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}
