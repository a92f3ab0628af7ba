//! `kato-image run`: boots a built image locally under QEMU.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use kato_image::build::manifest::Manifest;
use kato_image::qemu::{self, Accel, RunOptions};
use kato_image::release::Board;

use super::Prefix;

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["image", "role"])))]
pub struct RunArgs {
    /// The disk image to boot (a build's `<role>.raw`, or a platform's `.qcow2`, `.vhd` or
    /// `.raw`); it is never changed.
    pub image: Option<PathBuf>,
    /// Boot this role's image from the build folder (`--out`).
    #[arg(long)]
    pub role: Option<String>,
    /// The build folder `--role` looks in.
    #[arg(long, value_name = "DIR", default_value = "out")]
    pub out: PathBuf,
    /// Guest memory in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 2048)]
    pub memory: u32,
    /// Guest CPUs.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub cpus: u32,
    /// CPU acceleration: KVM when /dev/kvm can be opened (HVF on macOS), else software.
    #[arg(long, value_enum, default_value_t = AccelArg::Auto)]
    pub accel: AccelArg,
    /// The port on 127.0.0.1 forwarded to the guest's SSH [default: a free one].
    #[arg(long, value_name = "PORT", conflicts_with = "no_network")]
    pub ssh_port: Option<u16>,
    /// Give the guest no network device at all.
    #[arg(long)]
    pub no_network: bool,
    /// UEFI firmware for QEMU's -bios [default: the OVMF this machine has].
    #[arg(long, value_name = "FILE")]
    pub firmware: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AccelArg {
    Auto,
    Kvm,
    Hvf,
    Tcg,
}

impl From<AccelArg> for Accel {
    fn from(value: AccelArg) -> Self {
        match value {
            AccelArg::Auto => Accel::Auto,
            AccelArg::Kvm => Accel::Kvm,
            AccelArg::Hvf => Accel::Hvf,
            AccelArg::Tcg => Accel::Tcg,
        }
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let image = match (&args.image, &args.role) {
        (Some(image), _) => image.clone(),
        (None, Some(role)) => args.out.join(format!("{role}.raw")),
        (None, None) => unreachable!("clap requires one"),
    };
    // The board from the build's manifest when there is one; a bare image is taken as amd64.
    let board = Manifest::read(&Manifest::beside(&image))
        .map(|m| m.release.board)
        .unwrap_or(Board::Amd64);
    let ssh_port = match (args.no_network, args.ssh_port) {
        (true, _) => None,
        (false, Some(port)) => Some(port),
        (false, None) => Some(qemu::free_port().prefix(|| "cannot find a free port for SSH")?),
    };
    let mut machine = qemu::prepare(&RunOptions {
        image: image.clone(),
        board,
        memory_mib: args.memory,
        cpus: args.cpus,
        accel: args.accel.into(),
        ssh_port,
        firmware: args.firmware.clone(),
    })?;
    eprintln!(
        "== booting {} ({}, {} MiB, {} CPUs; the image is opened as a snapshot and never changed)",
        image.display(),
        machine.accel.name(),
        args.memory,
        args.cpus.max(1)
    );
    match machine.ssh_port {
        Some(port) => eprintln!("== ssh -p {port} core@127.0.0.1 (once the machine is up)"),
        None => eprintln!("== no network"),
    }
    eprintln!("== console below; Ctrl-a x quits QEMU, Ctrl-a c its monitor");
    let status = machine
        .command
        .status()
        .prefix(|| "cannot start qemu-system-x86_64")?;
    if !status.success() {
        anyhow::bail!("QEMU ended with {status}");
    }
    Ok(())
}
