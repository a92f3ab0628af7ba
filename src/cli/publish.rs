//! `kato-image publish`: `snapshot` uploads a raw image to an EBS snapshot; `ami` does that,
//! registers the AMI and copies it to regions, or with `--dry-run` prints the upload plan.

use std::path::PathBuf;

use super::Prefix;
use clap::builder::TypedValueParser;
use clap::{Args, Subcommand};
use kato_image::build::manifest::Manifest;
use kato_image::emit::ami::{self, AwsOptions};
use kato_image::emit::raw::DiskRecord;
use kato_image::profile::{AmiBootMode, AmiOutput, ImdsSupport, VolumeType};
use kato_image::provenance::check::Recorded;

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
    #[arg(long, default_value_t = AmiOutput::default().boot_mode, value_parser = choice::<AmiBootMode>(&["uefi-preferred", "uefi", "legacy-bios"]))]
    pub boot_mode: AmiBootMode,
    /// Let instances use IMDSv1 too (default: IMDSv2 required).
    #[arg(long)]
    pub imds_optional: bool,
    /// Attach a virtual TPM 2.0.
    #[arg(long)]
    pub tpm: bool,
    /// Root volume type.
    #[arg(long, default_value_t = AmiOutput::default().volume_type, value_parser = choice::<VolumeType>(&["gp3", "gp2", "io1", "io2", "standard"]))]
    pub volume_type: VolumeType,
    /// Root volume size in GiB (at least the image's) [default: 16, as Flatcar's AMIs]
    #[arg(long, value_name = "GIB", default_value_t = AmiOutput::default().volume_size_gib)]
    pub volume_size: u64,
    /// Provisioned IOPS of the root volume (required for io1 and io2, optional for gp3).
    #[arg(long, value_name = "N")]
    pub iops: Option<u32>,
    /// Throughput of a gp3 root volume, in MiB/s.
    #[arg(long, value_name = "MIBPS")]
    pub throughput: Option<u32>,
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

/// A flag whose values are the names of a profile setting (the same words either way).
fn choice<T>(names: &'static [&'static str]) -> impl clap::builder::TypedValueParser<Value = T>
where
    T: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    clap::builder::PossibleValuesParser::new(names).map(|name| {
        serde_json::from_value(serde_json::Value::String(name))
            .expect("every listed name is a variant")
    })
}

pub fn run(command: PublishCommand) -> anyhow::Result<()> {
    match command {
        PublishCommand::Ami(args) => ami(args),
        PublishCommand::Snapshot(args) => snapshot(args),
    }
}

fn aws_options(region: &Option<String>, workers: usize, retries: u32, wait: u64) -> AwsOptions {
    AwsOptions {
        region: region.clone(),
        workers,
        retries,
        wait: std::time::Duration::from_secs(wait),
    }
}

fn snapshot(args: SnapshotArgs) -> anyhow::Result<()> {
    let mut tags = Vec::new();
    for tag in &args.tags {
        let (key, value) = tag
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--tag {tag:?}: expected KEY=VALUE"))?;
        tags.push((key.to_string(), value.to_string()));
    }
    let description = args.description.clone().unwrap_or_else(|| {
        format!(
            "kato-image {}",
            args.image.file_name().unwrap_or_default().to_string_lossy()
        )
    });
    let source = ami::SnapshotSource {
        image: &args.image,
        parent_image: args.parent_image.as_deref(),
    };
    let spec = ami::SnapshotSpec {
        description,
        tags,
        parent_snapshot_id: args.parent_snapshot.clone(),
        kms_key_arn: args.kms_key.clone(),
        workers: args.workers,
    };
    let reporter = super::progress::Reporter::for_stderr(args.quiet, args.json);
    let options = aws_options(&args.region, args.workers, args.retries, args.wait_timeout);
    let uploaded = ami::Publisher::connect(&options)
        .and_then(|publisher| publisher.snapshot(&source, &spec, args.wait, &reporter))
        .prefix(|| args.image.display().to_string())?;
    if args.json {
        say!("{}", serde_json::to_string_pretty(&uploaded)?);
    } else {
        say!("{}: {}", args.image.display(), uploaded.snapshot_id);
        say!(
            "  sent:      {} blocks, {}{}",
            uploaded.changed_blocks,
            bytes(uploaded.bytes_sent),
            uploaded
                .parent_snapshot_id
                .as_ref()
                .map(|p| format!(" (on {p})"))
                .unwrap_or_default()
        );
        say!("  volume:    {} GiB", uploaded.volume_size_gib);
        say!("  checksum:  LINEAR SHA256 {}", uploaded.aggregate_checksum);
        say!("  status:    {}", uploaded.status);
    }
    Ok(())
}

