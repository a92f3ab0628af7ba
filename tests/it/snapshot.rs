//! `publish snapshot` against moto, behind a proxy that records what was sent: moto accepts
//! wrong checksums and odd block sizes, so the assertions are on the requests themselves.

use crate::common;

use base64::Engine;
use common::aws::{Aws, SECRET, header};
use common::http::Server;
use sha2::{Digest, Sha256};

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn no_secret(out: &std::process::Output) {
    for text in [&out.stdout, &out.stderr] {
        assert!(
            !String::from_utf8_lossy(text).contains(SECRET),
            "a secret leaked"
        );
    }
}

/// The block PUTs that reached moto, checked one by one: 512 KiB, the checksum header is the
/// body's SHA-256, the data-length header says 524288.
fn sent_blocks(requests: &[serde_json::Value]) -> Vec<(u64, String)> {
    let mut blocks: Vec<(u64, String)> = requests
        .iter()
        .filter(|r| {
            r["method"] == "PUT"
                && r["path"].as_str().unwrap().contains("/blocks/")
                && r["answered"] == "forwarded"
        })
        .map(|r| {
            assert_eq!(r["length"], 524288, "every block is 512 KiB");
            assert_eq!(header(r, "x-amz-data-length"), Some("524288"));
            assert_eq!(header(r, "x-amz-checksum-algorithm"), Some("SHA256"));
            assert_eq!(
                header(r, "x-amz-checksum"),
                r["sha256"].as_str(),
                "the checksum is the body's"
            );
            assert_eq!(r["authorized"], true, "signed");
            let index = r["path"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            (index, r["sha256"].as_str().unwrap().to_string())
        })
        .collect();
    blocks.sort();
    blocks
}

fn completion(requests: &[serde_json::Value]) -> &serde_json::Value {
    requests
        .iter()
        .find(|r| {
            r["path"]
                .as_str()
                .unwrap()
                .starts_with("/snapshots/completion/")
        })
        .expect("CompleteSnapshot was called")
}

/// base64(SHA-256 of the block digests in index order), from the recorded bodies.
fn linear(blocks: &[(u64, String)]) -> String {
    let mut hasher = Sha256::new();
    for (_, digest) in blocks {
        hasher.update(
            base64::engine::general_purpose::STANDARD
                .decode(digest)
                .unwrap(),
        );
    }
    base64::engine::general_purpose::STANDARD.encode(hasher.finalize())
}

#[test]
fn snapshots_carry_every_block_with_its_checksum_and_a_second_role_sends_only_changes() {
    let out = common::boot::built_ami_roles();
    let master = out.path().join("master-ami.raw");
    let worker = out.path().join("worker-ami.raw");
    let aws = Aws::start(&["--throttle", "3"]);

    let result = aws.kato(&[
        "publish",
        "snapshot",
        master.to_str().unwrap(),
        "--json",
        "--quiet",
        "--tag",
        "kato:role=master",
    ]);
    no_secret(&result);
    let first = json(&result);
    let requests = aws.requests();
    let expected = common::upload_plan(&master, None);
    let blocks = sent_blocks(&requests);
    assert_eq!(
        blocks.len() as u64,
        expected["changed_blocks"].as_u64().unwrap()
    );
    assert_eq!(first["changed_blocks"], expected["changed_blocks"]);
    let mut indexes: Vec<u64> = blocks.iter().map(|b| b.0).collect();
    indexes.dedup();
    assert_eq!(indexes.len(), blocks.len(), "each block once");
    let throttled = requests
        .iter()
        .filter(|r| r["answered"] == "throttled")
        .count();
    assert_eq!(throttled, 3, "throttled requests were retried");
    let start = starts(&requests)[0];
    assert_eq!(start["json"]["VolumeSize"], expected["volume_size_gib"]);
    assert!(start["json"]["Tags"].to_string().contains("kato:role"));
    let complete = completion(&requests);
    assert_eq!(
        header(complete, "x-amz-changedblockscount"),
        Some(blocks.len().to_string().as_str())
    );
    assert_eq!(
        header(complete, "x-amz-checksum-aggregation-method"),
        Some("LINEAR")
    );
    assert_eq!(
        header(complete, "x-amz-checksum"),
        Some(linear(&blocks).as_str()),
        "the aggregate is over what was sent"
    );
    assert_eq!(first["aggregate_checksum"], linear(&blocks).as_str());
    let first_id = first["snapshot_id"].as_str().unwrap().to_string();

    // A second role on top of the first sends only the blocks that differ.
    aws.clear();
    let second = json(&aws.kato(&[
        "publish",
        "snapshot",
        worker.to_str().unwrap(),
        "--json",
        "--quiet",
        "--parent-snapshot",
        &first_id,
        "--parent-image",
        master.to_str().unwrap(),
    ]));
    let requests = aws.requests();
    let expected = common::upload_plan(&worker, Some(&master));
    let blocks = sent_blocks(&requests);
    assert_eq!(
        blocks.len() as u64,
        expected["changed_blocks"].as_u64().unwrap()
    );
    assert!(blocks.len() * 10 < first["changed_blocks"].as_u64().unwrap() as usize);
    let start = starts(&requests)[0];
    assert_eq!(start["json"]["ParentSnapshotId"], first_id.as_str());
    assert_eq!(
        header(completion(&requests), "x-amz-checksum"),
        Some(linear(&blocks).as_str())
    );
    assert_eq!(second["parent_snapshot_id"], first_id.as_str());
}

#[test]
fn aws_refusals_are_aws_words_on_one_line_without_secrets_or_the_sdk_debug_form() {
    let dir = tempfile::tempdir().unwrap();
    let image = small_image(dir.path());
    let publish = ["publish", "snapshot", image.to_str().unwrap(), "--quiet"];
    for (proxy, expected) in [
        ("--expired", "credentials have expired"),
        (
            "--denied",
            "StartSnapshot: AccessDeniedException: User: arn:aws:iam::123456789012:user/ci is not authorized",
        ),
    ] {
        let out = Aws::start(&[proxy]).kato(&publish);
        one_line_error(&out, expected);
    }
    // Nothing listens: the causes, each once, with no Rust types or braces from the SDK.
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    let home = dir.path().join("home");
    let out = common::aws::kato_at(&closed, &home, &publish);
    one_line_error(&out, "StartSnapshot: dispatch failure");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Connection refused"), "{stderr}");
    for debug in ["DispatchFailure(", "ConnectorError", "{", "Os {"] {
        assert!(!stderr.contains(debug), "{debug} in {stderr}");
    }
}

/// The StartSnapshot requests, in order.
fn starts(requests: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    requests
        .iter()
        .filter(|r| r["method"] == "POST" && r["path"] == "/snapshots")
        .collect()
}

fn calls<'a>(requests: &'a [serde_json::Value], action: &str) -> Vec<&'a serde_json::Value> {
    requests
        .iter()
        .filter(|r| r["form"]["Action"] == action)
        .map(|r| &r["form"])
        .collect()
}

