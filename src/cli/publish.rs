//! `kato-image publish`: `snapshot` uploads a raw image to an EBS snapshot; `ami` does that,
//! registers the AMI and copies it to regions, or with `--dry-run` prints the upload plan.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use kato_image::emit::ami;

use super::progress::bytes;

#[derive(Subcommand, Debug)]
pub enum PublishCommand {
    /// Upload a raw image to an EBS snapshot, register it as an AMI and copy it to regions.
    Ami(AmiArgs),
    /// Upload a raw image straight to an EBS snapshot (EBS direct APIs; AWS credentials from
    /// the standard chain, AWS_ENDPOINT_URL honoured).
    Snapshot(SnapshotArgs),
}

#[derive(Args, Debug)]
pub struct SnapshotArgs {
    /// The raw image (`OUT/<role>.raw`).
    pub image: PathBuf,
    /// The snapshot to build on; only blocks that differ from `--parent-image` are sent.
    #[arg(long, value_name = "ID", requires = "parent_image")]
    pub parent_snapshot: Option<String>,
    /// The image `--parent-snapshot` was made from.
    #[arg(long, value_name = "IMAGE", requires = "parent_snapshot")]
    pub parent_image: Option<PathBuf>,
    /// AWS region (default: the AWS configuration's).
    #[arg(long)]
    pub region: Option<String>,
    /// Blocks sent at once.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub workers: usize,
    /// Attempts after a throttled or failed request (with backoff).
    #[arg(long, default_value_t = 8)]
    pub retries: u32,
    /// The snapshot's description (default: the image's file name).
    #[arg(long)]
    pub description: Option<String>,
    /// Tags, `KEY=VALUE` (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// Encrypt with this KMS key.
    #[arg(long, value_name = "ARN")]
    pub kms_key: Option<String>,
    /// Wait for the snapshot to complete.
    #[arg(long)]
    pub wait: bool,
    /// Seconds `--wait` waits at most.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 1800,
        requires = "wait"
    )]
    pub wait_timeout: u64,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct AmiArgs {
    /// The raw image (`OUT/<role>.raw`); its manifest (`OUT/<role>.manifest.json`) names
    /// the AMI and gives the build ID that makes publishing idempotent.
    pub image: PathBuf,
    /// The build manifest [default: beside the image].
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// The image the parent snapshot was made from: only blocks that differ from it are sent.
    /// Its snapshot is `--parent-snapshot`, or else the one tagged with the build ID in the
    /// parent's manifest (`IMAGE` with `.manifest.json`), as `publish ami` tags them (in the
    /// region the parent was published to; its copies' snapshots carry no tags).
    #[arg(long, value_name = "IMAGE")]
    pub parent: Option<PathBuf>,
    /// The snapshot `--parent` was uploaded to.
    #[arg(long, value_name = "ID", requires = "parent")]
    pub parent_snapshot: Option<String>,
    /// AWS region (default: the AWS configuration's).
    #[arg(long)]
    pub region: Option<String>,
    /// Also copy the AMI to these regions.
    #[arg(long, value_delimiter = ',', value_name = "REGION,...")]
    pub regions: Vec<String>,
    /// Give everyone launch permission (every copy).
    #[arg(long)]
    pub public: bool,
    /// Boot mode.
    #[arg(long, default_value = "uefi-preferred", value_parser = ["uefi-preferred", "uefi", "legacy-bios"])]
    pub boot_mode: String,
    /// Let instances use IMDSv1 too (default: IMDSv2 required).
    #[arg(long)]
    pub imds_optional: bool,
    /// Attach a virtual TPM 2.0.
    #[arg(long)]
    pub tpm: bool,
    /// Root volume type.
    #[arg(long, default_value = "gp3")]
    pub volume_type: String,
    /// Encrypt the snapshot with this KMS key.
    #[arg(long, value_name = "ARN")]
    pub kms_key: Option<String>,
    /// Blocks sent at once.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub workers: usize,
    /// Attempts after a throttled or failed request (with backoff).
    #[arg(long, default_value_t = 8)]
    pub retries: u32,
    /// Seconds to wait for the snapshot to complete and region copies to become available.
    #[arg(long, value_name = "SECONDS", default_value_t = 1800)]
    pub wait_timeout: u64,
    /// Print the plan (blocks, bytes, checksums) and call nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(command: PublishCommand) -> anyhow::Result<()> {
    match command {
        PublishCommand::Ami(args) => ami_plan(args),
        PublishCommand::Snapshot(args) => snapshot(args),
    }
}

