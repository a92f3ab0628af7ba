//! `kato-image fetch` against a loopback mirror with signatures made by GnuPG.

use crate::common;

use std::path::Path;
use std::process::Output;

use common::http::Fault;
use common::mirror::{IMAGE, Mirror, VERSION, digests, sha512_hex};
use common::signing::{fixtures, pseudo_random};

fn ok_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "fetch failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn failure(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "fetch should fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    stderr.lines().last().unwrap_or_default().to_string()
}

fn assert_has(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "`{part}` not in: {text}");
    }
}

#[test]
fn good_release_is_fetched_verified_and_cached() {
    let mirror = Mirror::new();
    let data = mirror.publish_artifact("good");
    let json = ok_json(&mirror.fetch(&[]));
    assert_eq!(json["requested_version"], "current");
    assert_eq!(json["version"], VERSION);
    let artifact = &json["artifacts"][0];
    assert_eq!(artifact["file"], IMAGE);
    assert_eq!(artifact["sha512"], sha512_hex(&data));
    assert_eq!(artifact["size"], data.len());
    assert_eq!(artifact["digests_asc_verified"], true);
    assert_eq!(artifact["from_cache"], false);
    assert_eq!(
        artifact["signature"]["primary_fingerprint"],
        fixtures().primary
    );
    assert_eq!(
        artifact["signature"]["signer_fingerprint"],
        fixtures().good_subkey
    );
    assert_eq!(artifact["signature"]["created"], common::signing::T + 3600);
    let path = Path::new(artifact["path"].as_str().unwrap());
    assert_eq!(std::fs::read(path).unwrap(), data);
    assert_eq!(json["insecure_skip_signature"], false);

    // Cached: `current` costs one request (version.txt), a concrete version none.
    mirror.server.clear_log();
    let again = ok_json(&mirror.fetch(&[]));
    assert_eq!(again["artifacts"][0]["from_cache"], true);
    let paths: Vec<String> = mirror
        .server
        .requests()
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert_eq!(paths, ["/stable/amd64-usr/current/version.txt"]);
    mirror.server.clear_log();
    ok_json(&mirror.fetch(&["--version", VERSION]));
    assert!(mirror.server.requests().is_empty());
}

#[test]
fn offline_uses_the_cache_and_nothing_else() {
    let mirror = Mirror::new();
    mirror.publish_artifact("good");
    let out = mirror.fetch(&["--offline"]);
    assert_has(
        &failure(&out),
        &["--offline", "`current`", "not in the cache"],
    );
    let out = mirror.fetch(&["--offline", "--version", VERSION]);
    assert_has(&failure(&out), &["--offline", IMAGE, "not in the cache"]);
    assert!(
        mirror.server.requests().is_empty(),
        "offline makes no request"
    );

    ok_json(&mirror.fetch(&[]));
    mirror.server.clear_log();
    let json = ok_json(&mirror.fetch(&["--offline"]));
    assert_eq!(json["version"], VERSION);
    assert_eq!(json["artifacts"][0]["from_cache"], true);
    assert!(
        mirror.server.requests().is_empty(),
        "offline makes no request"
    );
}

#[test]
fn a_flipped_byte_is_refused_and_nothing_is_cached() {
    let mirror = Mirror::new();
    let data = std::fs::read(&fixtures().artifact).unwrap();
    let mut flipped = data.clone();
    flipped[1_000_000] ^= 0x01;
    mirror.publish(IMAGE, &flipped, &fixtures().signature("good"), &data, true);
    let error = failure(&mirror.fetch(&[]));
    assert_has(&error, &[IMAGE, "BAD signature"]);
    assert!(mirror.blobs().is_empty());
    let partial = std::fs::read_dir(mirror.cache.path().join("partial")).unwrap();
    assert!(
        partial
            .filter_map(Result::ok)
            .all(|e| !e.path().to_string_lossy().ends_with(".part"))
    );
}

