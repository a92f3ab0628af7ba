//! AWS on loopback: moto's server, and a recording proxy in front of it
//! (tests/fixtures/moto/recording_proxy.py) that logs what was sent and can throttle or
//! answer with expired credentials.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A secret the tests use, to check it never appears in any output.
pub const SECRET: &str = "kato-test-secret-0123456789";

pub struct Aws {
    pub dir: tempfile::TempDir,
    pub proxy_port: u16,
    _children: super::Children,
}

impl Aws {
    /// moto plus the proxy; `proxy_args` go to the proxy (`--throttle N`, `--expired`).
    pub fn start(proxy_args: &[&str]) -> Aws {
        Aws::start_with(&[], proxy_args)
    }

    /// Like `start`, with `moto_args` for tests/fixtures/moto/server.py, which runs moto with
    /// EBS's block size and snapshots that stay pending until completed
    /// (`--complete-after S`, `--complete-as STATE`, `--ebs-block-size N`).
    pub fn start_with(moto_args: &[&str], proxy_args: &[&str]) -> Aws {
        let dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        let server = Command::new(super::python())
            .arg(super::repo().join("tests/fixtures/moto/server.py"))
            .args(moto_args)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
            .stdout(Stdio::null())
            // moto's own log, for reading when a test fails.
            .stderr(std::fs::File::create(dir.path().join("moto.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{} ({e}); scripts/install-test-deps installs moto",
                    super::python()
                )
            });
        let mut children = super::Children(vec![server]);
        assert!(
            super::wait_for_port(port),
            "moto did not start on port {port}: is it installed for {} \
             (`eval \"$(scripts/install-test-deps)\"` sets KATO_TEST_PYTHON)?",
            super::python()
        );
        let mut proxy = Command::new(super::python())
            .arg(super::repo().join("tests/fixtures/moto/recording_proxy.py"))
            .arg("--upstream")
            .arg(format!("http://127.0.0.1:{port}"))
            .arg("--log")
            .arg(dir.path().join("requests.jsonl"))
            .args(proxy_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(proxy.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let proxy_port = line
            .trim()
            .strip_prefix("listening ")
            .unwrap()
            .parse()
            .unwrap();
        children.0.push(proxy);
        Aws {
            dir,
            proxy_port,
            _children: children,
        }
    }

    /// `kato-image ARGS` with credentials from the environment, pointed at the proxy, and no
    /// way to reach real AWS (no config files, no instance metadata).
    pub fn kato<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> std::process::Output {
        let endpoint = format!("http://127.0.0.1:{}", self.proxy_port);
        kato_at(&endpoint, &self.dir.path().join("home"), args)
    }

    /// Every request the proxy saw, in order.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        let path: PathBuf = self.dir.path().join("requests.jsonl");
        match std::fs::read_to_string(&path) {
            Ok(text) => text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    pub fn clear(&self) {
        let _ = std::fs::remove_file(self.dir.path().join("requests.jsonl"));
    }
}

pub fn header<'a>(request: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    request["headers"][name].as_str()
}

/// `kato-image ARGS` with test credentials, pointed at `endpoint`, with `home` as HOME and no
/// way to reach real AWS (no config files, no instance metadata).
pub fn kato_at<S: AsRef<std::ffi::OsStr>>(
    endpoint: &str,
    home: &std::path::Path,
    args: &[S],
) -> std::process::Output {
    std::fs::create_dir_all(home).unwrap();
    super::kato()
        .args(args)
        .env("HOME", home)
        .env("AWS_ACCESS_KEY_ID", "AKIDKATOTEST")
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", home.join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("none"))
        .output()
        .unwrap()
}