#[test]
fn publishing_registers_tags_copies_and_is_idempotent() {
    let out = common::boot::built_ami_roles();
    let master = out.path().join("master-ami.raw");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("master.manifest.json")).unwrap())
            .unwrap();
    let build_id = manifest["build_id"].as_str().unwrap();
    let aws = Aws::start(&[]);
    let args = [
        "publish",
        "ami",
        master.to_str().unwrap(),
        "--regions",
        "us-east-1,us-west-2",
        "--public",
        "--tpm",
        "--json",
        "--quiet",
    ];

    let result = aws.kato(&args);
    no_secret(&result);
    let record = json(&result);
    let requests = aws.requests();
    let snapshot = record["snapshot"]["snapshot_id"].as_str().unwrap();
    let image = record["image"]["image_id"].as_str().unwrap();
    assert_eq!(record["image"]["reused"], false);

    // RegisterImage carried every parameter (moto keeps few of them, so they are read here).
    let register = calls(&requests, "RegisterImage");
    assert_eq!(register.len(), 1);
    let r = register[0];
    for (key, value) in [
        ("Architecture", "x86_64"),
        ("VirtualizationType", "hvm"),
        ("RootDeviceName", "/dev/xvda"),
        ("BlockDeviceMapping.1.DeviceName", "/dev/xvda"),
        ("BlockDeviceMapping.1.Ebs.SnapshotId", snapshot),
        ("BlockDeviceMapping.1.Ebs.VolumeType", "gp3"),
        ("BlockDeviceMapping.1.Ebs.VolumeSize", "16"),
        ("BlockDeviceMapping.1.Ebs.DeleteOnTermination", "true"),
        ("BlockDeviceMapping.2.DeviceName", "/dev/xvdb"),
        ("BlockDeviceMapping.2.VirtualName", "ephemeral0"),
        ("EnaSupport", "true"),
        ("SriovNetSupport", "simple"),
        ("BootMode", "uefi-preferred"),
        ("ImdsSupport", "v2.0"),
        ("TpmSupport", "v2.0"),
    ] {
        assert_eq!(r[key], value, "RegisterImage {key}");
    }
    assert!(r["Name"].as_str().unwrap().starts_with("kato-master-"));
    assert!(r["Description"].as_str().unwrap().contains(build_id));
    // Tags: role, Flatcar version, build ID and image digest, on the image and its copy.
    let tags = calls(&requests, "CreateTags");
    let tagged: Vec<&str> = tags
        .iter()
        .map(|t| t["ResourceId.1"].as_str().unwrap())
        .collect();
    let copy = record["copies"][0]["image_id"].as_str().unwrap();
    assert_eq!(tagged, [image, copy]);
    for t in &tags {
        let text = t.to_string();
        for expected in [
            "kato:role",
            "kato:flatcar-version",
            "kato:image-blake3",
            "kato:build-id",
            build_id,
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
    }
    let copies = calls(&requests, "CopyImage");
    assert_eq!(
        copies.len(),
        1,
        "us-east-1 is the source; only us-west-2 gets a copy"
    );
    assert_eq!(copies[0]["SourceRegion"], "us-east-1");
    assert_eq!(copies[0]["SourceImageId"], image);
    let public = calls(&requests, "ModifyImageAttribute");
    assert_eq!(public.len(), 2, "the image and its copy are made public");
    assert!(
        public
            .iter()
            .all(|p| p["LaunchPermission.Add.1.Group"] == "all")
    );

    // Again: the build's AMIs are found by their tag and nothing new is made.
    aws.clear();
    let again = json(&aws.kato(&args));
    let requests = aws.requests();
    assert_eq!(again["image"]["image_id"], image);
    assert_eq!(again["image"]["reused"], true);
    assert_eq!(again["copies"][0]["reused"], true);
    assert!(again["snapshot"].is_null());
    assert!(starts(&requests).is_empty(), "no new snapshot");
    assert!(
        calls(&requests, "RegisterImage").is_empty() && calls(&requests, "CopyImage").is_empty()
    );
    // Worker with master as its parent image: master's snapshot is found by master's build ID.
    aws.clear();
    let worker = out.path().join("worker-ami.raw");
    let result = aws.kato(&[
        "publish",
        "ami",
        worker.to_str().unwrap(),
        "--parent",
        master.to_str().unwrap(),
        "--json",
        "--quiet",
    ]);
    let on_master = json(&result);
    let requests = aws.requests();
    let start = starts(&requests)[0];
    assert_eq!(start["json"]["ParentSnapshotId"], snapshot);
    assert_eq!(on_master["snapshot"]["parent_snapshot_id"], snapshot);
    let sent = sent_blocks(&requests).len() as u64;
    let master_blocks = record["snapshot"]["changed_blocks"].as_u64().unwrap();
    assert!(
        sent * 10 < master_blocks,
        "worker sent {sent} blocks on master's {master_blocks}"
    );
}

