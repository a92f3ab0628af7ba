//! Inputs an attacker (or a tired colleague) would try: each is refused with one line that
//! names the place and says what was expected in the user's words, shows no raw control
//! characters, allocates nothing it was told to, and leaves nothing written.

use crate::common;

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use common::Scratch;

/// Runs `args` in `scratch` and returns its only stderr line; it must fail with status 1.
fn one_line(scratch: &Scratch, args: &[&str]) -> String {
    let out = scratch.kato(args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        !stderr.trim_end().chars().any(|c| c.is_control()),
        "no raw control characters: {stderr:?}"
    );
    stderr.trim_end().to_string()
}

fn has(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "`{part}` not in: {text}");
    }
}

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICeqYq3o6EwZpjNghiYqZZUXR+tcJ8ybtPzLXmGECI7k ops@example.org";

#[test]
fn a_second_line_smuggled_into_a_key_is_refused() {
    let scratch = Scratch::new();
    scratch.write(
        "profiles/probe.yaml",
        &format!(
            "extends: base\nusers:\n  - name: ops\n    ssh_authorized_keys:\n      - |\n        {KEY}\n        command=\"rm -rf /\" not a key at all\n"
        ),
    );
    let error = one_line(&scratch, &["render", "--role", "probe"]);
    has(
        &error,
        &[
            "profiles/probe.yaml:6:",
            "holds 2 lines; give one key per entry",
        ],
    );
}