#[test]
fn a_truncated_file_is_refused() {
    let mirror = Mirror::new();
    let data = std::fs::read(&fixtures().artifact).unwrap();
    mirror.publish(
        IMAGE,
        &data[..data.len() - 4096],
        &fixtures().signature("good"),
        &data,
        true,
    );
    let error = failure(&mirror.fetch(&[]));
    assert_has(&error, &[IMAGE, "BAD signature"]);
    assert!(mirror.blobs().is_empty());
}

#[test]
fn a_key_outside_the_keyring_is_refused_before_downloading() {
    let mirror = Mirror::new();
    mirror.publish_artifact("wrong");
    let error = failure(&mirror.fetch(&[]));
    assert_has(&error, &[IMAGE, "not in the trusted keyring"]);
    assert!(
        mirror.artifact_requests().is_empty(),
        "the image itself was never requested"
    );
    assert!(mirror.blobs().is_empty());
}

#[test]
fn the_embedded_flatcar_key_does_not_trust_a_test_key() {
    let mirror = Mirror::new();
    mirror.publish_artifact("good");
    let template = format!("{}{{channel}}/{{board}}/{{version}}/", mirror.server.url());
    let out = common::kato()
        .args(["fetch", "--release-url", &template])
        .arg("--cache")
        .arg(mirror.cache.path())
        .output()
        .unwrap();
    assert_has(&failure(&out), &["not in the trusted keyring"]);
}

#[test]
fn expired_subkey_counts_only_for_signatures_made_before_expiry() {
    let mirror = Mirror::new();
    mirror.publish_artifact("exp-before");
    ok_json(&mirror.fetch(&[]));

    let mirror = Mirror::new();
    mirror.publish_artifact("exp-after");
    assert_has(
        &failure(&mirror.fetch(&[])),
        &[IMAGE, "does not count", "had expired"],
    );
    assert!(mirror.blobs().is_empty());
}

#[test]
fn revoked_subkeys_are_refused() {
    // Superseded: signatures before the revocation still count, later ones do not.
    let mirror = Mirror::new();
    mirror.publish_artifact("soft-before");
    ok_json(&mirror.fetch(&[]));
    let mirror = Mirror::new();
    mirror.publish_artifact("soft-after");
    assert_has(&failure(&mirror.fetch(&[])), &[IMAGE, "revoked"]);
    // Compromised: nothing it ever signed counts.
    let mirror = Mirror::new();
    mirror.publish_artifact("hard-before");
    assert_has(
        &failure(&mirror.fetch(&[])),
        &[IMAGE, "revoked", "the key was compromised"],
    );
    assert!(mirror.blobs().is_empty());
}

#[test]
fn a_dropped_connection_is_resumed_and_the_result_verifies() {
    let mirror = Mirror::new();
    let data = mirror.publish_artifact("good");
    mirror
        .server
        .fault(&Mirror::url_path(IMAGE), Fault::DropAfter(1 << 20));
    let json = ok_json(&mirror.fetch(&[]));
    assert_eq!(json["artifacts"][0]["sha512"], sha512_hex(&data));
    let requests = mirror.artifact_requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].range, None);
    let range = requests[1].range.as_deref().unwrap();
    let from: u64 = range
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(from > 0 && from <= 1 << 20, "resumed from {from}");
    assert!(
        requests[1].if_range.is_some(),
        "resume is conditional on the same file"
    );
}

#[test]
fn a_file_that_changed_between_attempts_is_fetched_again_not_spliced() {
    let mirror = Mirror::new();
    mirror.publish_artifact("good");
    mirror
        .server
        .fault(&Mirror::url_path(IMAGE), Fault::DropAfter(1 << 20));
    // The first attempt fails, leaving a partial file; then the mirror replaces the file.
    let out = mirror.fetch(&["--retries", "0"]);
    failure(&out);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let data = pseudo_random(3 << 20, 99);
    let signature = {
        let path = mirror.cache.path().join("new.bin");
        std::fs::write(&path, &data).unwrap();
        fixtures().sign(&path)
    };
    mirror.publish(IMAGE, &data, &signature, &data, true);
    mirror.server.clear_log();
    let json = ok_json(&mirror.fetch(&[]));
    assert_eq!(json["artifacts"][0]["sha512"], sha512_hex(&data));
    let requests = mirror.artifact_requests();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].range.is_some() && requests[0].if_range.is_some(),
        "it asked to resume, conditionally"
    );
}

