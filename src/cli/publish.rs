//! `kato-image publish ami`: so far the upload plan (`--dry-run`); the upload itself, the
//! AMI registration and region copies are not built yet, and the command says so.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use kato_image::emit::ami;

use super::progress::bytes;

#[derive(Subcommand, Debug)]
pub enum PublishCommand {
    /// Upload a raw image to an EBS snapshot and register it as an AMI.
    Ami(AmiArgs),
}

#[derive(Args, Debug)]
pub struct AmiArgs {
    /// The raw image (`OUT/<role>.raw`).
    pub image: PathBuf,
    /// The image the parent snapshot was made from: only blocks that differ from it are sent.
    #[arg(long, value_name = "IMAGE")]
    pub parent: Option<PathBuf>,
    /// Print the plan (blocks, bytes, checksums) and call nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: PublishCommand) -> anyhow::Result<()> {
    let PublishCommand::Ami(args) = command;
    if !args.dry_run {
        bail!(
            "uploading to EBS and registering AMIs is not built yet; `--dry-run` prints the upload plan"
        );
    }
    let open =
        |path: &PathBuf| std::fs::File::open(path).with_context(|| path.display().to_string());
    let image = open(&args.image)?;
    let parent = args.parent.as_ref().map(open).transpose()?;
    let plan =
        ami::plan(&image, parent.as_ref()).with_context(|| args.image.display().to_string())?;
    if args.json {
        let summary = serde_json::json!({
            "image": args.image,
            "parent": args.parent,
            "image_size": plan.image_size,
            "volume_size_gib": plan.volume_size_gib,
            "block_size": ami::BLOCK,
            "total_blocks": plan.total_blocks,
            "changed_blocks": plan.blocks.len(),
            "bytes": plan.bytes(),
            "checksum_algorithm": "SHA256",
            "checksum_aggregation": "LINEAR",
            "aggregate_checksum": plan.aggregate_checksum(),
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "{}: EBS snapshot plan (dry run, nothing sent)",
            args.image.display()
        );
        println!(
            "  volume:    {} GiB, {} blocks of 512 KiB",
            plan.volume_size_gib, plan.total_blocks
        );
        match &args.parent {
            Some(parent) => println!(
                "  parent:    {} (blocks equal to it are not sent)",
                parent.display()
            ),
            None => println!("  parent:    none (holes are not sent)"),
        }
        println!(
            "  send:      {} blocks, {}",
            plan.blocks.len(),
            bytes(plan.bytes())
        );
        println!("  checksum:  LINEAR SHA256 {}", plan.aggregate_checksum());
    }
    Ok(())
}