#[test]
fn key_options_need_the_profile_to_allow_them() {
    let restricted = format!("command=\"/usr/bin/backup\",no-pty {KEY}");
    let scratch = Scratch::new();
    scratch.write(
        "profiles/probe.yaml",
        &format!(
            "extends: base\nusers:\n  - name: backup\n    ssh_authorized_keys: ['{restricted}']\n"
        ),
    );
    let error = one_line(&scratch, &["render", "--role", "probe"]);
    has(&error, &["starts with options", "ssh_key_options: true"]);
    scratch.write(
        "profiles/probe.yaml",
        &format!(
            "extends: base\nusers:\n  - name: backup\n    ssh_key_options: true\n    ssh_authorized_keys: ['{restricted}']\n"
        ),
    );
    let out = scratch
        .kato(&["render", "--role", "probe"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no-pty ssh-ed25519"));
}

#[test]
fn names_and_documents_a_profile_cannot_hold() {
    let scratch = Scratch::new();
    for (yaml, expected) in [
        (
            "extends: base\nfiles:\n  - path: /etc/x\n    user: \"ro:ot\"\n    contents: x\n",
            &[
                "profiles/probe.yaml:3:",
                "\"ro:ot\" of `/etc/x` is not a user or group name",
            ][..],
        ),
        (
            "extends: base\nextends: base\n",
            &["profiles/probe.yaml:2:", "`extends` is given twice"],
        ),
        (
            "extends: base\n---\nextends: base\n",
            &["one YAML document", "more than one"],
        ),
        (
            "extends: base\nimages:\n  - path: x.tar\n",
            &["profiles/probe.yaml:3:", "unknown field `path`", "archive"],
        ),
        (
            "extends: base\nimages:\n  - 42\n",
            &["profiles/probe.yaml:3:", "an image reference", "`archive:`"],
        ),
        (
            "extends: base\nunits:\n  - [cadvisor.service]\n",
            &[
                "profiles/probe.yaml:3:",
                "a unit name such as cadvisor.service",
            ],
        ),
        (
            "extends: base\nmetadata:\n  zone: [a, b]\n",
            &["profiles/probe.yaml:3:", "a single value"],
        ),
        (
            "extends: base\noutputs:\n  ami:\n    volume_type: floppy\n",
            &["profiles/probe.yaml:4:", "floppy", "gp3"],
        ),
    ] {
        scratch.write("profiles/probe.yaml", yaml);
        let error = one_line(&scratch, &["render", "--role", "probe"]);
        has(&error, expected);
        for word in [
            "DuplicateKeyPolicy",
            "from_str_multiple",
            "untagged enum",
            "Options",
        ] {
            assert!(!error.contains(word), "library words: {error}");
        }
    }
}

/// A value of the wrong type is told as the writer thinks of it (a list, text, a whole number
/// in its range), never as the parser does (a sequence start, a string scalar, u32).
#[test]
fn a_value_of_the_wrong_type_is_told_in_the_profile_writers_words() {
    let scratch = Scratch::new();
    let mac = "mac: \"52:54:00:12:34:56\"";
    for (yaml, expected) in [
        (
            format!("extends: base\nmachines:\n  - {{{mac}, instance: abc}}\n"),
            "expected a whole number from 0 to 4294967295",
        ),
        (
            format!("extends: base\nmachines:\n  - {{{mac}, instance: -1}}\n"),
            "expected a whole number from 0 to 4294967295",
        ),
        (
            "extends: base\nmachines:\n  - {mac: [1]}\n".to_string(),
            "expected text, not a list or a map",
        ),
        (
            "extends: base\nusers:\n  - {name: a, groups: wheel}\n".to_string(),
            "expected a list",
        ),
        (
            "extends: base\nrelease: [stable]\n".to_string(),
            "expected a map",
        ),
        (
            "extends: base\nusers:\n  - {name: a, ssh_key_options: 3}\n".to_string(),
            "expected true or false",
        ),
        (
            "extends: base\nmetadata:\n  zone: [a, b]\n".to_string(),
            "a single value (text, a number, true or false), not a list or map, found a list",
        ),
    ] {
        scratch.write("profiles/probe.yaml", &yaml);
        let error = one_line(&scratch, &["render", "--role", "probe"]);
        has(&error, &["profiles/probe.yaml:", expected]);
        for word in [
            "u32",
            "scalar",
            "sequence",
            "mapping",
            "invalid type",
            "boolean",
        ] {
            assert!(!error.contains(word), "parser words: {error}");
        }
    }
}

#[test]
fn an_empty_base_profile_is_an_error_not_a_silent_loss() {
    let scratch = Scratch::new();
    scratch.write("profiles/base.yaml", "# nothing yet\n");
    let error = one_line(&scratch, &["validate"]);
    has(&error, &["profiles/base.yaml", "the profile is empty"]);
}

#[test]
fn a_unit_for_a_role_no_profile_defines_is_named() {
    let scratch = Scratch::new();
    scratch.write(
        "units/typo.service",
        "[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineMetadata=role=wroker\n",
    );
    let error = one_line(&scratch, &["validate"]);
    has(
        &error,
        &[
            "units/typo.service",
            "role \"wroker\"",
            "no profile defines",
        ],
    );
}

#[test]
fn things_named_like_units_that_are_not_units_are_said_so() {
    let scratch = Scratch::new();
    std::fs::create_dir(scratch.path("units/folder.service")).unwrap();
    let error = one_line(&scratch, &["validate"]);
    has(&error, &["folder.service", "is a folder, not a unit file"]);
    std::fs::remove_dir(scratch.path("units/folder.service")).unwrap();
    std::os::unix::fs::symlink("gone.service", scratch.path("units/dangling.service")).unwrap();
    let error = one_line(&scratch, &["validate"]);
    has(
        &error,
        &[
            "dangling.service",
            "a symbolic link to gone.service, which does not exist",
        ],
    );
}

#[test]
fn control_characters_from_input_are_shown_escaped() {
    let scratch = Scratch::new();
    let error = one_line(
        &scratch,
        &["render", "--role", "x\u{1b}]0;owned\u{7}\u{1b}[2J"],
    );
    has(&error, &["unknown role", r"\u{1b}"]);
}

#[test]
fn a_mac_in_two_roles_is_refused_by_validate_and_build_writes_nothing() {
    let scratch = Scratch::new();
    for role in ["master", "worker"] {
        let path = format!("profiles/{role}.yaml");
        let text = std::fs::read_to_string(scratch.path(&path)).unwrap();
        scratch.write(&path, &format!("{text}machines: [\"52:54:00:00:00:01\"]\n"));
    }
    let error = one_line(&scratch, &["validate"]);
    has(
        &error,
        &[
            "machine 52:54:00:00:00:01 is listed for role",
            "and for role",
        ],
    );
    let out = tempfile::tempdir().unwrap();
    let error = one_line(
        &scratch,
        &[
            "build",
            "--role",
            "all",
            "--output",
            "ipxe",
            "--offline",
            "--out",
            out.path().to_str().unwrap(),
        ],
    );
    has(&error, &["52:54:00:00:00:01"]);
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        0,
        "nothing written"
    );
}

/// The fixture with its primary GPT header claiming `entries` entries, CRC fixed up.
fn gpt_claiming(dir: &Path, entries: u32) -> std::path::PathBuf {
    gpt_primary_with(dir, entries, 128)
}

/// The fixture with its primary header claiming `entries` entries of `size` bytes, its CRC
/// recomputed so that only the claim is wrong; the backup header stays intact.
fn gpt_primary_with(dir: &Path, entries: u32, size: u32) -> std::path::PathBuf {
    let path = common::disk::fixture_copy(dir, &format!("claims-{entries}-{size}.raw"));
    gpt_header_claims(&path, 512, entries, size);
    path
}

/// Makes the GPT header at byte `at` of `path` claim `entries` entries of `size` bytes, with
/// its CRC recomputed.
fn gpt_header_claims(path: &Path, at: u64, entries: u32, size: u32) {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut header = [0u8; 92];
    file.seek(SeekFrom::Start(at)).unwrap();
    std::io::Read::read_exact(&mut file, &mut header).unwrap();
    header[80..84].copy_from_slice(&entries.to_le_bytes());
    header[84..88].copy_from_slice(&size.to_le_bytes());
    header[16..20].fill(0);
    let crc = common::disk::crc32(&header);
    header[16..20].copy_from_slice(&crc.to_le_bytes());
    file.seek(SeekFrom::Start(at)).unwrap();
    file.write_all(&header).unwrap();
}

/// A backup header that lies is bounded as the primary is, with or without
/// `--use-backup-gpt`, and two lying headers are said to be two.
#[test]
fn a_lying_backup_header_and_two_lying_headers_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let image = common::disk::fixture_copy(dir.path(), "backup-lies.raw");
    let backup = std::fs::metadata(&image).unwrap().len() - 512;
    gpt_header_claims(&image, backup, u32::MAX, 128);
    let inspect = |flags: &[&str]| {
        let out = common::kato()
            .args(["inspect", "--quiet"])
            .args(flags)
            .arg(&image)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        stderr
    };
    for flags in [&[][..], &["--use-backup-gpt"]] {
        has(
            &inspect(flags),
            &[
                &format!("backup GPT header at LBA {}", backup / 512),
                "4294967295 partition entries of 128 bytes exceed",
            ],
        );
    }
    gpt_header_claims(&image, 512, 0, 0);
    has(
        &inspect(&[]),
        &[
            "both GPT headers are damaged: the primary at LBA 1 (",
            "the backup at LBA",
        ],
    );
}