#[test]
fn server_errors_are_retried() {
    let mirror = Mirror::new();
    mirror.publish_artifact("good");
    for _ in 0..2 {
        mirror
            .server
            .fault(&Mirror::url_path(IMAGE), Fault::Status(503));
    }
    mirror.server.fault(
        &Mirror::url_path(&format!("{IMAGE}.sig")),
        Fault::Status(500),
    );
    let out = mirror.fetch(&[]);
    ok_json(&out);
    assert_eq!(mirror.artifact_requests().len(), 3);
    assert!(String::from_utf8_lossy(&out.stderr).contains("retry 1 of 5"));
}

#[test]
fn persistent_server_errors_give_up_with_the_status() {
    let mirror = Mirror::new();
    mirror.publish_artifact("good");
    for _ in 0..3 {
        mirror
            .server
            .fault(&Mirror::url_path(IMAGE), Fault::Status(502));
    }
    let error = failure(&mirror.fetch(&["--retries", "2"]));
    assert_has(&error, &[&Mirror::url_path(IMAGE), "HTTP 502"]);
}

#[test]
fn not_found_names_the_url_and_what_was_looked_for() {
    let mirror = Mirror::new();
    mirror.publish_artifact("good");
    std::fs::remove_file(mirror.dir().join(IMAGE)).unwrap();
    let error = failure(&mirror.fetch(&[]));
    assert_has(
        &error,
        &[
            &format!("{IMAGE} was not found"),
            &Mirror::url_path(IMAGE),
            "404",
        ],
    );

    let error = failure(&mirror.fetch(&["--version", "9.9.9"]));
    assert_has(&error, &["9.9.9", "DIGESTS was not found", "404"]);
}

#[test]
fn digests_that_disagree_with_a_good_signature_are_refused() {
    let mirror = Mirror::new();
    let data = std::fs::read(&fixtures().artifact).unwrap();
    mirror.publish(
        IMAGE,
        &data,
        &fixtures().signature("good"),
        b"something else",
        false,
    );
    let error = failure(&mirror.fetch(&[]));
    assert_has(&error, &[IMAGE, "does not match", ".DIGESTS"]);
    assert!(mirror.blobs().is_empty());

    // A signed DIGESTS.asc must agree with the plain DIGESTS.
    let mirror = Mirror::new();
    mirror.publish(IMAGE, &data, &fixtures().signature("good"), &data, false);
    let forged = digests(IMAGE, b"forged");
    std::fs::write(
        mirror.dir().join(format!("{IMAGE}.DIGESTS.asc")),
        fixtures().clearsign(&forged),
    )
    .unwrap();
    assert_has(&failure(&mirror.fetch(&[])), &["DIGESTS.asc says SHA-512"]);
}

#[test]
fn a_missing_signature_is_an_error() {
    let mirror = Mirror::new();
    mirror.publish_artifact("good");
    std::fs::remove_file(mirror.dir().join(format!("{IMAGE}.sig"))).unwrap();
    let error = failure(&mirror.fetch(&[]));
    assert_has(
        &error,
        &[&format!("the signature {IMAGE}.sig was not found"), "404"],
    );
    assert!(mirror.artifact_requests().is_empty());
}

#[test]
fn insecure_skip_signature_is_loud_and_recorded() {
    let mirror = Mirror::new();
    let data = mirror.publish_artifact("wrong");
    let out = mirror.fetch(&["--insecure-skip-signature"]);
    let json = ok_json(&out);
    assert_eq!(json["insecure_skip_signature"], true);
    assert!(json["artifacts"][0]["signature"].is_null());
    assert_eq!(json["artifacts"][0]["sha512"], sha512_hex(&data));
    assert!(String::from_utf8_lossy(&out.stderr).contains("WARNING: --insecure-skip-signature"));
    // An unverified cache entry does not satisfy a verifying fetch.
    assert_has(
        &failure(&mirror.fetch(&[])),
        &["not in the trusted keyring"],
    );
}

