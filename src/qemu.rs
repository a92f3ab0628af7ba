//! Booting a built disk image on this machine under QEMU, as `linuxkit run qemu` does: UEFI
//! firmware, the image opened as a snapshot (the guest's writes go to a temporary overlay,
//! so the image is never changed), the serial console on the terminal, and user networking
//! with SSH forwarded from a port on 127.0.0.1. The library finds QEMU and the firmware and
//! builds the command; the binary runs it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::release::Board;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "{program} not found: install qemu-system-x86 (Debian, Ubuntu), qemu-system-x86-core (Fedora) or qemu (Homebrew on macOS)"
    )]
    NoQemu { program: String },
    #[error(
        "no UEFI firmware (OVMF) found in {searched}: install ovmf (Debian, Ubuntu), edk2-ovmf (Fedora) or qemu (Homebrew on macOS), or pass --firmware FILE"
    )]
    NoFirmware { searched: String },
    #[error("--firmware {}: {why}", path.display())]
    Firmware { path: PathBuf, why: String },
    #[error("--accel kvm: /dev/kvm cannot be opened ({source}); use --accel tcg (slower)")]
    NoKvm { source: std::io::Error },
    #[error("{board} images are not run here yet: only amd64-usr")]
    Board { board: String },
    #[error("{}: {why}", path.display())]
    Image { path: PathBuf, why: String },
}

/// How QEMU runs the guest's CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// KVM when /dev/kvm opens for reading and writing (HVF on macOS), otherwise TCG.
    Auto,
    Kvm,
    Hvf,
    /// Software emulation: slow, but works everywhere.
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Auto => "auto",
            Accel::Kvm => "kvm",
            Accel::Hvf => "hvf",
            Accel::Tcg => "tcg",
        }
    }
}

pub struct RunOptions {
    pub image: PathBuf,
    pub board: Board,
    pub memory_mib: u32,
    pub cpus: u32,
    pub accel: Accel,
    /// The host port that reaches the guest's SSH; `None` gives the guest no network at all.
    pub ssh_port: Option<u16>,
    /// A firmware file QEMU loads with `-bios`, instead of the first one found.
    pub firmware: Option<PathBuf>,
}

/// The firmware QEMU boots from: one file (`-bios`), or a read-only code flash with its
/// variable store template, which the snapshot keeps unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Firmware {
    Bios(PathBuf),
    Flash {
        code: PathBuf,
        vars: Option<PathBuf>,
    },
}

/// A machine ready to start: the command and what was chosen for it.
#[derive(Debug)]
pub struct Machine {
    pub command: Command,
    pub accel: Accel,
    pub firmware: Firmware,
    pub ssh_port: Option<u16>,
}

/// Combined firmware files, where distributions install them.
const BIOS_FILES: &[&str] = &[
    "/usr/share/ovmf/OVMF.fd",
    "/usr/share/qemu/OVMF.fd",
    "/usr/share/edk2/ovmf/OVMF.fd",
    "/usr/share/edk2-ovmf/x64/OVMF.fd",
];

/// Code flash files with the variable store template beside them.
const FLASH_FILES: &[(&str, &str)] = &[
    (
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "/usr/share/OVMF/OVMF_VARS_4M.fd",
    ),
    (
        "/usr/share/OVMF/OVMF_CODE.fd",
        "/usr/share/OVMF/OVMF_VARS.fd",
    ),
    (
        "/usr/share/edk2/ovmf/OVMF_CODE.fd",
        "/usr/share/edk2/ovmf/OVMF_VARS.fd",
    ),
    (
        "/opt/homebrew/share/qemu/edk2-x86_64-code.fd",
        "/opt/homebrew/share/qemu/edk2-i386-vars.fd",
    ),
    (
        "/usr/local/share/qemu/edk2-x86_64-code.fd",
        "/usr/local/share/qemu/edk2-i386-vars.fd",
    ),
];

/// The first firmware installed on this machine.
pub(crate) fn find_firmware() -> Result<Firmware, RunError> {
    if let Some(bios) = BIOS_FILES.iter().map(Path::new).find(|p| p.is_file()) {
        return Ok(Firmware::Bios(bios.to_path_buf()));
    }
    if let Some((code, vars)) = FLASH_FILES
        .iter()
        .find(|(code, _)| Path::new(code).is_file())
    {
        return Ok(Firmware::Flash {
            code: PathBuf::from(code),
            vars: Some(PathBuf::from(vars)).filter(|v| v.is_file()),
        });
    }
    let mut searched: Vec<&str> = BIOS_FILES.to_vec();
    searched.extend(FLASH_FILES.iter().map(|(code, _)| *code));
    Err(RunError::NoFirmware {
        searched: searched.join(", "),
    })
}