/// The image's build manifest, and its record of the image, checked against the file: a
/// manifest of another image, or an image changed since its build, stops here, before AWS.
fn checked_manifest(args: &AmiArgs) -> anyhow::Result<(Manifest, DiskRecord)> {
    let recorded = Recorded::find(&args.image, args.manifest.as_deref())?;
    let (manifest, disk) = (&recorded.manifest, &recorded.disk);
    // The generic image has no EC2 OEM (oem_id "ec2" and its kernel arguments such as
    // nvme_core.io_timeout and net.ifnames=0, the EC2 sysext): as an AMI it boots without
    // what EC2 instances need.
    if disk.from != kato_image::release::AMI_IMAGE_FILE {
        let role = &manifest.role;
        anyhow::bail!(
            "{}: made from {}, Flatcar's generic image, which lacks EC2's OEM (its kernel arguments and sysext); publish {role}-ami.raw, made by `kato-image build --role {role} --output ami` (add --no-publish to upload it later with `publish ami`)",
            args.image.display(),
            disk.from
        );
    }
    let cache = kato_image::cache::Cache::open(&kato_image::cache::Cache::default_dir()).ok();
    let unchanged = recorded.unchanged();
    if let Some(cache) = &cache {
        cache.save_zero_leaves();
    }
    unchanged?;
    let settings = ami_settings(args);
    if let Some(why) = settings.unbootable(manifest.release.board) {
        anyhow::bail!("--boot-mode: {why}");
    }
    if let Some((field, why)) = settings.volume_problem() {
        anyhow::bail!("--{}: {why}", field.replace('_', "-"));
    }
    Ok((recorded.manifest, recorded.disk))
}

fn ami_settings(args: &AmiArgs) -> AmiOutput {
    AmiOutput {
        regions: args.regions.clone(),
        boot_mode: args.boot_mode,
        imds_v2: if args.imds_optional {
            ImdsSupport::Optional
        } else {
            ImdsSupport::Required
        },
        tpm: args.tpm,
        public: args.public,
        volume_type: args.volume_type,
        volume_size_gib: args.volume_size,
        iops: args.iops,
        throughput: args.throughput,
    }
}

fn ami(args: AmiArgs) -> anyhow::Result<()> {
    let (manifest, disk) = checked_manifest(&args)?;
    if args.dry_run {
        return ami_plan(&args);
    }
    let identity = ami::AmiIdentity::new(
        &manifest.role,
        &manifest.build_id,
        &manifest.release,
        &disk.blake3,
    );
    // A parent without its snapshot: the parent's build ID and image digest find it by tag.
    let parent = match (&args.parent, &args.parent_snapshot) {
        (Some(_), Some(id)) => Some(ami::ParentSnapshot::Id(id.clone())),
        (Some(parent), None) => {
            let path = Manifest::beside(parent);
            let parent_manifest = Manifest::read(&path).prefix(|| {
                format!(
                    "the parent's build manifest {} (or pass --parent-snapshot)",
                    path.display()
                )
            })?;
            let file = Manifest::image_name(parent);
            let parent_disk = parent_manifest.disk(&file).ok_or_else(|| {
                anyhow::anyhow!(
                    "--parent {}: its build manifest {} does not list {file}",
                    parent.display(),
                    path.display()
                )
            })?;
            Some(ami::ParentSnapshot::OfImage {
                build_id: parent_manifest.build_id.clone(),
                blake3: parent_disk.blake3.clone(),
            })
        }
        (None, _) => None,
    };
    let settings = ami_settings(&args);
    let request = ami::AmiPublish {
        source: ami::SnapshotSource {
            image: &args.image,
            parent_image: args.parent.as_deref(),
        },
        parent,
        kms_key_arn: args.kms_key.clone(),
        identity,
        settings: &settings,
        board: manifest.release.board,
    };
    let reporter = super::progress::Reporter::for_stderr(args.quiet, args.json);
    let options = aws_options(&args.region, args.workers, args.retries, args.wait_timeout);
    let record = ami::Publisher::connect(&options)
        .and_then(|publisher| publisher.publish_ami(&request, &reporter))
        .prefix(|| args.image.display().to_string())?;
    if args.json {
        say!("{}", serde_json::to_string_pretty(&record)?);
        return Ok(());
    }
    let reused = |yes: bool| if yes { " (reused)" } else { "" };
    say!(
        "{}: {} {}{}",
        record.name,
        record.image.region,
        record.image.image_id,
        reused(record.image.reused)
    );
    if let Some(snapshot) = &record.snapshot {
        say!(
            "  snapshot:  {} ({} blocks, {})",
            snapshot.snapshot_id,
            snapshot.changed_blocks,
            bytes(snapshot.bytes_sent)
        );
    }
    for copy in &record.copies {
        say!(
            "  copy:      {} {}{}",
            copy.region,
            copy.image_id,
            reused(copy.reused)
        );
    }
    if record.public {
        say!("  public:    yes");
    }
    say!("  launch:    {}", ami::IDENTITY_HINT);
    Ok(())
}

fn ami_plan(args: &AmiArgs) -> anyhow::Result<()> {
    let open = |path: &PathBuf| std::fs::File::open(path).prefix(|| path.display().to_string());
    let image = open(&args.image)?;
    let parent = args.parent.as_ref().map(open).transpose()?;
    let plan = ami::plan(&image, parent.as_ref()).prefix(|| args.image.display().to_string())?;
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
        say!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        say!(
            "{}: EBS snapshot plan (dry run, nothing sent)",
            args.image.display()
        );
        say!(
            "  volume:    {} GiB, {} blocks of 512 KiB",
            plan.volume_size_gib,
            plan.total_blocks
        );
        match &args.parent {
            Some(parent) => say!(
                "  parent:    {} (blocks equal to it are not sent)",
                parent.display()
            ),
            None => say!("  parent:    none (holes are not sent)"),
        }
        say!(
            "  send:      {} blocks, {}",
            plan.blocks.len(),
            bytes(plan.bytes())
        );
        say!("  checksum:  LINEAR SHA256 {}", plan.aggregate_checksum());
    }
    Ok(())
}
