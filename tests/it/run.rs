//! `kato-image run`: boots a built image under QEMU as a person would, and leaves it as it
//! was. Judged by the stand-in's own console markers and the image's SHA-256.

use crate::common;

use std::process::{Command, Stdio};

use common::boot::{built_roles, one_vm};

fn sha256_file(path: &std::path::Path) -> String {
    use sha2::Digest;
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher).unwrap();
    kato_image::cache::hex(&hasher.finalize())
}

#[test]
fn run_boots_the_master_image_and_never_changes_it() {
    let out = built_roles();
    let image = out.path().join("master.raw");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("master.manifest.json")).unwrap())
            .unwrap();
    let before = sha256_file(&image);
    let _one = one_vm();
    // Software emulation: KVM nested in CI machines may hang. `--role` finds out/master.raw.
    let run = Command::new("timeout")
        .arg("300")
        .arg(assert_cmd::cargo::cargo_bin("kato-image"))
        .args([
            "run", "--role", "master", "--accel", "tcg", "--memory", "512",
        ])
        .arg("--out")
        .arg(out.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    drop(_one);
    let console = String::from_utf8_lossy(&run.stdout).replace('\r', "");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}\n{console}");
    assert!(console.contains("KATO-MARKER done"), "{console}");
    let sha = manifest["config"]["sha256"].as_str().unwrap();
    assert!(
        console.contains(&format!("KATO-MARKER config-sha256: {sha}")),
        "the machine read the manifest's config: {console}"
    );
    // What the person is told: the SSH forward and how to leave.
    assert!(stderr.contains("ssh -p "), "{stderr}");
    assert!(stderr.contains("Ctrl-a x"), "{stderr}");
    assert!(stderr.contains("tcg"), "{stderr}");
    // The guest wrote to its disk (first boot clears the ESP's first_boot flag): a snapshot.
    assert_eq!(sha256_file(&image), before, "the image changed");
}

#[test]
fn run_without_qemu_or_firmware_says_what_to_install() {
    let out = built_roles();
    let image = out.path().join("master.raw");
    // No QEMU on PATH.
    let empty = tempfile::tempdir().unwrap();
    let no_qemu = common::kato()
        .args(["run", image.to_str().unwrap()])
        .env("PATH", empty.path())
        .output()
        .unwrap();
    assert!(!no_qemu.status.success());
    let text = String::from_utf8_lossy(&no_qemu.stderr);
    assert_eq!(text.trim_end().lines().count(), 1, "{text}");
    for package in ["qemu-system-x86", "qemu-system-x86-core", "Homebrew"] {
        assert!(text.contains(package), "{text}");
    }
    // Firmware that is not there.
    let no_firmware = common::kato()
        .args([
            "run",
            image.to_str().unwrap(),
            "--firmware",
            "/nonexistent/OVMF.fd",
        ])
        .output()
        .unwrap();
    assert!(!no_firmware.status.success());
    let text = String::from_utf8_lossy(&no_firmware.stderr);
    assert!(text.contains("--firmware /nonexistent/OVMF.fd"), "{text}");
    // A file that is no disk image: refused before QEMU starts.
    let junk = out.path().join("junk.raw");
    std::fs::write(&junk, vec![0u8; 1 << 20]).unwrap();
    let not_disk = common::kato()
        .args(["run", junk.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!not_disk.status.success());
    let text = String::from_utf8_lossy(&not_disk.stderr);
    assert!(
        text.contains("junk.raw: not a bootable disk image"),
        "{text}"
    );
    assert_eq!(text.trim_end().lines().count(), 1, "{text}");
}

/// `scripts/demo` run by a person at a terminal (a tmux pane, whose keys and answers reach
/// the programs in it): it builds master from the mini release, boots it and shows what the
/// machine saw, then exits 0.
#[test]
fn the_demo_works_at_a_terminal() {
    let work = tempfile::tempdir().unwrap();
    let socket = format!("kato-test-{}", std::process::id());
    let status_file = work.path().join("status");
    let script = format!(
        "KATO_IMAGE_BIN={} {}/scripts/demo {}/demo; echo $? > {}; sleep 600",
        assert_cmd::cargo::cargo_bin("kato-image").display(),
        common::repo().display(),
        work.path().display(),
        status_file.display()
    );
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &socket])
            .args(args)
            .output()
            .expect("tmux")
    };
    let _one = one_vm();
    let started = tmux(&["new-session", "-d", "-x", "200", "-y", "50", &script]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    // Bounded: the demo's own boot timeout is 300 s.
    for _ in 0..300 {
        if status_file.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
    let pane = tmux(&["capture-pane", "-p", "-S", "-2000"]);
    let _ = tmux(&["kill-server"]);
    let pane = String::from_utf8_lossy(&pane.stdout).to_string();
    let status = std::fs::read_to_string(&status_file).unwrap_or_default();
    assert_eq!(status.trim(), "0", "the demo failed at a terminal:\n{pane}");
    assert!(pane.contains("KATO-MARKER done"), "{pane}");
    assert!(pane.contains("config's SHA-256 is "), "{pane}");
}

/// What `run` hands QEMU is checked first: a qcow2 naming another file of this machine (a
/// backing file, an external data file) or whose tables lie outside it, and a firmware that
/// is not a file, are refused in one line before QEMU starts.
#[test]
fn run_refuses_images_that_would_open_other_files_and_firmware_that_is_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let qemu_img = |args: &[&str]| {
        let out = Command::new("qemu-img")
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(dir.path().join("secret.raw"), vec![0u8; 1 << 20]).unwrap();
    let secret = dir.path().join("secret.raw");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        secret.to_str().unwrap(),
        "-F",
        "raw",
        "backed.qcow2",
        "64M",
    ]);
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "data_file=data.raw",
        "external.qcow2",
        "64M",
    ]);
    qemu_img(&["create", "-q", "-f", "qcow2", "lying.qcow2", "64M"]);
    // Its L1 table moved far past the end of the file.
    let lying = dir.path().join("lying.qcow2");
    let mut bytes = std::fs::read(&lying).unwrap();
    bytes[40..48].copy_from_slice(&(1u64 << 40).to_be_bytes());
    std::fs::write(&lying, bytes).unwrap();
    let out = built_roles();
    let good = out.path().join("master.raw");
    for (args, expected) in [
        (vec!["backed.qcow2".to_string()], "backing file"),
        (vec!["external.qcow2".to_string()], "external"),
        (vec!["lying.qcow2".to_string()], "L1 table"),
        (
            vec![
                good.display().to_string(),
                "--firmware".into(),
                "/tmp".into(),
            ],
            "--firmware /tmp: a folder, not a regular file",
        ),
        (
            vec![
                good.display().to_string(),
                "--firmware".into(),
                "/dev/zero".into(),
            ],
            "a device, not a regular file",
        ),
    ] {
        let run = common::kato()
            .current_dir(dir.path())
            .arg("run")
            .args(&args)
            .args(["--accel", "tcg"])
            .timeout(std::time::Duration::from_secs(30))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
}
