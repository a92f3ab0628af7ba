//! Signed provenance and `kato-image verify`, judged by tools that share nothing with ours:
//! `gpg --verify` and `ssh-keygen -Y verify` on the detached manifest signatures and on the
//! DSSE pre-authentication encoding, securesystemslib (in-toto's signing library) on the
//! DSSE envelope, a JSON Schema validator on the statement (schema restated from the in-toto
//! and SLSA specifications in tests/fixtures/provenance/), and b3sum on the subjects.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use common::disk::fixture;
use common::mirror::Mirror;
use serde_json::Value;

const BUILDER: &str = "https://ci.example/kato/pipelines/42";

/// Keys a CI job would hold: a passphrase-protected OpenPGP key (and its public half), an
/// OpenSSH Ed25519 key (and an allowed_signers file), and keys of someone else.
struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn new() -> Keys {
        let dir = tempfile::tempdir().unwrap();
        let script = r#"
set -euo pipefail
cd "$DIR"
export GNUPGHOME="$DIR/gnupg"
mkdir -m 700 gnupg
G() { gpg --batch --yes --quiet --pinentry-mode loopback "$@" 2>/dev/null; }
G --passphrase 'correct horse' --quick-gen-key 'Kato CI <ci@kato.test>' ed25519 sign never
G --passphrase 'correct horse' --armor --export-secret-keys ci@kato.test > ci.key.asc
gpg --armor --export ci@kato.test > ci.pub.asc
G --passphrase '' --quick-gen-key 'Someone Else <else@kato.test>' ed25519 sign never
G --passphrase '' --armor --export-secret-keys else@kato.test > else.key.asc
gpg --armor --export else@kato.test > else.pub.asc
printf 'correct horse\n' > passphrase
ssh-keygen -q -t ed25519 -N '' -C ci@kato.test -f ci_ssh
ssh-keygen -q -t ed25519 -N 'locked' -C ci@kato.test -f locked_ssh
ssh-keygen -q -t ed25519 -N '' -C else@kato.test -f else_ssh
printf 'ci@kato.test namespaces="kato-image" %s\n' "$(cut -d' ' -f1,2 ci_ssh.pub)" > allowed_signers
printf 'else@kato.test %s\n' "$(cut -d' ' -f1,2 else_ssh.pub)" > else_allowed_signers
"#;
        let out = Command::new("bash")
            .arg("-c")
            .arg(script)
            .env("DIR", dir.path())
            .output()
            .expect("bash, gpg and ssh-keygen");
        assert!(
            out.status.success(),
            "keys: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Keys { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `gpg --verify SIG DATA` with only `public` trusted; true when gpg says it is good.
    fn gpg_verifies(&self, public: &str, signature: &Path, data: &Path) -> bool {
        let home = tempfile::tempdir().unwrap();
        let gpg = |args: &[&std::ffi::OsStr]| {
            Command::new("gpg")
                .env("GNUPGHOME", home.path())
                .args(["--batch", "--quiet"])
                .args(args)
                .output()
                .unwrap()
        };
        assert!(
            gpg(&["--import".as_ref(), self.path(public).as_os_str()])
                .status
                .success()
        );
        gpg(&["--verify".as_ref(), signature.as_os_str(), data.as_os_str()])
            .status
            .success()
    }
}

struct Build {
    _mirror: Mirror,
    out: tempfile::TempDir,
}

impl Build {
    fn path(&self, name: &str) -> PathBuf {
        self.out.path().join(name)
    }

    fn json(&self, name: &str) -> Value {
        serde_json::from_slice(&std::fs::read(self.path(name)).unwrap()).unwrap()
    }

    fn verify(&self, image: &str, extra: &[&std::ffi::OsStr]) -> Output {
        common::kato()
            .arg("verify")
            .arg(self.path(image))
            .args(extra)
            .output()
            .unwrap()
    }
}

fn build(extra: &[&std::ffi::OsStr]) -> Build {
    build_from(Mirror::with_image(fixture()), extra)
}

fn build_from(mirror: Mirror, extra: &[&std::ffi::OsStr]) -> Build {
    let out = tempfile::tempdir().unwrap();
    let args: Vec<&str> = extra.iter().map(|a| a.to_str().unwrap()).collect();
    let result = mirror.build_with(
        common::kato(),
        out.path(),
        &[&["--role", "master", "--builder-id", BUILDER][..], &args].concat(),
    );
    assert!(
        result.status.success(),
        "build: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    Build {
        _mirror: mirror,
        out,
    }
}

fn b3sum(path: &Path) -> String {
    let out = Command::new("b3sum")
        .arg("--no-names")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    kato_image::cache::hex(&sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// The schema judge: Python's jsonschema on the statement.
fn schema_valid(statement: &Path) {
    let schema = common::repo().join("tests/fixtures/provenance/statement-v1.schema.json");
    let out = Command::new(common::python())
        .args(["-c", "import json,sys,jsonschema; jsonschema.validate(json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))); print('valid')"])
        .arg(statement)
        .arg(schema)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "schema: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn envelope(b: &Build) -> (Value, Vec<u8>, Vec<u8>) {
    let line = std::fs::read_to_string(b.path("master.intoto.jsonl")).unwrap();
    assert_eq!(line.lines().count(), 1, "one envelope per line");
    let envelope: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(envelope["payloadType"], "application/vnd.in-toto+json");
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64.decode(envelope["payload"].as_str().unwrap()).unwrap();
    let sig = b64
        .decode(envelope["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    (envelope, payload, sig)
}

/// The DSSE pre-authentication encoding, written here from the DSSE protocol document.
fn pae(payload: &[u8]) -> Vec<u8> {
    let kind = "application/vnd.in-toto+json";
    let mut out = format!("DSSEv1 {} {kind} {} ", kind.len(), payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

#[test]
fn an_openpgp_signed_build_verifies_with_gpg_and_its_statement_says_what_went_in() {
    let keys = Keys::new();
    let b = build(&[
        "--sign-key".as_ref(),
        keys.path("ci.key.asc").as_os_str(),
        "--sign-passphrase-file".as_ref(),
        keys.path("passphrase").as_os_str(),
    ]);
    // The manifest's detached signature, as Flatcar's .sig files: gpg checks it unchanged.
    let manifest = b.path("master.manifest.json");
    let sig = b.path("master.manifest.json.sig");
    assert!(keys.gpg_verifies("ci.pub.asc", &sig, &manifest));
    assert!(!keys.gpg_verifies("else.pub.asc", &sig, &manifest));
    // The DSSE signature is an OpenPGP signature over the PAE of the statement.
    let (envelope, payload, signature) = envelope(&b);
    assert_eq!(
        payload,
        std::fs::read(b.path("master.provenance.json")).unwrap()
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pae"), pae(&payload)).unwrap();
    std::fs::write(dir.path().join("pae.sig"), &signature).unwrap();
    assert!(keys.gpg_verifies(
        "ci.pub.asc",
        &dir.path().join("pae.sig"),
        &dir.path().join("pae")
    ));
    let statement: Value = serde_json::from_slice(&payload).unwrap();
    schema_valid(&b.path("master.provenance.json"));
    // Subjects: what the build wrote, with digests the reference tools agree with.
    let subject = |name: &str| {
        statement["subject"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no subject {name}"))
    };
    assert_eq!(
        subject("master.raw")["digest"]["blake3"],
        b3sum(&b.path("master.raw"))
    );
    assert_eq!(
        subject("master.manifest.json")["digest"]["sha256"],
        sha256_file(&manifest)
    );
    // Dependencies: the vendor image with its signer, every profile and unit file.
    let deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    let vendor = deps
        .iter()
        .find(|d| d["annotations"]["kind"] == "vendor")
        .unwrap();
    let m = b.json("master.manifest.json");
    assert_eq!(vendor["digest"]["sha512"], m["vendor"][0]["sha512"]);
    assert_eq!(
        vendor["annotations"]["signerPrimaryFingerprint"],
        m["vendor"][0]["signature"]["primary_fingerprint"]
    );
    assert!(
        vendor["uri"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    let profile_digest = sha256_file(&common::repo().join("profiles/master.yaml"));
    assert!(deps.iter().any(|d| d["name"] == "master.yaml" && d["digest"]["sha256"] == profile_digest.as_str()));
    let unit_digest = sha256_file(&common::repo().join("units/mesos-master.service"));
    assert!(
        deps.iter().any(|d| d["name"] == "mesos-master.service"
            && d["digest"]["sha256"] == unit_digest.as_str())
    );
    let run = &statement["predicate"]["runDetails"];
    assert_eq!(run["builder"]["id"], BUILDER);
    assert_eq!(
        run["metadata"]["startedOn"], "2023-11-14T22:13:20Z",
        "from SOURCE_DATE_EPOCH"
    );
    assert_eq!(run["metadata"]["invocationId"], m["build_id"]);
    assert_eq!(
        envelope["signatures"][0]["keyid"].as_str().unwrap().len(),
        40
    );

    // A consumer's check before launching: every partition, signature and digest.
    let out = b.verify(
        "master.raw",
        &[
            "--key".as_ref(),
            keys.path("ci.pub.asc").as_os_str(),
            "--json".as_ref(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["signature"], "verified");
    let parts = report["partitions"].as_array().unwrap();
    let part = |name: &str| parts.iter().find(|p| p["name"] == name).unwrap().clone();
    assert_eq!(part("USR-A")["vendor"], true);
    assert_eq!(part("OEM")["vendor"], false);
    assert_eq!(part("OEM")["as_built"], true);

    // Someone else's key does not vouch for it.
    let out = b.verify(
        "master.raw",
        &["--key".as_ref(), keys.path("else.pub.asc").as_os_str()],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no signature by a trusted key"));
}

#[test]
fn tampering_is_named_and_fails_verify() {
    let keys = Keys::new();
    let ssh_key = keys.path("ci_ssh");
    let b = build(&["--sign-key".as_ref(), ssh_key.as_os_str()]);
    let allowed = keys.path("allowed_signers");
    let signers: [&std::ffi::OsStr; 2] = ["--allowed-signers".as_ref(), allowed.as_os_str()];
    assert!(b.verify("master.raw", &signers).status.success());

    // One byte flipped inside USR-A: named, non-zero.
    let image = b.path("master.raw");
    let table = Command::new("sgdisk")
        .arg("-i")
        .arg("3")
        .arg(&image)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("USR-A"), "{text}");
    let first: u64 = text
        .lines()
        .find(|l| l.starts_with("First sector"))
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    let original = std::fs::read(&image).unwrap();
    let mut flipped = original.clone();
    flipped[(first * 512 + 4096) as usize] ^= 1;
    std::fs::write(&image, &flipped).unwrap();
    let out = b.verify("master.raw", &signers);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("(USR-A) differs"), "{stderr}");
    std::fs::write(&image, &original).unwrap();

    // The manifest edited after signing: the detached signature and the statement disagree.
    let manifest = b.path("master.manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replacen("\"role\": \"master\"", "\"role\": \"master\" ", 1),
    )
    .unwrap();
    let out = b.verify("master.raw", &signers);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("master.manifest.json"), "{stderr}");
    std::fs::write(&manifest, text).unwrap();

    // Signed by a key the consumer does not allow.
    let other = keys.path("else_allowed_signers");
    let out = b.verify(
        "master.raw",
        &["--allowed-signers".as_ref(), other.as_os_str()],
    );
    assert!(!out.status.success());

    // No signature at all, when a key is given: an unsigned build of the same inputs.
    let unsigned = build(&[]);
    assert!(!unsigned.path("master.intoto.jsonl").exists());
    assert!(
        unsigned.verify("master.raw", &[]).status.success(),
        "unsigned is reported, not refused"
    );
    let out = unsigned.verify("master.raw", &signers);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("was not signed"));
}

#[test]
fn an_ssh_signed_build_verifies_with_ssh_keygen_and_securesystemslib() {
    let keys = Keys::new();
    let b = build(&["--sign-key".as_ref(), keys.path("ci_ssh").as_os_str()]);
    let manifest = std::fs::File::open(b.path("master.manifest.json")).unwrap();
    let out = Command::new("ssh-keygen")
        .args([
            "-Y",
            "verify",
            "-n",
            "kato-image",
            "-I",
            "ci@kato.test",
            "-f",
        ])
        .arg(keys.path("allowed_signers"))
        .arg("-s")
        .arg(b.path("master.manifest.json.sig"))
        .stdin(manifest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ssh-keygen: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // in-toto's signing library verifies the envelope with the Ed25519 public key.
    let public = std::fs::read_to_string(keys.path("ci_ssh.pub")).unwrap();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(public.split_whitespace().nth(1).unwrap())
        .unwrap();
    let raw = &blob[blob.len() - 32..];
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let (envelope, _, _) = envelope(&b);
    let keyid = envelope["signatures"][0]["keyid"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(keyid.starts_with("SHA256:"));
    let check = |key_hex: &str| {
        Command::new(common::python())
            .args([
                "-c",
                "
import json, sys
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey
env = Envelope.from_dict(json.load(open(sys.argv[1])))
key = SSlibKey(sys.argv[2], 'ed25519', 'ed25519', {'public': sys.argv[3]})
env.verify([key], 1)
print('verified')
",
            ])
            .arg(b.path("master.intoto.jsonl"))
            .arg(&keyid)
            .arg(key_hex)
            .output()
            .unwrap()
    };
    let out = check(&hex);
    assert!(
        out.status.success(),
        "securesystemslib: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut wrong = raw.to_vec();
    wrong[0] ^= 1;
    let wrong: String = wrong.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!check(&wrong).status.success());
    // Ed25519 and a fixed time: the same inputs (the same mirror too: its URL is recorded)
    // give the same signed bytes.
    let first: Vec<String> = [
        "master.intoto.jsonl",
        "master.manifest.json.sig",
        "master.provenance.json",
    ]
    .iter()
    .map(|name| std::fs::read_to_string(b.path(name)).unwrap())
    .collect();
    let Build {
        _mirror: mirror,
        out: _first_out,
    } = b;
    let again = build_from(
        mirror,
        &["--sign-key".as_ref(), keys.path("ci_ssh").as_os_str()],
    );
    for (name, first) in [
        "master.intoto.jsonl",
        "master.manifest.json.sig",
        "master.provenance.json",
    ]
    .iter()
    .zip(first)
    {
        assert!(
            std::fs::read_to_string(again.path(name)).unwrap() == first,
            "{name} differs between two builds"
        );
    }
}

#[test]
fn keys_that_cannot_sign_stop_the_build_before_anything_is_written() {
    let keys = Keys::new();
    let not_a_key = keys.path("passphrase");
    let cases: Vec<(Vec<&std::ffi::OsStr>, &str)> = vec![
        (
            vec![
                "--sign-key".as_ref(),
                keys.path("locked_ssh").into_os_string().leak(),
            ],
            "encrypted",
        ),
        (
            vec![
                "--sign-key".as_ref(),
                keys.path("ci.key.asc").into_os_string().leak(),
                "--sign-passphrase-env".as_ref(),
                "KATO_TEST_NO_SUCH_VAR".as_ref(),
            ],
            "KATO_TEST_NO_SUCH_VAR",
        ),
        (
            vec![
                "--sign-key".as_ref(),
                keys.path("ci.key.asc").into_os_string().leak(),
            ],
            "passphrase",
        ),
        (
            vec!["--sign-key".as_ref(), not_a_key.as_os_str()],
            "not a signing key",
        ),
        (
            vec![
                "--sign-key".as_ref(),
                keys.path("ci.key.asc").into_os_string().leak(),
                "--sign-passphrase-file".as_ref(),
                keys.path("wrong").into_os_string().leak(),
            ],
            "passphrase does not open it",
        ),
        (
            vec![
                "--sign-key".as_ref(),
                keys.path("ci.key.asc").into_os_string().leak(),
                "--sign-passphrase-file".as_ref(),
                keys.path("missing").into_os_string().leak(),
            ],
            "the passphrase file (--sign-passphrase-file): cannot read",
        ),
    ];
    std::fs::write(keys.path("wrong"), "battery staple\n").unwrap();
    for (args, wanted) in cases {
        let mirror = Mirror::with_image(fixture());
        let out = tempfile::tempdir().unwrap();
        let args: Vec<&str> = args.iter().map(|a| a.to_str().unwrap()).collect();
        let result = mirror.build_with(
            common::kato(),
            out.path(),
            &[&["--role", "master"][..], &args].concat(),
        );
        assert!(!result.status.success());
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(wanted), "wanted {wanted:?}: {stderr}");
        assert!(
            !stderr.contains("correct horse") && !stderr.contains("battery"),
            "passphrases never reach errors"
        );
        assert_eq!(
            std::fs::read_dir(out.path()).unwrap().count(),
            0,
            "nothing written"
        );
        assert!(mirror.artifact_requests().is_empty(), "nothing fetched");
    }
}

/// `verify --allowed-signers` decides as `ssh-keygen -Y verify -n kato-image` decides, on the
/// same files and signature: namespaces, principal patterns, cert-authority, validity times
/// and comments; a line ssh-keygen cannot read is an error here, naming the line.
#[test]
fn allowed_signers_are_judged_as_ssh_keygen_judges_them() {
    let keys = Keys::new();
    let b = build(&["--sign-key".as_ref(), keys.path("ci_ssh").as_os_str()]);
    let key = |name: &str| {
        let text = std::fs::read_to_string(keys.path(name)).unwrap();
        text.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (ci, other) = (key("ci_ssh.pub"), key("else_ssh.pub"));
    // (file, principal or None for the line's own, as git asks)
    let cases: Vec<(String, Option<&str>)> = vec![
        (format!("ci@kato.test {ci}\n"), Some("ci@kato.test")),
        (
            format!("ci@kato.test namespaces=\"git\" {ci}\n"),
            Some("ci@kato.test"),
        ),
        (
            format!("ci@kato.test namespaces=\"git,kato-*\" {ci}\n"),
            Some("ci@kato.test"),
        ),
        (
            format!("ci@kato.test NAMESPACES=\"!kato-image,*\" {ci}\n"),
            Some("ci@kato.test"),
        ),
        (format!("*@kato.test {ci}\n"), Some("ci@kato.test")),
        (
            format!("!ci@kato.test,*@kato.test {ci}\n"),
            Some("ci@kato.test"),
        ),
        (format!("ci@kato.test {ci}\n"), Some("CI@kato.test")),
        (
            format!("ci@kato.test cert-authority {ci}\n"),
            Some("ci@kato.test"),
        ),
        (
            format!("ci@kato.test valid-before=\"20200101\" {ci}\n"),
            Some("ci@kato.test"),
        ),
        (
            format!("ci@kato.test valid-after=\"20990101Z\" {ci}\n"),
            Some("ci@kato.test"),
        ),
        (
            format!("ci@kato.test valid-after=\"20200101Z\",valid-before=\"20990101\" {ci}\n"),
            Some("ci@kato.test"),
        ),
        (
            format!(
                "# ops\n\n  ci@kato.test namespaces=\"git\" {ci}\nci@kato.test {ci} ci's key\n"
            ),
            Some("ci@kato.test"),
        ),
        (format!("ci@kato.test {other}\n"), Some("ci@kato.test")),
        (
            format!("ci@kato.test {ci} namespaces=\"git\"\n"),
            Some("ci@kato.test"),
        ),
        (format!("ci@kato.test namespaces=\"git\" {ci}\n"), None),
        (format!("ci@kato.test {ci}\n"), None),
    ];
    let dir = tempfile::tempdir().unwrap();
    let manifest = b.path("master.manifest.json");
    for (n, (text, principal)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("allowed-{n}"));
        std::fs::write(&file, text).unwrap();
        // Without a principal, as git does: the line's principals that find-principals names.
        let identities: Vec<String> = match principal {
            Some(p) => vec![p.to_string()],
            None => {
                let found = Command::new("ssh-keygen")
                    .args(["-Y", "find-principals", "-f"])
                    .arg(&file)
                    .arg("-s")
                    .arg(b.path("master.manifest.json.sig"))
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&found.stdout)
                    .lines()
                    .map(str::to_string)
                    .collect()
            }
        };
        let judge = identities.iter().any(|identity| {
            Command::new("ssh-keygen")
                .args(["-Y", "verify", "-n", "kato-image", "-I", identity, "-f"])
                .arg(&file)
                .arg("-s")
                .arg(b.path("master.manifest.json.sig"))
                .stdin(std::fs::File::open(&manifest).unwrap())
                .output()
                .unwrap()
                .status
                .success()
        });
        let mut args: Vec<&std::ffi::OsStr> = vec!["--allowed-signers".as_ref(), file.as_os_str()];
        if let Some(p) = principal {
            args.extend::<[&std::ffi::OsStr; 2]>(["--principal".as_ref(), p.as_ref()]);
        }
        let ours = b.verify("master.raw", &args);
        assert_eq!(
            ours.status.success(),
            judge,
            "case {n} ({text:?}, {principal:?}): ssh-keygen says {judge}; kato-image: {}",
            String::from_utf8_lossy(&ours.stderr)
        );
    }
    // Lines ssh-keygen cannot read are errors here, naming the line (ssh-keygen logs and
    // skips them).
    for bad in [
        format!("ci@kato.test foo=\"bar\" {ci}"),
        format!("ci@kato.test namespaces=git {ci}"),
        format!("ci@kato.test valid-before=\"2020-01-01\" {ci}"),
        "ci@kato.test ssh-ed25519 AAAAgarbage".to_string(),
        "ci@kato.test".to_string(),
    ] {
        let file = dir.path().join("bad");
        std::fs::write(&file, format!("# first\n{bad}\nci@kato.test {ci}\n")).unwrap();
        let out = b.verify(
            "master.raw",
            &["--allowed-signers".as_ref(), file.as_os_str()],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad}");
        assert!(stderr.contains("bad:2:"), "{bad}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
}

/// The passphrase is the file's first line; an in-toto bundle may hold more than one
/// envelope; files too large or not keys are told in a line without library words.
#[test]
fn passphrase_files_bundles_and_keys_are_read_as_documented() {
    let keys = Keys::new();
    std::fs::write(
        keys.path("two-lines"),
        "correct horse\nsecond line, not the passphrase\n",
    )
    .unwrap();
    let b = build(&[
        "--sign-key".as_ref(),
        keys.path("ci.key.asc").as_os_str(),
        "--sign-passphrase-file".as_ref(),
        keys.path("two-lines").as_os_str(),
    ]);
    let trusted: [&std::ffi::OsStr; 2] = [
        "--key".as_ref(),
        keys.path("ci.pub.asc").into_os_string().leak(),
    ];
    assert!(b.verify("master.raw", &trusted).status.success());
    // Two envelopes in the bundle (another statement first): the signed one is found.
    let bundle = b.path("master.intoto.jsonl");
    let line = std::fs::read_to_string(&bundle).unwrap();
    let mut other: Value = serde_json::from_str(&line).unwrap();
    other["signatures"][0]["sig"] = "AAAA".into();
    std::fs::write(&bundle, format!("{other}\n{line}")).unwrap();
    let out = b.verify("master.raw", &trusted);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An envelope file of 100 MB: refused by its size, the path named once.
    let big = std::fs::File::create(&bundle).unwrap();
    big.set_len(100 << 20).unwrap();
    let out = b.verify("master.raw", &trusted);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("larger than the 16 MiB a DSSE envelope may have"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("master.intoto.jsonl").count(), 1, "{stderr}");
    // Random bytes (and a damaged armor) as a key: our words, never the library's.
    for seed in 1..=12u64 {
        let mut bytes = common::signing::pseudo_random(4096, seed);
        if seed % 4 == 0 {
            bytes = [
                b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n".as_slice(),
                &bytes[..64],
            ]
            .concat();
        }
        std::fs::write(keys.path("random"), &bytes).unwrap();
        let out = b.verify(
            "master.raw",
            &["--key".as_ref(), keys.path("random").as_os_str()],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        let expected = if seed % 4 == 0 {
            "not an OpenPGP public key: its armor (-----BEGIN PGP ...-----) is damaged or cut short"
        } else {
            "not an OpenPGP public key: the bytes are neither armored (-----BEGIN PGP ...-----) nor whole OpenPGP packets"
        };
        assert!(
            stderr.trim_end().ends_with(expected),
            "seed {seed}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}