fn snapshot(args: SnapshotArgs) -> anyhow::Result<()> {
    let mut tags = Vec::new();
    for tag in &args.tags {
        let (key, value) = tag
            .split_once('=')
            .with_context(|| format!("--tag {tag:?}: expected KEY=VALUE"))?;
        tags.push((key.to_string(), value.to_string()));
    }
    let description = args.description.clone().unwrap_or_else(|| {
        format!(
            "kato-image {}",
            args.image.file_name().unwrap_or_default().to_string_lossy()
        )
    });
    let request = ami::SnapshotUpload {
        image: &args.image,
        parent_image: args.parent_image.as_deref(),
        region: args.region.as_deref(),
        retries: args.retries,
        spec: ami::SnapshotSpec {
            description,
            tags,
            parent_snapshot_id: args.parent_snapshot.clone(),
            kms_key_arn: args.kms_key.clone(),
            workers: args.workers,
        },
    };
    let reporter = super::progress::Reporter::for_stderr(args.quiet, args.json);
    let wait = args
        .wait
        .then(|| std::time::Duration::from_secs(args.wait_timeout));
    let uploaded = ami::publish_snapshot(&request, wait, &reporter)
        .with_context(|| args.image.display().to_string())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&uploaded)?);
    } else {
        println!("{}: {}", args.image.display(), uploaded.snapshot_id);
        println!(
            "  sent:      {} blocks, {}{}",
            uploaded.changed_blocks,
            bytes(uploaded.bytes_sent),
            uploaded
                .parent_snapshot_id
                .as_ref()
                .map(|p| format!(" (on {p})"))
                .unwrap_or_default()
        );
        println!("  volume:    {} GiB", uploaded.volume_size_gib);
        println!("  checksum:  LINEAR SHA256 {}", uploaded.aggregate_checksum);
        println!("  status:    {}", uploaded.status);
    }
    Ok(())
}

fn ami_plan(args: AmiArgs) -> anyhow::Result<()> {
    if !args.dry_run {
        return ami_publish(args);
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

/// A build manifest read for publishing: its bytes (their digest is a tag) and its fields.
struct ManifestFile {
    path: PathBuf,
    bytes: Vec<u8>,
    value: serde_json::Value,
}

impl ManifestFile {
    /// `what` names the file in errors and says how to do without it.
    fn read(path: PathBuf, what: &str) -> anyhow::Result<Self> {
        let bytes = std::fs::read(&path).with_context(|| format!("{}: {what}", path.display()))?;
        let value = serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not a kato-image manifest", path.display()))?;
        Ok(ManifestFile { path, bytes, value })
    }

    fn field(&self, pointer: &str) -> anyhow::Result<String> {
        self.value
            .pointer(pointer)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .with_context(|| format!("{}: no `{pointer}`", self.path.display()))
    }
}

/// The AMI's name, description and tags from the build manifest; the architecture from its
/// board.
fn identity(args: &AmiArgs) -> anyhow::Result<(ami::AmiIdentity, String)> {
    use sha2::Digest;
    let path = args
        .manifest
        .clone()
        .unwrap_or_else(|| args.image.with_extension("manifest.json"));
    let manifest = ManifestFile::read(path, "the build manifest (or pass --manifest)")?;
    let field = |pointer: &str| manifest.field(pointer);
    let (role, build_id) = (field("/role")?, field("/build_id")?);
    let (version, board, channel) = (
        field("/base/version")?,
        field("/base/board")?,
        field("/base/channel")?,
    );
    let manifest_sha256 = kato_image::cache::hex(&sha2::Sha256::digest(&manifest.bytes));
    let facts = ami::BuildFacts {
        role: &role,
        build_id: &build_id,
        channel: &channel,
        version: &version,
        board: &board,
        manifest_sha256: &manifest_sha256,
    };
    Ok((facts.identity(), facts.architecture().to_string()))
}

fn ami_publish(args: AmiArgs) -> anyhow::Result<()> {
    let (identity, architecture) = identity(&args)?;
    // A parent without its snapshot: the parent's build ID finds the snapshot by tag.
    let parent_build_id = match (&args.parent, &args.parent_snapshot) {
        (Some(parent), None) => Some(
            ManifestFile::read(
                parent.with_extension("manifest.json"),
                "the parent's build manifest (or pass --parent-snapshot)",
            )?
            .field("/build_id")?,
        ),
        _ => None,
    };
    let request = ami::AmiPublish {
        upload: ami::SnapshotUpload {
            image: &args.image,
            parent_image: args.parent.as_deref(),
            region: args.region.as_deref(),
            retries: args.retries,
            spec: ami::SnapshotSpec {
                description: identity.description.clone(),
                tags: Vec::new(),
                parent_snapshot_id: args.parent_snapshot.clone(),
                kms_key_arn: args.kms_key.clone(),
                workers: args.workers,
            },
        },
        identity,
        settings: ami::AmiSettings {
            architecture,
            volume_type: args.volume_type.clone(),
            boot_mode: args.boot_mode.clone(),
            imds_v2_required: !args.imds_optional,
            tpm: args.tpm,
            public: args.public,
            regions: args.regions.clone(),
        },
        wait: std::time::Duration::from_secs(args.wait_timeout),
        parent_build_id,
    };
    let reporter = super::progress::Reporter::for_stderr(args.quiet, args.json);
    let record =
        ami::publish_ami(&request, &reporter).with_context(|| args.image.display().to_string())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&record)?);
        return Ok(());
    }
    let reused = |yes: bool| if yes { " (reused)" } else { "" };
    println!(
        "{}: {} {}{}",
        record.name,
        record.image.region,
        record.image.image_id,
        reused(record.image.reused)
    );
    if let Some(snapshot) = &record.snapshot {
        println!(
            "  snapshot:  {} ({} blocks, {})",
            snapshot.snapshot_id,
            snapshot.changed_blocks,
            bytes(snapshot.bytes_sent)
        );
    }
    for copy in &record.copies {
        println!(
            "  copy:      {} {}{}",
            copy.region,
            copy.image_id,
            reused(copy.reused)
        );
    }
    if record.public {
        println!("  public:    yes");
    }
    Ok(())
}
