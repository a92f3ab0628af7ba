//! The node stand-in (scripts/node-release): a Flatcar-shaped release whose disk boots a
//! Debian systemd root with Docker, provisioned on first boot by the real Ignition. Its
//! probe unit reports the booted machine as `KATO-NODE key: value` lines on the console.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Where slow things made for tests are kept between runs (`.ci/run` keeps it).
pub fn state_dir() -> PathBuf {
    std::env::var_os("KATO_TEST_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("state"))
}

/// The node release, built once and kept (the script rebuilds it only when its key, made
/// from its own files and the Debian package versions, changes).
pub fn node_release() -> &'static Path {
    static RELEASE: OnceLock<PathBuf> = OnceLock::new();
    RELEASE.get_or_init(|| {
        let state = state_dir();
        std::fs::create_dir_all(&state).unwrap();
        let dir = state.join("node-release");
        let out = Command::new(super::repo().join("scripts/node-release"))
            .arg(&dir)
            .env("KATO_NODE_DEB_CACHE", state.join("node-debs"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "node-release: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// What the probe printed, in order.
#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<(String, String)>,
    pub console: String,
}

impl Report {
    pub fn parse(console: &str) -> Report {
        let lines = console
            .lines()
            .filter_map(|line| line.split("KATO-NODE ").nth(1))
            .filter_map(|marker| marker.split_once(": "))
            .map(|(k, v)| (k.to_string(), v.trim_end().to_string()))
            .collect();
        Report {
            lines,
            console: console.to_string(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.lines
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.lines
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// `enabled` and `active` of a unit Ignition wrote (or an instance of a template).
    pub fn unit(&self, name: &str) -> Option<(String, String)> {
        let field = |text: &str, key: &str| {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .unwrap_or("")
                .to_string()
        };
        self.all("unit")
            .into_iter()
            .chain(self.all("instance"))
            .find(|v| v.split_whitespace().next() == Some(name))
            .map(|v| (field(v, "enabled="), field(v, "active=")))
    }

    /// The probe ran to its end (a boot that failed earlier says why on the console).
    pub fn assert_done(&self) {
        assert!(
            self.get("done").is_some(),
            "the node did not report; console:\n{}",
            self.console
        );
    }
}

/// Runs QEMU (software emulation, one VM at a time) for at most `seconds`; the console.
fn qemu(args: &[&str], seconds: u32) -> String {
    let _one = super::boot::one_vm();
    let started = std::time::Instant::now();
    // Two vCPUs on TCG's threads: systemd starts units side by side.
    let console = super::boot::qemu_console(1536, 2, args, seconds);
    // Kept for reading after a failure; the boot time goes to the test's output.
    let n = BOOTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let kept = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("node-console-{n}.log"));
    let _ = std::fs::write(&kept, &console);
    eprintln!(
        "node boot {n}: {:.1} s (console in {})",
        started.elapsed().as_secs_f64(),
        kept.display()
    );
    console
}

static BOOTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Boots a raw disk image with OVMF and no network device at all.
pub fn boot_disk(image: &Path) -> Report {
    boot_disk_with(image, "raw", Flavour::Copy)
}

/// Which of Flatcar's initrds the stand-in imitates (QEMU's fw_cfg entry opt/kato/initrd).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Stable 4593 and older: the OEM's config.ign copied to user.ign.
    Copy,
    /// Alpha and beta 4694 and later: the OEM mounted at /oem, user.ign a link into it.
    Link,
}

impl Flavour {
    fn fw_cfg(self) -> String {
        let name = match self {
            Flavour::Copy => "copy",
            Flavour::Link => "link",
        };
        format!("name=opt/kato/initrd,string={name}")
    }
}

/// Boots a disk image in `format` (raw or qcow2) with OVMF and no network device at all,
/// its initrd in `flavour`.
pub fn boot_disk_with(image: &Path, format: &str, flavour: Flavour) -> Report {
    let drive = format!("file={},format={format},if=virtio", image.display());
    let mut args = super::boot::uefi_disk_args(image);
    let at = args.iter().position(|a| a.starts_with("file=")).unwrap();
    args[at] = drive;
    args.extend(["-fw_cfg".to_string(), flavour.fw_cfg()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let report = Report::parse(&qemu(&args, 900));
    report.assert_done();
    report
}

/// Network-boots `script_url` with QEMU's iPXE (SeaBIOS) as `mac`, the node release's PXE
/// root attached read-only.
pub fn boot_ipxe(script_url: &str, mac: &str) -> Report {
    boot_ipxe_with(script_url, mac, Flavour::Copy)
}

/// [`boot_ipxe`] with the initrd in `flavour`.
pub fn boot_ipxe_with(script_url: &str, mac: &str, flavour: Flavour) -> Report {
    let report = boot_ipxe_report(script_url, mac, flavour);
    report.assert_done();
    report
}

/// What an iPXE boot printed, whether or not the probe got to run.
pub fn boot_ipxe_report(script_url: &str, mac: &str, flavour: Flavour) -> Report {
    let root = format!(
        "file={},format=raw,if=virtio,readonly=on",
        node_release().join("pxe-root.raw").display()
    );
    let netdev = format!("user,id=n0,bootfile={script_url}");
    let device = format!("virtio-net-pci,netdev=n0,mac={mac}");
    let fw_cfg = flavour.fw_cfg();
    Report::parse(&qemu(
        &[
            "-boot", "n", "-netdev", &netdev, "-device", &device, "-drive", &root, "-fw_cfg",
            &fw_cfg,
        ],
        900,
    ))
}

/// A docker-archive of one busybox layer, tagged `kato-test/busy:1`, as `docker load`
/// reads it; returns its path and the image ID (the config's digest) Docker will give it.
pub fn busybox_archive(dir: &Path) -> (PathBuf, String) {
    use sha2::Digest;
    let hex = |bytes: &[u8]| kato_image::cache::hex(&sha2::Sha256::digest(bytes));
    let mut layer = tar::Builder::new(Vec::new());
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static");
    let mut header = tar::Header::new_gnu();
    header.set_size(busybox.len() as u64);
    header.set_mode(0o755);
    header.set_mtime(0);
    header.set_cksum();
    layer
        .append_data(&mut header, "bin/busybox", busybox.as_slice())
        .unwrap();
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    link.set_mode(0o777);
    link.set_mtime(0);
    link.set_link_name("busybox").unwrap();
    link.set_cksum();
    layer.append_data(&mut link, "bin/sh", &[][..]).unwrap();
    let layer = layer.into_inner().unwrap();
    let layer_hex = hex(&layer);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_hex}")]},
    })
    .to_string();
    let config_hex = hex(config.as_bytes());
    let manifest = serde_json::json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": ["kato-test/busy:1"],
        "Layers": [format!("{layer_hex}/layer.tar")],
    }])
    .to_string();
    let path = dir.join("busy.tar");
    let mut archive = tar::Builder::new(std::fs::File::create(&path).unwrap());
    for (name, bytes) in [
        (format!("{config_hex}.json"), config.as_bytes()),
        (format!("{layer_hex}/layer.tar"), layer.as_slice()),
        ("manifest.json".to_string(), manifest.as_bytes()),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        archive.append_data(&mut header, name, bytes).unwrap();
    }
    archive.finish().unwrap();
    (path, format!("sha256:{config_hex}"))
}
