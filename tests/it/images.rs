//! Container images baked in: pulls from a real registry (Debian's docker-registry behind
//! token auth) judged by skopeo, and the KATO-DATA partition judged by sgdisk, btrfs check and
//! a kernel booting the image.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::boot::{boot, mini_release};
use common::http::Server;
use common::registry::{BuiltImage, Registry, oci_layout, sha256};
use common::{Scratch, judge};

fn pull(args: &[&str], docker_config: &Path) -> Output {
    common::kato()
        .arg("pull")
        .args(args)
        .env("DOCKER_CONFIG", docker_config)
        .output()
        .unwrap()
}

fn skopeo_inspect(transport: &str, archive: &Path) -> serde_json::Value {
    let source = format!("{transport}:{}", archive.display());
    let out = judge("skopeo", &["inspect", &source], None);
    assert!(
        out.status.success(),
        "skopeo inspect {transport}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn layers(value: &serde_json::Value) -> Vec<String> {
    value["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A registry with a two-platform image `kato/app:1` pushed by skopeo.
fn registry_with_app() -> (Registry, String, Vec<BuiltImage>) {
    let registry = Registry::start();
    let layout = registry.dir.path().join("layout");
    let (index, images) = oci_layout(&layout, &["amd64", "arm64"], &[300_000, 40_000], 1);
    registry.push(&layout, "kato/app", "1");
    (registry, index, images)
}

#[test]
fn pulls_through_token_auth_into_an_archive_skopeo_and_docker_accept() {
    let (registry, index, images) = registry_with_app();
    let config = registry.docker_config();
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    for (board, image) in [("amd64-usr", &images[0]), ("arm64-usr", &images[1])] {
        let archive = work.path().join(format!("{board}.tar"));
        let reference = format!("{}/kato/app:1", registry.host());
        let out = pull(
            &[
                &reference,
                "-o",
                archive.to_str().unwrap(),
                "--board",
                board,
                "--json",
                "--cache",
                cache.to_str().unwrap(),
            ],
            &config,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            summary["digest"],
            index.as_str(),
            "the tag resolves to the pushed index"
        );
        assert_eq!(summary["manifest"], image.manifest_digest.as_str());
        assert_eq!(
            summary["reference"],
            format!("{reference}@{index}").as_str()
        );
        assert_eq!(
            summary["sha256"],
            sha256(&std::fs::read(&archive).unwrap()).trim_start_matches("sha256:")
        );

        // The OCI view holds the registry's blobs as they were pushed...
        let oci = skopeo_inspect("oci-archive", &archive);
        assert_eq!(
            layers(&oci),
            image.layers,
            "{board}: OCI layers are the pushed blobs"
        );
        assert_eq!(oci["Architecture"], image.architecture.as_str());
        // ...and the docker-archive view (what `docker load` reads) names the same layers
        // by their uncompressed digests.
        let docker = skopeo_inspect("docker-archive", &archive);
        assert_eq!(
            layers(&docker),
            image.diff_ids,
            "{board}: docker-archive diff IDs"
        );
        // Copying out of it makes skopeo decompress every layer and check it against the
        // config's diff IDs, as `docker load` does.
        let copy = work.path().join(format!("{board}-copy"));
        let out = judge(
            "skopeo",
            &[
                "copy",
                "--quiet",
                &format!("docker-archive:{}", archive.display()),
                &format!("oci:{}:x", copy.display()),
            ],
            None,
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // Pinned by digest, the same image comes from the cache with the registry gone.
    let pinned = format!("{}/kato/app:1@{index}", registry.host());
    drop(registry);
    let pull_cached = |archive: &Path| {
        common::kato()
            .arg("pull")
            .arg(&pinned)
            .arg("-o")
            .arg(archive)
            .arg("--cache")
            .arg(&cache)
            .args(["--quiet", "--retries", "0"])
            .output()
            .unwrap()
    };
    let again = work.path().join("again.tar");
    let out = pull_cached(&again);
    assert!(
        out.status.success(),
        "offline from the cache: {}",
        stderr(&out)
    );
    assert_eq!(
        layers(&skopeo_inspect("oci-archive", &again)),
        images[0].layers,
        "the cached image is the pushed one"
    );
    let twice = work.path().join("twice.tar");
    let out = pull_cached(&twice);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        std::fs::read(&again).unwrap() == std::fs::read(&twice).unwrap(),
        "the same reference gives the same bytes"
    );
}

#[test]
fn anonymous_pulls_get_a_token_without_credentials() {
    let registry = Registry::start_anonymous();
    let layout = registry.dir.path().join("layout");
    let (index, images) = oci_layout(&layout, &["amd64"], &[2000], 4);
    registry.push(&layout, "kato/public", "1");
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("public.tar");
    let reference = format!("{}/kato/public:1@{index}", registry.host());
    let out = pull(
        &[
            &reference,
            "-o",
            archive.to_str().unwrap(),
            "--quiet",
            "--cache",
            work.path().join("cache").to_str().unwrap(),
        ],
        &work.path().join("no-docker-config"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        layers(&skopeo_inspect("oci-archive", &archive)),
        images[0].layers
    );
}

#[test]
fn refusals_are_one_line_and_write_nothing() {
    let (registry, index, images) = registry_with_app();
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let archive = work.path().join("out.tar");
    let host = registry.host();
    let no_credentials = work.path().join("no-docker-config");
    let check_failed = |out: &Output, expect: &str| {
        assert!(!out.status.success());
        let text = stderr(out);
        assert!(text.contains(expect), "wanted {expect:?} in {text}");
        assert_eq!(text.trim_end().lines().count(), 1, "one line: {text}");
        assert!(
            !text.contains(common::registry::PASSWORD),
            "no secret in {text}"
        );
        assert!(!archive.exists(), "nothing written");
    };
    let args = |reference: &str| -> Vec<String> {
        vec![
            reference.to_string(),
            "-o".into(),
            archive.display().to_string(),
            "--quiet".into(),
            "--cache".into(),
            cache.display().to_string(),
            "--retries".into(),
            "0".into(),
        ]
    };
    let run = |reference: &str, config: &Path| {
        let args = args(reference);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        pull(&args, config)
    };

    // 401 without credentials.
    let out = run(&format!("{host}/kato/app:1"), &no_credentials);
    check_failed(&out, "refused access and no credentials");

    // Only another platform on offer.
    let arm_only = registry.dir.path().join("arm-only");
    oci_layout(&arm_only, &["arm64"], &[1000], 2);
    registry.push(&arm_only, "kato/armonly", "1");
    let config = registry.docker_config();
    let out = run(&format!("{host}/kato/armonly:1"), &config);
    check_failed(
        &out,
        "no image for linux/amd64 (the index offers linux/arm64)",
    );

    // A digest the registry's content does not have, a tag and a repository it does not
    // have: each named as a missing image, not as an HTTP error on a manifest URL.
    let zeros = "0".repeat(64);
    let wrong = format!("{host}/kato/app@sha256:{zeros}");
    let out = run(&wrong, &config);
    check_failed(
        &out,
        &format!("no such image: {host} has no repository `kato/app` with digest sha256:{zeros}"),
    );
    let out = run(&format!("{host}/kato/app:2"), &config);
    check_failed(&out, "no repository `kato/app` with tag `2`");
    let out = run(&format!("{host}/kato/nothing:1"), &config);
    check_failed(&out, "no repository `kato/nothing` with tag `1`");

    // A layer corrupted in the registry's storage: caught while streaming, never cached.
    let layer = &images[0].layers[0];
    let stored = registry.stored_blob(layer);
    let mut bytes = std::fs::read(&stored).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&stored, bytes).unwrap();
    let out = run(&format!("{host}/kato/app:1@{index}"), &config);
    check_failed(&out, &format!("blob {layer} has digest"));
    assert!(
        !cache.join("blobs/sha256").join(&layer[7..]).exists(),
        "a bad blob is not cached"
    );
}

/// The edge profile with `images` (and more YAML) appended.
fn scratch_with(extra: &str) -> Scratch {
    let scratch = Scratch::new();
    let edge = std::fs::read_to_string(scratch.path("profiles/edge.yaml")).unwrap();
    scratch.write("profiles/edge.yaml", &format!("{edge}\n{extra}"));
    scratch
}

fn build_edge(
    scratch: &Scratch,
    template: &str,
    cache: &Path,
    out: &Path,
    extra: &[&str],
    config: &Path,
) -> Output {
    scratch
        .kato(&["build", "--quiet", "--role", "edge", "--retries", "0"])
        .args(extra)
        .args(common::boot::mini_build_args(template, cache, out))
        .env("DOCKER_CONFIG", config)
        .output()
        .unwrap()
}

fn partition(image: &Path, name: &str) -> common::disk::SgdiskPartition {
    let (_, partitions) = common::disk::sgdisk_table(image);
    partitions
        .into_iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn a_build_bakes_images_into_kato_data_before_root_and_the_machine_sees_them() {
    let (registry, index, _images) = registry_with_app();
    let config = registry.docker_config();
    let work = tempfile::tempdir().unwrap();
    // A local docker-archive too, as `skopeo copy` writes them.
    let local = work.path().join("local.tar");
    let local_layout = work.path().join("local-layout");
    oci_layout(&local_layout, &["amd64"], &[5000], 3);
    let out = judge(
        "skopeo",
        &[
            "copy",
            "--quiet",
            &format!("oci:{}:v1", local_layout.display()),
            &format!("docker-archive:{}:kato/local:1", local.display()),
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let local_sha = sha256(&std::fs::read(&local).unwrap());
    let scratch = scratch_with(&format!(
        "images:\n  - {}/kato/app:1@{index}\n  - archive: {}\n    sha256: {local_sha}\n",
        registry.host(),
        local.display()
    ));
    let release = mini_release();
    let server = Server::start(release);
    let template = format!("{}{{channel}}/{{board}}/{{version}}/", server.url());
    let cache = work.path().join("cache");
    let out_dir = work.path().join("out");
    let files_dir = ["--files-dir", work.path().to_str().unwrap()];
    let out = build_edge(&scratch, &template, &cache, &out_dir, &files_dir, &config);
    assert!(out.status.success(), "{}", stderr(&out));
    let image = out_dir.join("edge.raw");

    // The disk: sgdisk is content, KATO-DATA is slot 10 and ROOT is still last.
    let (ok, report) = common::disk::sgdisk_verify(&image);
    assert!(ok, "sgdisk -v: {report}");
    let (_, partitions) = common::disk::sgdisk_table(&image);
    let last = partitions.iter().max_by_key(|p| p.first).unwrap();
    assert_eq!(last.name, "ROOT", "ROOT stays last: {partitions:?}");
    let data = partition(&image, "KATO-DATA");
    assert_eq!(data.slot, 10);
    assert!(data.last < partition(&image, "ROOT").first);

    // The filesystem: btrfs check is content and it holds what the manifest lists.
    let fs = work.path().join("data.btrfs");
    common::disk::extract(
        &image,
        data.first * 512,
        (data.last - data.first + 1) * 512,
        &fs,
    );
    let (clean, report) = common::btrfs::check(&fs);
    assert!(clean, "btrfs check: {report}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("edge.manifest.json")).unwrap())
            .unwrap();
    let baked = manifest["images"].as_array().unwrap();
    assert_eq!(baked.len(), 2);
    assert_eq!(
        baked[0]["reference"],
        format!("{}/kato/app:1@{index}", registry.host()).as_str()
    );
    assert_eq!(baked[0]["digest"], index.as_str());
    assert_eq!(baked[1]["source"], "docker-archive");
    assert_eq!(baked[1]["sha256"], local_sha.trim_start_matches("sha256:"));
    assert!(
        manifest["disks"][0]["changed_partitions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "KATO-DATA")
    );

    // The config: Ignition accepts it, and it loads the images before the role's containers.
    let ign = work.path().join("edge.ign");
    let rendered = scratch
        .kato(&["render", "--role", "edge"])
        .args(files_dir)
        .output()
        .unwrap();
    assert!(rendered.status.success(), "{}", stderr(&rendered));
    std::fs::write(&ign, &rendered.stdout).unwrap();
    let validate = judge("ignition-validate", &[], Some(&ign));
    assert!(
        validate.status.success(),
        "{}",
        String::from_utf8_lossy(&validate.stderr)
    );
    let text = String::from_utf8_lossy(&rendered.stdout);
    assert!(text.contains("kato-preload.service"));
    assert!(
        text.contains("10-kato-preload.conf"),
        "role units wait for the preload"
    );

    // The machine: its kernel mounts KATO-DATA and hashes each tar as the manifest says.
    let markers = boot(&image);
    assert!(markers.errors.is_empty(), "{:?}", markers.errors);
    let seen: Vec<(String, String)> = markers.images.clone();
    let expected: Vec<(String, String)> = baked
        .iter()
        .map(|i| {
            (
                i["sha256"].as_str().unwrap().to_string(),
                i["file"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(seen, expected);
}

#[test]
fn image_refusals_name_the_profile_line_and_write_nothing() {
    let (registry, index, _) = registry_with_app();
    let config = registry.docker_config();
    let work = tempfile::tempdir().unwrap();
    let release = mini_release();
    let server = Server::start(release);
    let template = format!("{}{{channel}}/{{board}}/{{version}}/", server.url());
    let cache = work.path().join("cache");
    let out_dir = work.path().join("out");
    let host = registry.host();
    // The archives below lie in `work`, which the profile may name files in.
    let files_dir = ["--files-dir", work.path().to_str().unwrap()];
    let fails_with = |cache: &Path, extra: &str, args: &[&str], expect: &str| {
        let scratch = scratch_with(extra);
        let args = [args, &files_dir[..]].concat();
        let out = build_edge(&scratch, &template, cache, &out_dir, &args, &config);
        let text = stderr(&out);
        assert!(!out.status.success(), "{extra}: should fail");
        assert!(text.contains(expect), "wanted {expect:?} in {text}");
        assert_eq!(text.trim_end().lines().count(), 1, "one line: {text}");
        assert!(
            !out_dir.join("edge.raw").exists(),
            "{extra}: nothing written"
        );
    };
    let fails = |extra: &str, args: &[&str], expect: &str| fails_with(&cache, extra, args, expect);
    let downloaded = |cache: &Path| {
        cache
            .join("blobs/sha512")
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    };
    // A tag alone, refused before anything is downloaded.
    fails(
        &format!("images:\n  - {host}/kato/app:1\n"),
        &[],
        "edge.yaml:",
    );
    assert!(!downloaded(&cache), "no download before the refusal");
    // Too little room.
    fails(
        &format!("images:\n  - {host}/kato/app:1@{index}\ndata:\n  size: 1MiB\n"),
        &[],
        "data.size allows 1048576",
    );
    // Local archives that would write outside their folder.
    for (name, member, link) in [
        ("dotdot", "../escape", None),
        ("absolute", "/etc/passwd", None),
        ("link", "evil", Some("../../etc")),
    ] {
        let tar = work.path().join(format!("{name}.tar"));
        write_tar(&tar, member, link);
        // Told before the vendor image is fetched, into a cache of its own.
        let fresh = work.path().join(format!("cache-{name}"));
        fails_with(
            &fresh,
            &format!("images:\n  - archive: {}\n", tar.display()),
            &[],
            "member",
        );
        assert!(!downloaded(&fresh), "{name}: no vendor image fetched first");
    }
    let good = work.path().join("good.tar");
    write_tar(&good, "manifest.json", None);
    fails(
        &format!(
            "images:\n  - archive: {}\n    sha256: {}\n",
            good.display(),
            "ab".repeat(32)
        ),
        &[],
        "not the expected",
    );

    // --allow-unpinned takes the tag and records the digest it resolved to.
    let scratch = scratch_with(&format!("images:\n  - {host}/kato/app:1\n"));
    let out = build_edge(
        &scratch,
        &template,
        &cache,
        &out_dir,
        &["--allow-unpinned"],
        &config,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("edge.manifest.json")).unwrap())
            .unwrap();
    assert_eq!(
        manifest["images"][0]["reference"],
        format!("{host}/kato/app:1@{index}").as_str()
    );
}

/// A tar with one member named `member` (raw bytes, so `..` and `/` survive), a symlink to
/// `link` if given.
fn write_tar(path: &PathBuf, member: &str, link: Option<&str>) {
    let mut block = [0u8; 512];
    block[..member.len()].copy_from_slice(member.as_bytes());
    let fields: [(usize, &str); 5] = [
        (100, "0000644\0"),
        (108, "0000000\0"),
        (116, "0000000\0"),
        (124, "00000000000\0"),
        (136, "00000000000\0"),
    ];
    for (at, text) in fields {
        block[at..at + text.len()].copy_from_slice(text.as_bytes());
    }
    block[156] = if link.is_some() { b'2' } else { b'0' };
    if let Some(link) = link {
        block[157..157 + link.len()].copy_from_slice(link.as_bytes());
    }
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    block[148..156].copy_from_slice(b"        ");
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut bytes = block.to_vec();
    bytes.extend_from_slice(&[0u8; 1024]);
    std::fs::write(path, bytes).unwrap();
}

/// Runs the generated kato-preload script against a KATO-DATA folder with a fake `docker`
/// that remembers what it loaded (by the image ID the index gives the file).
#[test]
fn the_preload_script_loads_each_image_once_and_refuses_a_tar_that_does_not_match() {
    let zeros = "0".repeat(64);
    let scratch = scratch_with(&format!(
        "images:\n  - example.org/kato/app:1@sha256:{zeros}\n"
    ));
    let rendered = scratch
        .kato(&["render", "--role", "edge"])
        .output()
        .unwrap();
    assert!(rendered.status.success(), "{}", stderr(&rendered));
    let config: serde_json::Value = serde_json::from_slice(&rendered.stdout).unwrap();
    let files = config["storage"]["files"].as_array().unwrap();
    let script = files
        .iter()
        .find(|f| f["path"] == "/opt/kato/bin/kato-preload")
        .expect("the preload script is installed");
    assert_eq!(script["mode"], 0o755);
    let units = config["systemd"]["units"].as_array().unwrap();
    let preload = units
        .iter()
        .find(|u| u["name"] == "kato-preload.service")
        .unwrap();
    let text = preload["contents"].as_str().unwrap();
    assert!(text.contains("After=docker.service"), "{text}");
    // No mount unit: it would hold up every container unit for 90 s on a machine booted
    // over iPXE, which has no KATO-DATA, and then fail them.
    assert!(
        !text.contains(".mount")
            && !units
                .iter()
                .any(|u| u["name"].as_str().unwrap().ends_with(".mount")),
        "{text}"
    );
    let with_dropin: Vec<&str> = units
        .iter()
        .filter(|u| {
            u["dropins"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d["name"] == "10-kato-preload.conf"))
        })
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        with_dropin,
        ["cadvisor.service", "marathon-lb.service"],
        "every container unit waits"
    );

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("images")).unwrap();
    std::fs::write(data.join("images/01-good.tar"), b"good image").unwrap();
    std::fs::write(data.join("images/02-bad.tar"), b"tampered").unwrap();
    let good = sha256(b"good image");
    let claimed = sha256(b"what was baked");
    std::fs::write(
        data.join("index.tsv"),
        format!(
            "# header\n{}\tsha256:{}\timages/01-good.tar\tex/good:1\n{}\tsha256:{}\timages/02-bad.tar\tex/bad:1\n",
            &good[7..], "1".repeat(64), &claimed[7..], "2".repeat(64)
        ),
    )
    .unwrap();
    let bin = dir.path().join("bin");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        bin.join("kato-preload"),
        common::decode_data_url(script["contents"]["source"].as_str().unwrap()),
    )
    .unwrap();
    std::fs::write(
        bin.join("docker"),
        format!(
            "#!/bin/sh\nstate={state}\ncase \"$1 $2\" in\n\
             'image inspect') test -e \"$state/$3\" ;;\n\
             'load --input') echo \"load $3\" >> \"$state/log\"; id=$(awk -F'\\t' -v f=\"${{3#{data}/}}\" '$3 == f {{print $2}}' {data}/index.tsv); touch \"$state/$id\" ;;\n\
             *) exit 2 ;;\nesac\n",
            state = state.display(),
            data = data.display()
        ),
    )
    .unwrap();
    for name in ["kato-preload", "docker"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let run = || {
        std::process::Command::new("bash")
            .arg(bin.join("kato-preload"))
            .arg(&data)
            .env("PATH", &path)
            .output()
            .unwrap()
    };
    let first = run();
    assert!(
        !first.status.success(),
        "a tar that does not match its index fails the service"
    );
    assert!(
        stderr(&first).contains("02-bad.tar has SHA-256"),
        "{}",
        stderr(&first)
    );
    let loads = std::fs::read_to_string(state.join("log")).unwrap();
    assert_eq!(
        loads,
        format!("load {}\n", data.join("images/01-good.tar").display()),
        "only the good tar is loaded"
    );
    let second = run();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("ex/good:1 already loaded"));
    assert_eq!(
        std::fs::read_to_string(state.join("log")).unwrap(),
        loads,
        "nothing is loaded twice"
    );

    // A machine without KATO-DATA (booted over iPXE): nothing to mount, the service
    // succeeds at once and the units pull their images as they would without kato-image.
    std::fs::write(bin.join("blkid"), "#!/bin/sh\nexit 2\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join("blkid"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    let absent = std::process::Command::new("bash")
        .arg(bin.join("kato-preload"))
        .arg(dir.path().join("not-mounted"))
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(absent.status.success(), "{}", stderr(&absent));
    assert!(
        String::from_utf8_lossy(&absent.stdout).contains("no KATO-DATA partition"),
        "{}",
        String::from_utf8_lossy(&absent.stdout)
    );
    assert!(!dir.path().join("not-mounted").exists(), "nothing is made");
}

/// A download interrupted in an earlier run (its bytes left in the cache's partial folder)
/// continues from where it stopped, and the result is still checked whole.
#[test]
fn an_interrupted_blob_download_resumes() {
    use sha2::Digest;
    let (registry, index, images) = registry_with_app();
    let config = registry.docker_config();
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let layer = &images[0].layers[0];
    let bytes = std::fs::read(registry.stored_blob(layer)).unwrap();
    let url = format!("http://{}/v2/kato/app/blobs/{layer}", registry.host());
    let key = kato_image::cache::hex(&sha2::Sha256::digest(url.as_bytes())[..16]);
    let partial = cache.join("partial");
    std::fs::create_dir_all(&partial).unwrap();
    let half = bytes.len() / 2;
    std::fs::write(partial.join(format!("{key}.part")), &bytes[..half]).unwrap();
    std::fs::write(
        partial.join(format!("{key}.json")),
        serde_json::json!({"url": url, "validator": null}).to_string(),
    )
    .unwrap();
    let archive = work.path().join("app.tar");
    let reference = format!("{}/kato/app:1@{index}", registry.host());
    let out = pull(
        &[
            &reference,
            "-o",
            archive.to_str().unwrap(),
            "--cache",
            cache.to_str().unwrap(),
        ],
        &config,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("{layer}: resuming at byte {half}")),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read(cache.join("blobs/sha256").join(&layer[7..])).unwrap(),
        bytes
    );
    assert_eq!(
        layers(&skopeo_inspect("oci-archive", &archive)),
        images[0].layers
    );
}