#[test]
fn build_output_ami_puts_every_role_on_one_snapshot_of_the_vendor_image() {
    let server = Server::start(common::boot::mini_release());
    let template = format!("{}{{channel}}/{{board}}/{{version}}/", server.url());
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let aws = Aws::start(&[]);
    let mut args: Vec<std::ffi::OsString> = [
        "build",
        "--quiet",
        "--role",
        "master,worker",
        "--output",
        "ami",
        "--json",
    ]
    .map(Into::into)
    .to_vec();
    args.extend(common::boot::mini_build_args(
        &template,
        cache.path(),
        out.path(),
    ));
    let result = aws.kato(&args);
    no_secret(&result);
    let summary = json(&result);
    let requests = aws.requests();
    let manifest = |role: &str| -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(out.path().join(format!("{role}.manifest.json"))).unwrap(),
        )
        .unwrap()
    };
    let (master, worker) = (manifest("master"), manifest("worker"));
    let ami_disk = |m: &serde_json::Value| m["disks"][0].clone();
    assert_eq!(
        ami_disk(&master)["from"],
        "flatcar_production_ami_image.bin.bz2"
    );
    assert_eq!(ami_disk(&master)["file"], "master-ami.raw");
    assert!(out.path().join("master-ami.raw").exists());
    assert!(
        !out.path().join("master.raw").exists(),
        "--output ami alone makes no generic image"
    );
    let started = starts(&requests);
    assert_eq!(
        started.len(),
        3,
        "the vendor image once, then each role on it"
    );
    assert!(started[0]["json"]["ParentSnapshotId"].is_null());
    assert!(
        started[0]["json"]["Tags"]
            .to_string()
            .contains("kato:base-sha512")
    );
    let base_blocks = sent_blocks(&requests).len() as u64;
    for role in [&master, &worker] {
        let snapshot = &ami_disk(role)["ami"]["snapshot"];
        assert!(snapshot["parent_snapshot_id"].is_string(), "{snapshot}");
        assert!(
            snapshot["changed_blocks"].as_u64().unwrap() * 4 < base_blocks,
            "a role sends only what it changed: {snapshot} of {base_blocks}"
        );
    }
    assert_eq!(
        ami_disk(&master)["ami"]["snapshot"]["parent_snapshot_id"],
        ami_disk(&worker)["ami"]["snapshot"]["parent_snapshot_id"]
    );
    assert_eq!(calls(&requests, "RegisterImage").len(), 2);
    assert_eq!(
        summary[1]["disks"][0]["ami"]["image"]["image_id"],
        ami_disk(&worker)["ami"]["image"]["image_id"]
    );
    // The image's tag names its digest, which the manifest written after publishing has.
    let tags = calls(&requests, "CreateTags");
    let worker_image = ami_disk(&worker)["ami"]["image"]["image_id"].clone();
    let tagged = tags
        .iter()
        .find(|t| t["ResourceId.1"] == worker_image)
        .unwrap()
        .to_string();
    let digest = ami_disk(&worker)["blake3"].as_str().unwrap().to_string();
    assert!(tagged.contains("kato:image-blake3"), "{tagged}");
    assert!(tagged.contains(&digest), "{tagged}");
    assert_eq!(
        digest,
        common::disk::b3sum(&out.path().join("worker-ami.raw"))
    );

    // `verify --ami`: the AMI's root snapshot (the base's blocks and the role's, as EBS lists
    // a child's) holds the image byte for byte; each block it has is read once.
    let master_ami = ami_disk(&master)["ami"]["image"]["image_id"]
        .as_str()
        .unwrap()
        .to_string();
    let image = out.path().join("master-ami.raw");
    let verify = |aws: &Aws| {
        aws.kato(&[
            "verify".as_ref(),
            image.as_os_str(),
            "--ami".as_ref(),
            std::ffi::OsStr::new(&master_ami),
            "--json".as_ref(),
        ])
    };
    aws.clear();
    let verified = verify(&aws);
    no_secret(&verified);
    let report = json(&verified);
    assert!(report["ami"]["first_difference"].is_null(), "{report}");
    let read = report["ami"]["blocks_read"].as_u64().unwrap();
    assert!(
        read > 0 && read < report["ami"]["blocks"].as_u64().unwrap(),
        "{report}"
    );
    let gets = aws
        .requests()
        .iter()
        .filter(|r| r["method"] == "GET" && r["path"].as_str().unwrap().contains("/blocks/"))
        .count();
    assert_eq!(
        gets as u64, read,
        "GetSnapshotBlock once per block the snapshot has"
    );
    // A byte of the image changed after publishing: the block is named, non-zero exit.
    let original = std::fs::read(&image).unwrap();
    let mut changed = original.clone();
    changed[100] ^= 0xff;
    std::fs::write(&image, &changed).unwrap();
    let differs = verify(&aws);
    assert!(!differs.status.success());
    let stderr = String::from_utf8_lossy(&differs.stderr);
    assert!(
        stderr.contains("differs from") && stderr.contains("at block 0 (byte 0)"),
        "{stderr}"
    );
    std::fs::write(&image, &original).unwrap();

    // A later run finds the base snapshot and the AMIs by their tags and uploads nothing.
    aws.clear();
    let again = json(&aws.kato(&args));
    let requests = aws.requests();
    assert!(starts(&requests).is_empty(), "nothing uploaded again");
    assert_eq!(again[0]["disks"][0]["ami"]["image"]["reused"], true);
}