#[test]
fn pxe_fetches_kernel_and_initramfs() {
    let mirror = Mirror::new();
    for (file, seed) in [
        ("flatcar_production_pxe.vmlinuz", 1),
        ("flatcar_production_pxe_image.cpio.gz", 2),
    ] {
        let data = pseudo_random(100_000, seed);
        let path = mirror.cache.path().join(file);
        std::fs::write(&path, &data).unwrap();
        mirror.publish(file, &data, &fixtures().sign(&path), &data, false);
    }
    let json = ok_json(&mirror.fetch(&["--artifact", "pxe", "--version", VERSION]));
    let files: Vec<&str> = json["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "flatcar_production_pxe.vmlinuz",
            "flatcar_production_pxe_image.cpio.gz"
        ]
    );
    assert_eq!(json["artifacts"][0]["digests_asc_verified"], false);
}

#[test]
fn kill_9_mid_download_leaves_nothing_trusted_and_the_next_run_completes() {
    let mirror = Mirror::new();
    let data = mirror.publish_artifact("good");
    mirror.server.throttle(512 << 10);
    let template = format!("{}{{channel}}/{{board}}/{{version}}/", mirror.server.url());
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kato-image"))
        .args(["fetch", "--quiet", "--release-url", &template, "--cache"])
        .arg(mirror.cache.path())
        .arg("--keyring")
        .arg(&fixtures().keyring)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let partial_dir = mirror.cache.path().join("partial");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let written: u64 = std::fs::read_dir(&partial_dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "part"))
                    .map(|e| e.metadata().unwrap().len())
                    .sum()
            })
            .unwrap_or(0);
        if written > 256 << 10 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the download never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(mirror.blobs().is_empty(), "no blob from a killed run");
    let records = mirror
        .cache
        .path()
        .join(format!("releases/stable/amd64-usr/{VERSION}/{IMAGE}.json"));
    assert!(!records.exists(), "no record from a killed run");
    // --offline must not trust the leftovers.
    failure(&mirror.fetch(&["--offline", "--version", VERSION]));

    mirror.server.throttle(0);
    mirror.server.clear_log();
    let json = ok_json(&mirror.fetch(&[]));
    assert_eq!(json["artifacts"][0]["sha512"], sha512_hex(&data));
    let requests = mirror.artifact_requests();
    assert!(
        requests[0].range.is_some(),
        "the next run resumed: {requests:?}"
    );
}

/// Nothing listens: the one line names the URL once, not three times, and says why.
#[test]
fn a_refused_connection_names_its_url_once() {
    let port = common::free_port();
    let out = common::kato()
        .args([
            "fetch",
            "--retries",
            "1",
            "--retry-delay-ms",
            "10",
            "--release-url",
        ])
        .arg(format!(
            "http://127.0.0.1:{port}/{{channel}}/{{board}}/{{version}}/"
        ))
        .arg("--cache")
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    let error = failure(&out);
    let url = format!("http://127.0.0.1:{port}/stable/amd64-usr/current/version.txt");
    assert_eq!(
        error.matches(&format!("127.0.0.1:{port}")).count(),
        1,
        "{error}"
    );
    assert_has(&error, &[&url, "cannot connect (Connection refused"]);
    assert!(!error.contains("error sending request"), "{error}");
}

/// A host name that does not resolve is not retried: one line at once, saying so. Run in a
/// network namespace of its own, so the lookup fails here without asking any DNS server.
#[test]
fn a_name_that_does_not_resolve_is_said_at_once_and_not_retried() {
    let bin = assert_cmd::cargo::cargo_bin("kato-image");
    let cache = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("unshare")
        .arg("-n")
        .arg(bin)
        .args(["fetch", "--retries", "5", "--release-url"])
        .arg("http://mirror.kato-test.invalid/{channel}/{board}/{version}/")
        .arg("--cache")
        .arg(cache.path())
        .output()
        .expect("unshare (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one line, no retries: {stderr}"
    );
    assert_has(
        &stderr,
        &["cannot resolve mirror.kato-test.invalid", "no network?"],
    );
}