/// The accelerator `wanted` becomes on this machine.
fn resolve_accel(wanted: Accel) -> Result<Accel, RunError> {
    let kvm = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
    };
    match wanted {
        Accel::Auto if cfg!(target_os = "macos") => Ok(Accel::Hvf),
        Accel::Auto => Ok(if kvm().is_ok() {
            Accel::Kvm
        } else {
            Accel::Tcg
        }),
        Accel::Kvm => kvm()
            .map(|_| Accel::Kvm)
            .map_err(|source| RunError::NoKvm { source }),
        other => Ok(other),
    }
}

/// Whether `program` is an executable file on PATH.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Checks the image is a GPT disk (so nothing starts for a file that cannot boot).
/// The image's format as QEMU names it: a raw disk (a fixed VHD's raw part and footer
/// boot as raw), or qcow2, which QEMU reads itself. A GCE archive must be unpacked first.
fn check_image(path: &Path) -> Result<&'static str, RunError> {
    use std::io::Read;
    let image = |why: String| RunError::Image {
        path: path.to_path_buf(),
        why,
    };
    let (mut file, len) = crate::input::open_regular(path).map_err(|e| image(e.reason()))?;
    let mut magic = [0u8; 4];
    let read = file.read(&mut magic).map_err(|e| image(e.to_string()))?;
    if read == 4 && &magic == b"QFI\xfb" {
        // A qcow2 from elsewhere could name a backing or data file that QEMU would open.
        crate::emit::format::qcow2::read_foreign_header(&file, len).map_err(image)?;
        return Ok("qcow2");
    }
    if read >= 2 && magic[..2] == [0x1f, 0x8b] {
        return Err(image(
            "a gzip'd archive (a GCE image?): unpack it with `tar -xSzf` and run its disk.raw"
                .into(),
        ));
    }
    crate::disk::gpt::PartitionTable::read(&mut file, false)
        .map(|_| "raw")
        .map_err(|e| image(format!("not a bootable disk image ({e})")))
}

/// The QEMU command that boots `options.image`, with the firmware and accelerator chosen.
pub fn prepare(options: &RunOptions) -> Result<Machine, RunError> {
    if options.board != Board::Amd64 {
        return Err(RunError::Board {
            board: options.board.name().to_string(),
        });
    }
    let program = "qemu-system-x86_64";
    if !on_path(program) {
        return Err(RunError::NoQemu {
            program: program.into(),
        });
    }
    let format = check_image(&options.image)?;
    let firmware = match &options.firmware {
        Some(path) => {
            // QEMU is given a readable regular file or nothing (a folder or a device would
            // reach it otherwise).
            crate::input::open_regular(path).map_err(|e| RunError::Firmware {
                path: path.clone(),
                why: e.reason(),
            })?;
            Firmware::Bios(path.clone())
        }
        None => find_firmware()?,
    };
    let accel = resolve_accel(options.accel)?;
    let mut command = Command::new(program);
    command
        .args(["-machine", "q35", "-accel", accel.name()])
        .args(["-m", &options.memory_mib.to_string()])
        .args(["-smp", &options.cpus.max(1).to_string()]);
    if accel != Accel::Tcg {
        command.args(["-cpu", "host"]);
    }
    match &firmware {
        Firmware::Bios(path) => {
            command.arg("-bios").arg(path);
        }
        Firmware::Flash { code, vars } => {
            command
                .arg("-drive")
                .arg(drive("pflash,unit=0,readonly=on", "raw", code));
            if let Some(vars) = vars {
                command
                    .arg("-drive")
                    .arg(drive("pflash,unit=1,snapshot=on", "raw", vars));
            }
        }
    }
    command
        .arg("-drive")
        .arg(drive("virtio,snapshot=on", format, &options.image));
    match options.ssh_port {
        Some(port) => command.args([
            "-netdev",
            &format!("user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:22"),
            "-device",
            "virtio-net-pci,netdev=net0",
        ]),
        None => command.args(["-nic", "none"]),
    };
    // The serial console (and QEMU's monitor, behind Ctrl-a c) on the terminal.
    command.arg("-nographic");
    Ok(Machine {
        command,
        accel,
        firmware,
        ssh_port: options.ssh_port,
    })
}

/// `-drive` for `file` in `format` with `options` (`if=...` first). Commas in a path are
/// doubled, as QEMU's option syntax wants.
fn drive(options: &str, format: &str, file: &Path) -> std::ffi::OsString {
    let mut value = std::ffi::OsString::from(format!("if={options},format={format},file="));
    value.push(file.to_string_lossy().replace(',', ",,"));
    value
}

/// A port on 127.0.0.1 that is free now, for the SSH forward.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drive_options_double_commas_in_paths() {
        assert_eq!(
            drive("virtio,snapshot=on", "raw", Path::new("/a,b/c.raw")),
            "if=virtio,snapshot=on,format=raw,file=/a,,b/c.raw"
        );
    }

    #[test]
    fn tcg_is_always_available() {
        assert_eq!(resolve_accel(Accel::Tcg).unwrap(), Accel::Tcg);
    }
}
