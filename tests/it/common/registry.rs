//! A real registry for pull tests: Debian's docker-registry (distribution) on 127.0.0.1 behind
//! token authentication (tests/fixtures/registry/token_server.py), images pushed into it by
//! skopeo from OCI layouts the tests generate.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

pub const USER: &str = "kato";
pub const PASSWORD: &str = "pull-s3cret";

pub struct Registry {
    pub dir: tempfile::TempDir,
    pub port: u16,
    _children: super::Children,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Registry {
    /// A registry that wants a token from the token server, which wants USER/PASSWORD.
    pub fn start() -> Registry {
        Self::start_with(false)
    }

    /// The same, with the token server also giving anonymous clients pull tokens.
    pub fn start_anonymous() -> Registry {
        Self::start_with(true)
    }

    fn start_with(anonymous: bool) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        run(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-sha256",
                "-days",
                "30",
                "-subj",
                "/CN=kato-test-token",
                "-keyout",
            ])
            .arg(path("key.pem"))
            .arg("-out")
            .arg(path("cert.pem")));
        let mut children = super::Children::default();
        let mut tokens = Command::new("python3")
            .arg(super::repo().join("tests/fixtures/registry/token_server.py"))
            .args([
                "--port",
                "0",
                "--issuer",
                "kato-test",
                "--service",
                "kato-registry",
            ])
            .args(["--user", USER, "--password", PASSWORD])
            .args(if anonymous {
                &["--allow-anonymous"][..]
            } else {
                &[]
            })
            .arg("--key")
            .arg(path("key.pem"))
            .arg("--cert")
            .arg(path("cert.pem"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(tokens.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let token_port: u16 = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("token server said {line:?}"));
        children.0.push(tokens);
        let port = super::free_port();
        std::fs::write(
            path("config.yml"),
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {store}\n\
                 http:\n  addr: 127.0.0.1:{port}\n\
                 auth:\n  token:\n    realm: http://127.0.0.1:{token_port}/token\n    service: kato-registry\n    issuer: kato-test\n    rootcertbundle: {cert}\n",
                store = path("store").display(),
                cert = path("cert.pem").display(),
            ),
        )
        .unwrap();
        let registry = Command::new("docker-registry")
            .arg("serve")
            .arg(path("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry)");
        children.0.push(registry);
        assert!(
            super::wait_for_port(port),
            "docker-registry did not start on port {port}"
        );
        Registry {
            dir,
            port,
            _children: children,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes the OCI layout `layout` (tag `v1`) as `repository:tag`, every platform.
    pub fn push(&self, layout: &Path, repository: &str, tag: &str) {
        run(Command::new("skopeo")
            .args(["copy", "--all", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("--dest-creds={USER}:{PASSWORD}"))
            .arg(format!("oci:{}:v1", layout.display()))
            .arg(format!("docker://{}/{repository}:{tag}", self.host())));
    }

    /// A Docker config folder holding this registry's credentials (for `DOCKER_CONFIG`).
    pub fn docker_config(&self) -> PathBuf {
        use base64::Engine;
        let dir = self.dir.path().join("docker");
        std::fs::create_dir_all(&dir).unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
        std::fs::write(
            dir.join("config.json"),
            format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, self.host()),
        )
        .unwrap();
        dir
    }

    /// The file the registry stores blob `digest` in.
    pub fn stored_blob(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("store/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", kato_image::cache::hex(&Sha256::digest(bytes)))
}

/// One platform's image in a generated layout: its layers as pushed (gzip) and unpacked.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub architecture: String,
    pub manifest_digest: String,
    pub config_digest: String,
    /// Digests of the gzip'd layer blobs.
    pub layers: Vec<String>,
    /// Digests of the uncompressed layer tars (the config's diff_ids).
    pub diff_ids: Vec<String>,
}

/// Writes an OCI image layout at `dir` with tag `v1`: one image per architecture, each with
/// layers of the given sizes (random bytes, so they do not compress away).
pub fn oci_layout(
    dir: &Path,
    architectures: &[&str],
    layer_sizes: &[usize],
    seed: u64,
) -> (String, Vec<BuiltImage>) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> String {
        let digest = sha256(bytes);
        std::fs::write(blobs.join(&digest[7..]), bytes).unwrap();
        digest
    };
    let mut images = Vec::new();
    let mut descriptors = Vec::new();
    for (a, architecture) in architectures.iter().enumerate() {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        let mut layer_descriptors = Vec::new();
        for (l, size) in layer_sizes.iter().enumerate() {
            let data =
                super::signing::pseudo_random(*size, seed * 1000 + a as u64 * 100 + l as u64);
            let mut tar = tar::Builder::new(Vec::new());
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_cksum();
            tar.append_data(&mut header, format!("layer{l}.bin"), data.as_slice())
                .unwrap();
            let tar = tar.into_inner().unwrap();
            diff_ids.push(sha256(&tar));
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&tar).unwrap();
            let gz = gz.finish().unwrap();
            let digest = put(&gz);
            layer_descriptors.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest, "size": gz.len(),
            }));
            layers.push(digest);
        }
        let config = serde_json::json!({
            "architecture": architecture, "os": "linux",
            "config": {"Cmd": ["/layer0.bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        })
        .to_string();
        let config_digest = put(config.as_bytes());
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": layer_descriptors,
        })
        .to_string();
        let manifest_digest = put(manifest.as_bytes());
        descriptors.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest.len(),
            "platform": {"architecture": architecture, "os": "linux"},
        }));
        images.push(BuiltImage {
            architecture: architecture.to_string(),
            manifest_digest,
            config_digest,
            layers,
            diff_ids,
        });
    }
    let inner = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": descriptors,
    })
    .to_string();
    let index_digest = put(inner.as_bytes());
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": index_digest, "size": inner.len(),
            "annotations": {"org.opencontainers.image.ref.name": "v1"},
        }],
    });
    std::fs::write(dir.join("index.json"), top.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    (index_digest, images)
}
