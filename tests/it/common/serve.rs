//! `kato-image serve` as tests start it.

use std::process::{Command, Stdio};

/// `kato-image serve DIR` on a free loopback port.
pub struct Serve {
    child: std::process::Child,
    pub port: u16,
}

impl Serve {
    pub fn start(dir: &std::path::Path) -> Serve {
        use std::io::BufRead;
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("kato-image"))
            .arg("serve")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stderr.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .expect("serve prints its address");
        // The access log must not fill the pipe: drain it.
        let mut rest = child.stderr.take().unwrap();
        std::thread::spawn(move || std::io::copy(&mut rest, &mut std::io::sink()));
        Serve { child, port }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
