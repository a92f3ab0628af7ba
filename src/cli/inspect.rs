//! `kato-image inspect IMAGE`.

use std::path::PathBuf;

use clap::Args;
use kato_image::inspect::{DiskReport, inspect};

use super::progress::{Reporter, bytes};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// A raw disk image, or one compressed with bzip2, gzip, zstd or xz.
    pub image: PathBuf,
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