#[test]
fn a_gpt_claiming_two_billion_entries_is_refused_before_anything_is_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let image = gpt_claiming(dir.path(), 0x7fff_ffff);
    let out = common::kato()
        .args(["inspect", "--quiet"])
        .arg(&image)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    has(
        &stderr,
        &[
            "2147483647 partition entries of 128 bytes exceed",
            "pass --use-backup-gpt",
        ],
    );
}

/// The advice the refusal gives, taken: the backup header is read and the lying primary is
/// never handed to gptman (which allocated 652 GB for 0xFFFFFFFF entries, and panicked on
/// entries of 0 bytes). sgdisk, the judge, also reads the backup.
#[test]
fn use_backup_gpt_reads_the_backup_whatever_the_primary_claims() {
    let dir = tempfile::tempdir().unwrap();
    for (entries, size) in [(u32::MAX, 128), (128, 0), (4, 64)] {
        let image = gpt_primary_with(dir.path(), entries, size);
        let out = common::kato()
            .args(["inspect", "--quiet", "--use-backup-gpt", "--json"])
            .arg(&image)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{entries} x {size}: {stderr}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["table_from_backup"], true);
        let slots: Vec<u64> = report["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["slot"].as_u64().unwrap())
            .collect();
        // The table sgdisk reads on the undamaged disk.
        let (_, table) = common::disk::sgdisk_table(common::disk::fixture());
        let expected: Vec<u64> = table.iter().map(|p| u64::from(p.slot)).collect();
        assert_eq!(slots, expected, "{entries} x {size}");
    }
}