/// A 4 MiB sparse image with one block of data, and a build manifest beside it: enough for
/// tests about the AWS side alone.
fn small_image(dir: &std::path::Path) -> std::path::PathBuf {
    let image = dir.join("small.raw");
    let file = std::fs::File::create(&image).unwrap();
    file.set_len(4 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, b"data", 1 << 20).unwrap();
    drop(file);
    let manifest = serde_json::json!({
        "tool": {"name": "kato-image", "version": "0"},
        "build_id": "b-small",
        "role": "small",
        "release": {"channel": "stable", "board": "amd64-usr", "requested_version": "1.2.3",
                    "version": "1.2.3", "base_url": "http://mirror/", "insecure_skip_signature": false},
        "vendor": [],
        "profiles": [],
        "config": {"format": "ignition", "spec": "3.3.0", "path": "config.ign", "sha256": ""},
        "kernel_args": [],
        "timestamp": 0,
        "disks": [{"file": "small.raw", "from": "flatcar_production_ami_image.bin.bz2", "size": 4 << 20,
                   "blake3": common::disk::b3sum(&image), "partitions": [], "changed_partitions": []}],
    });
    std::fs::write(
        dir.join("small.manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    image
}

fn one_line_error(out: &std::process::Output, expected: &str) {
    no_secret(out);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(expected), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

#[test]
fn pending_snapshots_and_images_are_waited_for_and_a_wait_can_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let image = small_image(dir.path());
    let image = image.to_str().unwrap();
    let aws = Aws::start_with(&["--complete-after", "3", "--images-pending", "3"], &[]);

    let record = json(&aws.kato(&["publish", "ami", image, "--json", "--quiet"]));
    let snapshot = record["snapshot"]["snapshot_id"].as_str().unwrap();
    let requests = aws.requests();
    let polls: Vec<usize> = requests
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            r["form"]["Action"] == "DescribeSnapshots" && r["form"]["SnapshotId.1"] == snapshot
        })
        .map(|(i, _)| i)
        .collect();
    assert!(polls.len() >= 2, "polled while pending: {polls:?}");
    let register = requests
        .iter()
        .position(|r| r["form"]["Action"] == "RegisterImage")
        .expect("registered");
    assert!(
        register > *polls.last().unwrap(),
        "registered after completion"
    );
    let image_id = record["image"]["image_id"].as_str().unwrap();
    let image_polls = requests
        .iter()
        .filter(|r| r["form"]["Action"] == "DescribeImages" && r["form"]["ImageId.1"] == image_id)
        .count();
    assert!(image_polls >= 2, "the pending image was waited for");

    // A snapshot pending for longer than the wait: one line, and no AMI.
    let aws = Aws::start_with(&["--complete-after", "120"], &[]);
    let out = aws.kato(&["publish", "ami", image, "--wait-timeout", "3", "--quiet"]);
    one_line_error(&out, "is still pending after 3 s");
    let requests = aws.requests();
    assert!(calls(&requests, "RegisterImage").is_empty());
    let out = aws.kato(&[
        "publish",
        "snapshot",
        image,
        "--wait",
        "--wait-timeout",
        "1",
        "--quiet",
    ]);
    one_line_error(&out, "is still pending after 1 s");
}

