//! `kato-image inspect IMAGE`: a disk image, or a system extension image.

use std::path::PathBuf;

use clap::Args;
use kato_image::inspect::{DiskReport, inspect};
use kato_image::release::Board;
use kato_image::sysext::{self, Extension, Host};

use super::fetch::BoardArg;
use super::progress::{Reporter, bytes};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// A raw disk image, or one compressed with bzip2, gzip, zstd or xz; or a system
    /// extension image (squashfs, EROFS, or a GPT image with a root partition).
    pub image: PathBuf,
    /// For a system extension: say whether systemd-sysext merges it on this Flatcar
    /// version (exit status 1 if not).
    #[arg(long, value_name = "VERSION")]
    pub release: Option<String>,
    /// The board that --release is for.
    #[arg(long, value_enum, default_value = "amd64-usr", requires = "release")]
    pub board: BoardArg,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// If the primary GPT header is damaged, read the backup header instead.
    #[arg(long)]
    pub use_backup_gpt: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    if let Some(extension) = sysext::read(&args.image)? {
        return report_extension(&args, &extension);
    }
    if args.release.is_some() {
        anyhow::bail!(
            "--release is for system extension images; {} is a disk image",
            args.image.display()
        );
    }
    let reporter = Reporter::for_stderr(args.quiet, args.json);
    let report = inspect(&args.image, args.use_backup_gpt, &reporter).map_err(|e| match e {
        kato_image::disk::DiskError::Gpt {
            source: kato_image::disk::GptError::PrimaryDamaged { .. },
            ..
        } => anyhow::anyhow!("{e}: pass --use-backup-gpt to read it"),
        e => e.into(),
    })?;
    if args.json {
        say!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(())
}

fn print_text(report: &DiskReport) {
    say!(
        "image:       {} ({}, {} raw)",
        report.file.display(),
        report.compression.name(),
        bytes(report.size)
    );
    say!("disk GUID:   {}", report.disk_guid);
    if report.table_from_backup {
        say!("GPT:         read from the BACKUP header (the primary is damaged)");
    }
    say!(
        "first boot:  {}",
        report
            .first_boot_flag
            .as_deref()
            .unwrap_or("no flag on the EFI system partition")
    );
    say!();
    say!(
        "{:<4} {:<12} {:<18} {:>12} {:>10}  {:<6} {:<10} uuid",
        "slot",
        "name",
        "type",
        "offset",
        "size",
        "fs",
        "label"
    );
    for p in &report.partitions {
        let (fs, label, uuid) = match &p.filesystem {
            Some(f) => (
                f.kind.name(),
                f.label.clone().unwrap_or_default(),
                f.uuid.clone().unwrap_or_default(),
            ),
            None => ("-", String::new(), String::new()),
        };
        say!(
            "{:<4} {:<12} {:<18} {:>12} {:>10}  {:<6} {:<10} {}",
            p.slot,
            p.name,
            p.type_name
                .map_or_else(|| p.type_guid.to_string(), str::to_string),
            p.offset,
            bytes(p.size),
            fs,
            label,
            uuid
        );
        if let Some(flags) = p.usr_flags {
            say!(
                "     priority={} tries={} successful={} (attributes {})",
                flags.priority,
                flags.tries,
                flags.successful,
                p.attributes
            );
        }
    }
    match (&report.oem_files, &report.oem_error) {
        (Some(files), _) => {
            say!();
            say!("OEM files:");
            for f in files {
                say!("  {:<8} {} {:>10}  {}", f.kind, f.mode, f.size, f.path);
            }
            for what in &report.oem_not_listed {
                say!("  also: {what}");
            }
        }
        (None, Some(error)) => say!("\nOEM files: cannot list ({error})"),
        (None, None) => {}
    }
}

fn report_extension(args: &InspectArgs, extension: &Extension) -> anyhow::Result<()> {
    let board = Board::from(args.board);
    let verdict = args.release.as_deref().map(|version| {
        let host = Host {
            version_id: version,
            architecture: board.sysext_architecture(),
        };
        (
            format!("Flatcar {version} ({board})"),
            extension.refusal(&host),
        )
    });
    if args.json {
        let merges = verdict.as_ref().map(|(on, refusal)| {
            serde_json::json!({ "on": on, "merges": refusal.is_none(), "why_not": refusal })
        });
        let mut report = serde_json::to_value(extension)?;
        report["verdict"] = merges.unwrap_or_default();
        say!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_extension(extension);
        if let Some((on, refusal)) = &verdict {
            match refusal {
                None => say!("on {on}: merged"),
                Some(why) => say!("on {on}: NOT merged: {why}"),
            }
        }
    }
    match verdict {
        Some((on, Some(why))) => Err(anyhow::anyhow!(
            "{}: systemd-sysext would not merge it on {on}: {why}",
            args.image.display()
        )),
        _ => Ok(()),
    }
}

fn print_extension(extension: &Extension) {
    say!(
        "image:       {} ({}, sha256 {})",
        extension.file.display(),
        bytes(extension.size),
        extension.sha256
    );
    match &extension.ddi {
        Some(ddi) => say!(
            "kind:        system extension, a GPT image ({} {}) holding {}",
            ddi.architecture,
            ddi.partitions.join(", "),
            extension.filesystem
        ),
        None => say!("kind:        system extension, {}", extension.filesystem),
    }
    say!(
        "name:        {} (merged as /etc/extensions/{}.raw)",
        extension.name,
        extension.name
    );
    if extension.release().is_none() {
        say!(
            "             it has no extension-release.{}: systemd-sysext skips it under this name",
            extension.name
        );
        for (name, _) in &extension.releases {
            say!("             named {name}.raw, it would be read");
        }
    }
    if extension.has_os_release {
        say!("             it holds usr/lib/os-release, which systemd-sysext refuses");
    }
    for (name, release) in &extension.releases {
        say!();
        say!("extension-release.{name}:");
        for (key, value) in &release.fields {
            say!("  {key}={value}");
        }
    }
}