#[test]
fn a_damaged_compressed_image_is_one_line_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("image.bin.bz2");
    let mut bytes = b"BZh91AY&SY".to_vec();
    bytes.extend(common::signing::pseudo_random(2_000_000, 5));
    std::fs::write(&bad, bytes).unwrap();
    let out = common::kato().arg("inspect").arg(&bad).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr.lines().count(),
        1,
        "no progress lines first: {stderr}"
    );
    has(&stderr, &["image.bin.bz2: bzip2 data is corrupt"]);
}

#[test]
fn publish_checks_the_image_against_its_own_manifest_before_any_aws_call() {
    let mirror = common::mirror::Mirror::with_image(common::disk::fixture());
    let out = tempfile::tempdir().unwrap();
    let built = mirror.build_with(
        common::kato(),
        out.path(),
        &[
            "--role",
            "master,worker",
            "--output",
            "raw,ami",
            "--no-publish",
        ],
    );
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let generic = out.path().join("master.raw");
    let master = out.path().join("master-ami.raw");
    // Any AWS call would fail otherwise (nothing listens there).
    let publish = |args: &[&str]| {
        let out = common::kato()
            .args(["publish", "ami"])
            .args(args)
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", "secret")
            .env("AWS_REGION", "us-east-1")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        stderr
    };
    let worker_manifest = out.path().join("worker.manifest.json");
    let error = publish(&[
        master.to_str().unwrap(),
        "--manifest",
        worker_manifest.to_str().unwrap(),
    ]);
    has(
        &error,
        &["the manifest of role worker lists worker.raw, worker-ami.raw, not master-ami.raw"],
    );
    // The generic image has no EC2 OEM: the one to publish is named.
    for dry in [false, true] {
        let mut args = vec![generic.to_str().unwrap()];
        if dry {
            args.push("--dry-run");
        }
        has(
            &publish(&args),
            &[
                "Flatcar's generic image, which lacks EC2's OEM",
                "publish master-ami.raw",
            ],
        );
    }
    // One byte changed after the build.
    let (_, table) = common::disk::sgdisk_table(&master);
    let usr = table.iter().find(|p| p.name == "USR-A").unwrap();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&master)
        .unwrap();
    file.seek(SeekFrom::Start(usr.first * 512 + 70_000))
        .unwrap();
    file.write_all(b"!").unwrap();
    drop(file);
    for dry in [false, true] {
        let mut args = vec![master.to_str().unwrap()];
        if dry {
            args.push("--dry-run");
        }
        has(&publish(&args), &["the image changed after its build"]);
    }
    // No manifest at all, even for a dry run.
    let lone = out.path().join("lone.raw");
    std::fs::copy(&master, &lone).unwrap();
    has(
        &publish(&[lone.to_str().unwrap(), "--dry-run"]),
        &["lone.manifest.json", "pass --manifest FILE"],
    );
}

#[test]
fn temporaries_of_killed_runs_are_removed() {
    let mirror = common::mirror::Mirror::with_image(common::disk::fixture());
    let out = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(mirror.cache.path().join("raw")).unwrap();
    // What kill -9 leaves: temporaries of a process that no longer runs.
    let dead = 4_000_000_000u64;
    let left = [
        out.path().join(format!(".master.raw.{dead}.0.tmp")),
        mirror
            .cache
            .path()
            .join(format!("raw/.abc.raw.{dead}.1.tmp")),
    ];
    for path in &left {
        std::fs::write(path, b"half").unwrap();
    }
    let built = mirror.build_with(common::kato(), out.path(), &["--role", "edge"]);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    for path in &left {
        assert!(!path.exists(), "{} was left", path.display());
    }
    let locks: Vec<_> = std::fs::read_dir(mirror.cache.path().join("partial"))
        .unwrap()
        .flatten()
        .collect();
    assert!(locks.is_empty(), "nothing left in partial/: {locks:?}");
}

/// The binary as a plain process, to hand it any stdout.
fn kato_std() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kato-image"));
    cmd.current_dir(common::repo());
    cmd
}

