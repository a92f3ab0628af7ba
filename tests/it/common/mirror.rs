//! A Flatcar release mirror on 127.0.0.1: `stable/amd64-usr/{current,1.2.3}/` with
//! version.txt, artifacts, signatures made by GnuPG, DIGESTS and DIGESTS.asc.

use std::path::PathBuf;
use std::process::Output;

use sha2::{Digest, Sha512};

use super::http::Server;
use super::signing::fixtures;

pub const IMAGE: &str = "flatcar_production_image.bin.bz2";
pub const VERSION: &str = "1.2.3";

pub struct Mirror {
    pub root: tempfile::TempDir,
    pub cache: tempfile::TempDir,
    pub server: Server,
}

pub fn sha512_hex(data: &[u8]) -> String {
    kato_image::cache::hex(&Sha512::digest(data))
}

pub fn digests(file: &str, data: &[u8]) -> String {
    format!(
        "# MD5 HASH\n{}  {file}\n# SHA1 HASH\n{}  {file}\n# SHA512 HASH\n{}  {file}\n",
        "0".repeat(32),
        "0".repeat(40),
        sha512_hex(data)
    )
}

impl Mirror {
    pub fn new() -> Mirror {
        let root = tempfile::tempdir().unwrap();
        for version in ["current", VERSION] {
            let dir = root.path().join("stable/amd64-usr").join(version);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("version.txt"),
                format!("FLATCAR_BUILD=1\nFLATCAR_BRANCH=2\nFLATCAR_PATCH=3\nFLATCAR_VERSION={VERSION}\n"),
            )
            .unwrap();
        }
        let server = Server::start(root.path());
        Mirror {
            root,
            cache: tempfile::tempdir().unwrap(),
            server,
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.root.path().join("stable/amd64-usr").join(VERSION)
    }

    pub fn url_path(file: &str) -> String {
        format!("/stable/amd64-usr/{VERSION}/{file}")
    }

    /// Publishes `data` as `file` with `signature`, DIGESTS of `digested` and, if asked, a
    /// clear-signed DIGESTS.asc.
    pub fn publish(&self, file: &str, data: &[u8], signature: &[u8], digested: &[u8], asc: bool) {
        let dir = self.dir();
        std::fs::write(dir.join(file), data).unwrap();
        std::fs::write(dir.join(format!("{file}.sig")), signature).unwrap();
        let text = digests(file, digested);
        std::fs::write(dir.join(format!("{file}.DIGESTS")), &text).unwrap();
        if asc {
            std::fs::write(
                dir.join(format!("{file}.DIGESTS.asc")),
                fixtures().clearsign(&text),
            )
            .unwrap();
        }
    }

    pub fn publish_artifact(&self, signature: &str) -> Vec<u8> {
        let data = std::fs::read(&fixtures().artifact).unwrap();
        self.publish(IMAGE, &data, &fixtures().signature(signature), &data, true);
        data
    }

    pub fn fetch(&self, extra: &[&str]) -> Output {
        let template = format!("{}{{channel}}/{{board}}/{{version}}/", self.server.url());
        let mut cmd = super::kato();
        cmd.args([
            "fetch",
            "--json",
            "--release-url",
            &template,
            "--retry-delay-ms",
            "20",
        ])
        .arg("--cache")
        .arg(self.cache.path())
        .arg("--keyring")
        .arg(&fixtures().keyring)
        .args(extra);
        cmd.output().unwrap()
    }

    pub fn blobs(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.cache.path().join("blobs/sha512")) {
            Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        }
    }

    pub fn artifact_requests(&self) -> Vec<super::http::Request> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| r.path == Mirror::url_path(IMAGE))
            .collect()
    }
}

impl Mirror {
    /// `{server}/{channel}/{board}/{version}/`, for --release-url.
    pub fn template(&self) -> String {
        format!("{}{{channel}}/{{board}}/{{version}}/", self.server.url())
    }

    /// Publishes `file` (read from disk) as the disk image, and as the EC2 image too (as
    /// the stand-in releases do), signed by the good subkey.
    pub fn publish_image(&self, file: &std::path::Path) {
        let data = std::fs::read(file).unwrap();
        let signature = fixtures().sign(file);
        self.publish(IMAGE, &data, &signature, &data, true);
        self.publish(
            kato_image::release::AMI_IMAGE_FILE,
            &data,
            &signature,
            &data,
            true,
        );
    }
}

impl Mirror {
    /// A mirror publishing the disk image `image`, bzip2'd and signed.
    pub fn with_image(image: &std::path::Path) -> Mirror {
        let mirror = Mirror::new();
        let compressed = mirror.cache.path().join("image.bin.bz2");
        let out = std::process::Command::new("bzip2")
            .arg("-c")
            .arg(image)
            .output()
            .unwrap();
        std::fs::write(&compressed, out.stdout).unwrap();
        mirror.publish_image(&compressed);
        std::fs::remove_file(&compressed).unwrap();
        mirror
    }

    /// `build --json` from this mirror into `out`, with its cache and key, at a fixed time;
    /// `cmd` is `kato()` or a scratch project's.
    pub fn build_with(
        &self,
        mut cmd: assert_cmd::Command,
        out: &std::path::Path,
        extra: &[&str],
    ) -> Output {
        cmd.args([
            "build",
            "--json",
            "--release-url",
            &self.template(),
            "--retry-delay-ms",
            "20",
        ])
        .arg("--cache")
        .arg(self.cache.path())
        .arg("--keyring")
        .arg(&fixtures().keyring)
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap()
    }
}