#[test]
fn a_failed_snapshot_is_reported_and_nothing_is_registered() {
    let dir = tempfile::tempdir().unwrap();
    let image = small_image(dir.path());
    let aws = Aws::start_with(&["--complete-as", "error"], &[]);
    let out = aws.kato(&["publish", "ami", image.to_str().unwrap(), "--quiet"]);
    one_line_error(&out, "is in state error");
    assert!(calls(&aws.requests(), "RegisterImage").is_empty());
}

#[test]
fn a_block_size_other_than_ebs_is_refused_before_any_block_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let image = small_image(dir.path());
    let aws = Aws::start_with(&["--ebs-block-size", "512"], &[]);
    let out = aws.kato(&["publish", "snapshot", image.to_str().unwrap(), "--quiet"]);
    one_line_error(&out, "block size 512");
    assert!(sent_blocks(&aws.requests()).is_empty());
}

#[test]
fn a_parent_image_whose_snapshot_is_not_found_is_named_before_any_upload() {
    let dir = tempfile::tempdir().unwrap();
    let image = small_image(dir.path());
    let image = image.to_str().unwrap();
    let aws = Aws::start(&[]);
    let out = aws.kato(&["publish", "ami", image, "--parent", image, "--quiet"]);
    one_line_error(&out, "no completed snapshot tagged kato:build-id=b-small");
    assert!(starts(&aws.requests()).is_empty(), "no snapshot started");
}

