//! Which member of its role a machine is, as `kato-instances` (the script machines run)
//! decides it: from the kernel command line, from EC2 instance tags over IMDSv2 (a fake
//! metadata service on 127.0.0.1 that wants a token, as EC2's does), from the host name.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

/// A fake instance metadata service: a token for a PUT, 401 for a GET without it, the tags
/// it holds (404 for any other, and for all when `tags` is `None`: metadata tags off).
struct Imds {
    url: String,
    log: Arc<Mutex<Vec<String>>>,
}

const TOKEN: &str = "AQAEAtoken";

impl Imds {
    fn start(tags: Option<&[(&str, &str)]>) -> Imds {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let tags: Option<Vec<(String, String)>> = tags.map(|t| {
            t.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        });
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut token = None;
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = header
                        .to_ascii_lowercase()
                        .strip_prefix("x-aws-ec2-metadata-token:")
                    {
                        token = Some(v.trim().to_string());
                    }
                }
                let mut words = line.split_whitespace();
                let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                seen.lock().unwrap().push(format!("{method} {path}"));
                let (status, body) = if method == "PUT" && path == "/latest/api/token" {
                    (200, TOKEN.to_string())
                } else if token.as_deref() != Some(&TOKEN.to_ascii_lowercase()) {
                    (401, String::new())
                } else {
                    let key = path.strip_prefix("/latest/meta-data/tags/instance/");
                    match (key, &tags) {
                        (Some(key), Some(tags)) => match tags.iter().find(|(k, _)| k == key) {
                            Some((_, v)) => (200, v.clone()),
                            None => (404, String::new()),
                        },
                        _ => (404, String::new()),
                    }
                };
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Imds { url, log }
    }

    fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

/// Runs `kato-instances --print zookeeper@.service` with `cmdline` as the kernel command
/// line, `host` as what `hostname` says, and the metadata service at `imds` if any.
fn choose(dir: &Path, cmdline: &str, host: &str, imds: Option<&Imds>) -> (bool, String) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("hostname");
    std::fs::write(&fake, format!("#!/bin/sh\necho {host}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cmdline_file = dir.join("cmdline");
    std::fs::write(&cmdline_file, cmdline).unwrap();
    let mut command = Command::new("sh");
    command
        .arg(script())
        .args(["--print", "zookeeper@.service"])
        .env("KATO_CMDLINE", &cmdline_file)
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        );
    match imds {
        Some(imds) => command.env("KATO_IMDS", &imds.url),
        None => command.env_remove("KATO_IMDS"),
    };
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_string())
}

fn script() -> PathBuf {
    common::repo().join("src/role/scripts/kato-instances.sh")
}

#[test]
fn the_kernel_command_line_wins_then_ec2_tags_then_the_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let base = "console=ttyS0 flatcar.first_boot=detected";
    // The host name's trailing number.
    assert_eq!(
        choose(dir.path(), base, "master-2", None),
        (true, "instance=2 hostname=master-2 source=hostname".into())
    );
    // boot.ipxe's arguments beat the host name.
    assert_eq!(
        choose(
            dir.path(),
            &format!("{base} kato.instance=3 kato.hostname=master-3"),
            "localhost",
            None
        ),
        (true, "instance=3 hostname=master-3 source=kernel".into())
    );
    // On EC2 the host name is ip-10-0-1-23: the tags decide.
    let imds = Imds::start(Some(&[
        ("kato:instance", "1"),
        ("kato:hostname", "master-1"),
    ]));
    assert_eq!(
        choose(dir.path(), base, "ip-10-0-1-23", Some(&imds)),
        (true, "instance=1 hostname=master-1 source=ec2-tags".into())
    );
    let asked = imds.requests();
    assert_eq!(asked[0], "PUT /latest/api/token", "IMDSv2: a token first");
    assert!(asked.contains(&"GET /latest/meta-data/tags/instance/kato:instance".to_string()));
    // Metadata tags off on EC2: every tag is 404, and the host name is not trusted: EC2's
    // ip-10-0-1-23 would make member 23. One line says what is missing.
    let off = Imds::start(None);
    for (cmdline, host) in [
        (format!("{base} flatcar.oem.id=ec2"), "ip-10-0-1-23"),
        (base.to_string(), "master-5"),
    ] {
        let (ok, text) = choose(dir.path(), &cmdline, host, Some(&off));
        assert!(!ok, "{host}: {text}");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains("kato:instance tag")
                && text.contains("InstanceMetadataTags=enabled")
                && text.contains("not starting: zookeeper@.service"),
            "{text}"
        );
    }
    // An EC2-shaped host name off EC2 is refused the same way.
    let (ok, text) = choose(dir.path(), base, "ip-172-31-5-17", None);
    assert!(!ok && text.contains("kato:instance tag"), "{text}");
    // Without a number anywhere: one line, and nothing is started.
    let (ok, text) = choose(dir.path(), base, "ip-10-0-1-x", Some(&off));
    assert!(!ok);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("no member number for this machine")
            && text.contains("not starting: zookeeper@.service"),
        "{text}"
    );
    // A number ZooKeeper cannot take is refused.
    let (ok, text) = choose(dir.path(), &format!("{base} kato.instance=300"), "m", None);
    assert!(!ok && text.contains("not 1 to 255"), "{text}");
    // Zero-padded host names are common: master-02 is member 2; master-00 is no member.
    assert_eq!(
        choose(dir.path(), base, "master-02", None),
        (true, "instance=2 hostname=master-02 source=hostname".into())
    );
    assert_eq!(
        choose(dir.path(), &format!("{base} kato.instance=007"), "m", None),
        (true, "instance=7 hostname=m source=kernel".into())
    );
    for host in ["master-00", "master-0256", "master-99999999999999999999"] {
        let (ok, text) = choose(dir.path(), base, host, None);
        assert!(!ok && text.contains("not 1 to 255"), "{host}: {text}");
    }
}

#[test]
fn a_metadata_service_that_wants_a_token_is_not_asked_without_one() {
    let imds = Imds::start(Some(&[("kato:instance", "4")]));
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!(
            "{}/latest/meta-data/tags/instance/kato:instance",
            imds.url
        ))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "401",
        "the fake wants IMDSv2"
    );
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        choose(dir.path(), "console=ttyS0", "ip-1-2-3-4", Some(&imds)),
        (
            true,
            "instance=4 hostname=ip-1-2-3-4 source=ec2-tags".into()
        )
    );
}
