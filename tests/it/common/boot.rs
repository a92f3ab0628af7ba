//! The mini release (scripts/mini-release) and QEMU booting images under software emulation.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The mini release, made once per test binary. Statics are never dropped, so it lives in the
/// target's temporary folder under the process ID, and each binary removes the copies of
/// binaries that have ended.
pub fn mini_release() -> &'static Path {
    static RELEASE: OnceLock<PathBuf> = OnceLock::new();
    RELEASE.get_or_init(|| {
        let parent = Path::new(env!("CARGO_TARGET_TMPDIR"));
        remove_ended(parent);
        let dir = parent.join(format!("{MINI_PREFIX}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new(super::repo().join("scripts/mini-release"))
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mini-release: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

const MINI_PREFIX: &str = "kato-mini-";

/// Removes the mini releases of test processes that no longer run.
fn remove_ended(parent: &Path) {
    for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(MINI_PREFIX)) else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The build flags that take the mini release served at `template` (with its test key) and
/// write into `out`, caching in `cache`.
pub fn mini_build_args(template: &str, cache: &Path, out: &Path) -> Vec<std::ffi::OsString> {
    mini_build_args_with(template, &mini_release().join("keyring.asc"), cache, out)
}

/// The same for any release signed by `keyring`.
pub fn mini_build_args_with(
    template: &str,
    keyring: &Path,
    cache: &Path,
    out: &Path,
) -> Vec<std::ffi::OsString> {
    [
        "--release-url".as_ref(),
        template.as_ref(),
        "--keyring".as_ref(),
        keyring.as_os_str(),
        "--cache".as_ref(),
        cache.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]
    .into_iter()
    .map(std::ffi::OsStr::to_os_string)
    .collect()
}

/// `kato-image build --quiet --role all ARGS` from the mini release served at `template`,
/// with its test key, into `out`; panics with stderr if it fails.
pub fn build_from_mini(template: &str, cache: &Path, out: &Path, args: &[&str]) {
    let keyring = mini_release().join("keyring.asc");
    build_all_with(super::kato(), template, &keyring, cache, out, args);
}

/// `cmd build --quiet --role all ARGS` from the release served at `template`, signed by
/// `keyring`, into `out`; panics with stderr if it fails.
pub fn build_all_with(
    mut cmd: assert_cmd::Command,
    template: &str,
    keyring: &Path,
    cache: &Path,
    out: &Path,
    args: &[&str],
) {
    let built = cmd
        .args(["build", "--quiet", "--role", "all"])
        .args(args)
        .args(mini_build_args_with(template, keyring, cache, out))
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "build: {}",
        String::from_utf8_lossy(&built.stderr)
    );
}

/// Every role built from the mini release served on loopback, into a new folder.
pub fn built_roles() -> tempfile::TempDir {
    let server = super::http::Server::start(mini_release());
    let template = format!("{}{{channel}}/{{board}}/{{version}}/", server.url());
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    build_from_mini(&template, cache.path(), out.path(), &[]);
    out
}

/// Every role's EC2 disk (`OUT/<role>-ami.raw`, `build --output ami --no-publish`) from the
/// mini release, for `publish ami` later.
pub fn built_ami_roles() -> tempfile::TempDir {
    let server = super::http::Server::start(mini_release());
    let template = format!("{}{{channel}}/{{board}}/{{version}}/", server.url());
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    build_from_mini(
        &template,
        cache.path(),
        out.path(),
        &["--output", "ami", "--no-publish"],
    );
    out
}

/// Held while a VM runs: one at a time on two cores.
pub fn one_vm() -> std::sync::MutexGuard<'static, ()> {
    static ONE_VM: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE_VM.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs QEMU (software emulation) with `memory_mib`, `cpus` and `args` for at most
/// `seconds`; the serial console. The caller holds [`one_vm`].
pub fn qemu_console(memory_mib: u32, cpus: u32, args: &[&str], seconds: u32) -> String {
    let out = Command::new("timeout")
        .arg(seconds.to_string())
        .args(["qemu-system-x86_64", "-accel", "tcg", "-m"])
        .arg(memory_mib.to_string())
        .arg("-smp")
        .arg(cpus.to_string())
        .args(["-nographic", "-no-reboot"])
        .args(args)
        .output()
        .expect("qemu-system-x86_64 (qemu-system-x86)");
    String::from_utf8_lossy(&out.stdout).replace('\r', "")
}

fn qemu(args: &[&str], seconds: u32) -> String {
    let _one = one_vm();
    qemu_console(512, 1, args, seconds)
}

/// QEMU's arguments for booting the disk `image` under OVMF with no network device.
pub fn uefi_disk_args(image: &Path) -> Vec<String> {
    [
        "-machine",
        "q35",
        "-net",
        "none",
        "-bios",
        "/usr/share/ovmf/OVMF.fd",
        "-drive",
        &format!("file={},format=raw,if=virtio", image.display()),
    ]
    .map(String::from)
    .to_vec()
}

/// What the mini release's initramfs printed.
#[derive(Debug, Default)]
pub struct Markers {
    pub cmdline: String,
    pub config_sha256: Option<String>,
    pub no_config: bool,
    pub units: Vec<String>,
    pub source: Option<String>,
    pub done: bool,
    pub errors: Vec<String>,
    /// `(sha256, path)` of each tar on KATO-DATA.
    pub images: Vec<(String, String)>,
}

/// Boots `image` with OVMF under TCG and reads the KATO-MARKER lines from the serial console.
pub fn boot(image: &Path) -> Markers {
    let args = uefi_disk_args(image);
    run_vm(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Network-boots `script_url` under SeaBIOS with the NIC's address `mac`, for `seconds`, and
/// returns the console text (for machines expected not to boot).
pub fn ipxe_console(script_url: &str, mac: &str, seconds: u32) -> String {
    let netdev = format!("user,id=n0,bootfile={script_url}");
    let device = format!("virtio-net-pci,netdev=n0,mac={mac}");
    qemu(
        &["-boot", "n", "-netdev", &netdev, "-device", &device],
        seconds,
    )
}

/// Network-boots `script_url` with QEMU's bundled iPXE, under SeaBIOS or (`uefi`) OVMF.
pub fn boot_ipxe(script_url: &str, uefi: bool) -> Markers {
    boot_ipxe_as(script_url, uefi, "52:54:00:12:34:56")
}

/// The same, with the NIC's MAC address set.
pub fn boot_ipxe_as(script_url: &str, uefi: bool, mac: &str) -> Markers {
    let netdev = format!("user,id=n0,bootfile={script_url}");
    if uefi {
        run_vm(&[
            "-machine",
            "q35",
            "-bios",
            "/usr/share/ovmf/OVMF.fd",
            "-netdev",
            &netdev,
            "-device",
            &format!(
                "virtio-net-pci,netdev=n0,mac={mac},romfile=/usr/lib/ipxe/qemu/efi-virtio.rom,bootindex=1"
            ),
        ])
    } else {
        run_vm(&[
            "-boot",
            "n",
            "-netdev",
            &netdev,
            "-device",
            &format!("virtio-net-pci,netdev=n0,mac={mac}"),
        ])
    }
}

/// One VM at a time (two cores), always under `timeout`.
fn run_vm(args: &[&str]) -> Markers {
    let console = qemu(args, 180);
    let mut markers = Markers::default();
    for line in console.lines() {
        let Some(marker) = line.split("KATO-MARKER ").nth(1) else {
            continue;
        };
        if let Some(v) = marker.strip_prefix("cmdline: ") {
            markers.cmdline = v.to_string();
        } else if let Some(v) = marker.strip_prefix("config-sha256: ") {
            markers.config_sha256 = Some(v.to_string());
        } else if let Some(v) = marker.strip_prefix("config-source: ") {
            markers.source = Some(v.to_string());
        } else if marker == "config: none" {
            markers.no_config = true;
        } else if let Some(v) = marker.strip_prefix("unit: ") {
            markers.units.push(v.to_string());
        } else if let Some(v) = marker.strip_prefix("image: ") {
            let (sha256, path) = v.split_once(' ').unwrap_or((v, ""));
            markers.images.push((sha256.to_string(), path.to_string()));
        } else if marker == "done" {
            markers.done = true;
        } else if let Some(v) = marker.strip_prefix("error: ") {
            markers.errors.push(v.to_string());
        }
    }
    assert!(
        markers.done,
        "the guest did not finish; console:\n{console}"
    );
    markers
}