#[test]
fn a_reader_that_stops_reading_ends_a_report_quietly_and_a_full_disk_is_an_error() {
    // `kato-image … | head -1`: the pipe's reader is gone before the first line.
    let commands: [&[&str]; 4] = [
        &["render", "--role", "master"],
        &["validate"],
        &["man"],
        &["completions", "bash"],
    ];
    for args in commands {
        let run = |stdout: std::process::Stdio| {
            let out = kato_std()
                .args(args)
                .stdout(stdout)
                .stderr(std::process::Stdio::piped())
                .output()
                .unwrap();
            (
                out.status,
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let (status, stderr) = run(writer.into());
        assert!(status.success(), "{args:?}: {status:?} {stderr}");
        assert!(stderr.is_empty(), "{args:?} said: {stderr}");
        // A write that fails for any other reason is an error, on one line.
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let (status, stderr) = run(full.into());
        assert_eq!(status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        has(&stderr, &["cannot write", "No space left on device"]);
    }
}

/// What a CI runner holds, outside the profiles folder: its bytes must never reach a config.
const SECRET: &str = "TOPSECRET-runner-credential-0451";

/// A project whose profiles folder has links leading out of it: to a file, through a linked
/// folder, and a tree folder that is itself a link.
fn leaky_project() -> Scratch {
    let scratch = Scratch::new();
    std::fs::write(scratch.path("secret.txt"), format!("{SECRET}\n")).unwrap();
    std::fs::create_dir(scratch.path("outside-tree")).unwrap();
    std::fs::write(scratch.path("outside-tree/a.txt"), SECRET).unwrap();
    let link = |target: &Path, name: &str| {
        std::os::unix::fs::symlink(target, scratch.path(&format!("profiles/{name}"))).unwrap()
    };
    link(&scratch.path("secret.txt"), "leak.txt");
    link(&scratch.path("secret.txt"), "leak.bu");
    link(scratch.dir.path(), "up");
    link(&scratch.path("outside-tree"), "linktree");
    scratch
}

#[test]
fn no_file_outside_the_profiles_folder_reaches_a_config() {
    let scratch = leaky_project();
    let butane = |body: &str| format!("variant: flatcar\nversion: 1.1.0\n{body}");
    let fragments = [
        (
            "local.bu",
            butane("storage:\n  files:\n    - path: /etc/a\n      contents: {local: leak.txt}\n"),
        ),
        (
            "folder.bu",
            butane(
                "storage:\n  files:\n    - path: /etc/a\n      contents: {local: up/secret.txt}\n",
            ),
        ),
        (
            "unit.bu",
            butane("systemd:\n  units:\n    - name: a.service\n      contents_local: leak.txt\n"),
        ),
        (
            "dropin.bu",
            butane(
                "systemd:\n  units:\n    - name: a.service\n      dropins:\n        - {name: a.conf, contents_local: leak.txt}\n",
            ),
        ),
        (
            "keys.bu",
            butane(
                "passwd:\n  users:\n    - name: ops\n      ssh_authorized_keys_local: [leak.txt]\n",
            ),
        ),
        (
            "tree.bu",
            butane("storage:\n  trees:\n    - local: linktree\n"),
        ),
    ];
    let mut profiles: Vec<String> = fragments
        .iter()
        .map(|(name, text)| {
            scratch.write(&format!("profiles/{name}"), text);
            format!("extends: base\nignition:\n  - butane: {name}\n")
        })
        .collect();
    profiles.extend([
        "extends: base\nignition:\n  - butane: leak.bu\n".to_string(),
        "extends: base\nignition:\n  - butane: ../secret.txt\n".to_string(),
        format!(
            "extends: base\nignition:\n  - butane: {}\n",
            scratch.path("secret.txt").display()
        ),
        "extends: base\nfiles:\n  - path: /etc/a\n    source: leak.txt\n".to_string(),
        "extends: base\nfiles:\n  - path: /etc/a\n    source: ../secret.txt\n".to_string(),
        format!(
            "extends: base\nfiles:\n  - path: /etc/a\n    source: {}\n",
            scratch.path("secret.txt").display()
        ),
        "extends: base\nimages:\n  - archive: leak.txt\n".to_string(),
    ]);
    for profile in &profiles {
        scratch.write("profiles/probe.yaml", profile);
        for command in [
            &["render", "--role", "probe"][..],
            &["validate", "--role", "probe"],
        ] {
            let out = scratch.kato(command).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                !out.status.success(),
                "{profile}: {command:?} succeeded: {stdout}"
            );
            assert_eq!(stderr.trim_end().lines().count(), 1, "{profile}: {stderr}");
            assert!(stderr.contains("leads outside"), "{profile}: {stderr}");
            assert!(
                !stderr.contains(SECRET) && !stdout.contains(SECRET),
                "{profile}: {stderr}"
            );
        }
    }
    // Links that stay inside are followed, and a link inside a tree stays a link.
    std::fs::create_dir(scratch.path("profiles/tree")).unwrap();
    std::fs::write(scratch.path("profiles/tree/a.txt"), "inside").unwrap();
    std::os::unix::fs::symlink("a.txt", scratch.path("profiles/tree/b")).unwrap();
    std::os::unix::fs::symlink("tree/a.txt", scratch.path("profiles/inside.txt")).unwrap();
    scratch.write(
        "profiles/ok.bu",
        "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/a\n      contents: {local: inside.txt}\n  trees:\n    - {local: tree, path: /opt/t}\n",
    );
    scratch.write(
        "profiles/probe.yaml",
        "extends: base\nignition:\n  - butane: ok.bu\n",
    );
    let config = scratch.rendered("probe");
    let links = config["storage"]["links"].as_array().unwrap();
    assert!(
        links
            .iter()
            .any(|l| l["path"] == "/opt/t/b" && l["target"] == "a.txt")
    );
    // A unit file that is a link out of the units folder is not one of its units; the
    // message names it once.
    std::os::unix::fs::symlink(
        scratch.path("secret.txt"),
        scratch.path("units/evil.service"),
    )
    .unwrap();
    let error = one_line(&scratch, &["render", "--role", "master"]);
    has(&error, &["units/evil.service: leads outside"]);
    assert_eq!(error.matches("evil.service").count(), 1, "{error}");
    assert!(!error.contains(SECRET), "{error}");
    std::fs::remove_file(scratch.path("units/evil.service")).unwrap();
    // --files-dir names one more folder files may come from.
    scratch.write(
        "profiles/probe.yaml",
        "extends: base\nfiles:\n  - path: /etc/a\n    source: ../outside-tree/a.txt\n",
    );
    let out = scratch
        .kato(&["render", "--role", "probe", "--files-dir", "outside-tree"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `command` with a bound: a read that blocks (a FIFO) must not hang the test.
fn bounded(mut command: assert_cmd::Command) -> std::process::Output {
    command
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap()
}

#[test]
fn special_files_are_refused_by_name_and_every_read_is_bounded() {
    let scratch = Scratch::new();
    let fifo = scratch.path("profiles/fifo.bu");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string naming a new file.
    assert_eq!(unsafe { libc_mkfifo(c.as_ptr(), 0o600) }, 0);
    let big = std::fs::File::create(scratch.path("profiles/big.txt")).unwrap();
    big.set_len(65 << 20).unwrap();
    for (profile, expected) in [
        (
            "extends: base\nignition:\n  - butane: fifo.bu\n",
            "fifo.bu is a FIFO, not a regular file",
        ),
        (
            "extends: base\nfiles:\n  - path: /etc/a\n    source: fifo.bu\n",
            "fifo.bu is a FIFO, not a regular file",
        ),
        (
            "extends: base\nfiles:\n  - path: /etc/a\n    source: big.txt\n",
            "big.txt is larger than the 64 MiB a file in a config may have",
        ),
    ] {
        scratch.write("profiles/probe.yaml", profile);
        let out = bounded(scratch.kato(&["render", "--role", "probe"]));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{profile}: {stderr}");
        assert!(stderr.contains(expected), "{profile}: {stderr}");
    }
    // The signing key and its passphrase file: devices and FIFOs are refused by name before
    // anything is read from them.
    std::fs::remove_file(scratch.path("profiles/probe.yaml")).unwrap();
    for (args, expected) in [
        (
            vec!["--sign-key", "/dev/zero"],
            "the signing key (--sign-key): /dev/zero is a device",
        ),
        (
            vec!["--sign-key", "/dev/urandom"],
            "/dev/urandom is a device",
        ),
        (vec!["--sign-key", "profiles/fifo.bu"], "is a FIFO"),
    ] {
        let mut command = scratch.kato(&["build", "--role", "master", "--offline"]);
        command.args(&args);
        let out = bounded(command);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
}

unsafe extern "C" {
    #[link_name = "mkfifo"]
    fn libc_mkfifo(path: *const std::os::raw::c_char, mode: u32) -> i32;
}