/// One build, two EC2 images under one manifest and build ID: publishing one never reuses
/// the AMI made of the other, and the same image published again is reused.
#[test]
fn images_of_one_build_get_their_own_amis() {
    let dir = tempfile::tempdir().unwrap();
    let raw = small_image(dir.path());
    let ami = dir.path().join("small-ami.raw");
    let file = std::fs::File::create(&ami).unwrap();
    file.set_len(4 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, b"other", 2 << 20).unwrap();
    drop(file);
    let manifest_path = dir.path().join("small.manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let mut second = manifest["disks"][0].clone();
    second["file"] = "small-ami.raw".into();
    second["blake3"] = common::disk::b3sum(&ami).into();
    manifest["disks"].as_array_mut().unwrap().push(second);
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();

    let aws = Aws::start(&[]);
    let publish = |image: &std::path::Path| {
        json(&aws.kato(&[
            "publish",
            "ami",
            image.to_str().unwrap(),
            "--json",
            "--quiet",
        ]))
    };
    let first = publish(&ami);
    let other = publish(&raw);
    assert_eq!(other["image"]["reused"], false, "{other}");
    assert_ne!(first["image"]["image_id"], other["image"]["image_id"]);
    let again = publish(&raw);
    assert_eq!(again["image"]["reused"], true, "{again}");
    assert_eq!(again["image"]["image_id"], other["image"]["image_id"]);
    assert_eq!(calls(&aws.requests(), "RegisterImage").len(), 2);
}

/// The root volume's settings: RegisterImage gets the size, IOPS and throughput asked for;
/// an io1 or io2 volume without IOPS (which RegisterImage refuses after the whole upload) is
/// refused first, in the profile and on the command line.
#[test]
fn volume_settings_reach_register_image_and_io1_without_iops_is_refused_first() {
    let dir = tempfile::tempdir().unwrap();
    let image = small_image(dir.path());
    let image = image.to_str().unwrap();
    let aws = Aws::start(&[]);
    json(&aws.kato(&[
        "publish",
        "ami",
        image,
        "--volume-size",
        "20",
        "--iops",
        "4000",
        "--throughput",
        "250",
        "--json",
        "--quiet",
    ]));
    let requests = aws.requests();
    let register = calls(&requests, "RegisterImage");
    for (key, value) in [
        ("BlockDeviceMapping.1.Ebs.VolumeType", "gp3"),
        ("BlockDeviceMapping.1.Ebs.VolumeSize", "20"),
        ("BlockDeviceMapping.1.Ebs.Iops", "4000"),
        ("BlockDeviceMapping.1.Ebs.Throughput", "250"),
    ] {
        assert_eq!(register[0][key], value, "RegisterImage {key}");
    }
    aws.clear();
    for (args, expected) in [
        (
            vec!["--volume-type", "io1"],
            "--iops: a io1 volume needs its provisioned IOPS",
        ),
        (
            vec!["--volume-type", "io2", "--iops", "50"],
            "--iops: 50: a 16 GiB io2 volume takes 100 to",
        ),
        (
            vec!["--volume-type", "gp2", "--throughput", "200"],
            "--throughput: only gp3",
        ),
    ] {
        let out = aws.kato(&[&["publish", "ami", image, "--quiet"][..], &args].concat());
        one_line_error(&out, expected);
    }
    assert!(aws.requests().is_empty(), "nothing sent to AWS");
    // In a profile: refused when the build is planned, at the profile.
    let scratch = common::Scratch::new();
    scratch.write(
        "profiles/probe.yaml",
        "extends: base\noutputs:\n  ami:\n    volume_type: io2\n",
    );
    let out = scratch
        .kato(&["validate", "--role", "probe"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("probe.yaml") && stderr.contains("outputs.ami.iops"),
        "{stderr}"
    );
}
