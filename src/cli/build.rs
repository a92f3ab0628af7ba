//! `kato-image build`: role images from a signed vendor image.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use kato_image::build::{BuildRequest, build};

use super::ProjectArgs;
use super::fetch::{INSECURE_WARNING, ReleaseArgs};
use super::progress::{Reporter, bytes};

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Roles to build: one, a comma-separated list, or `all`.
    #[arg(long, value_delimiter = ',', required = true)]
    pub role: Vec<String>,
    #[command(flatten)]
    pub project: ProjectArgs,
    #[command(flatten)]
    pub release: ReleaseArgs,
    /// Where the images and manifests go.
    #[arg(long, value_name = "DIR", default_value = "out")]
    pub out: PathBuf,
    /// What to emit: any of `raw`, `ipxe` and `ami` (`raw,ipxe,ami`). `ami` uploads each
    /// role's image (from Flatcar's EC2 image) to EBS and registers it; the second and later
    /// roles send only the blocks that differ from the first.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "raw")]
    pub output: Vec<OutputArg>,
    /// URL prefix for the kernel and initrds in iPXE scripts (default: relative to the
    /// script, which iPXE resolves against the script's own URL).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Bake registry images named by tag alone; the digest each resolves to is recorded in
    /// the manifest. Without it such images are refused: a tag can move.
    #[arg(long)]
    pub allow_unpinned: bool,
    /// Image blobs downloaded at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub pull_workers: usize,
    /// AWS region for `--output ami` (default: the AWS configuration's).
    #[arg(long)]
    pub region: Option<String>,
    /// Snapshot blocks uploaded at once (`--output ami`).
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub upload_workers: usize,
    /// Seconds to wait (`--output ami`) for snapshots to complete and AMIs to become
    /// available.
    #[arg(long, value_name = "SECONDS", default_value_t = 1800)]
    pub wait_timeout: u64,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OutputArg {
    /// OUT/<role>.raw: the disk image with the role's config in its OEM partition.
    Raw,
    /// OUT/ipxe/: PXE kernel and initramfs, a config overlay and <role>.ipxe per role.
    Ipxe,
    /// An AMI per role (settings from the profile's `outputs.ami`), recorded in its manifest.
    Ami,
}

pub fn run(args: BuildArgs) -> anyhow::Result<()> {
    let project = super::open(&args.project)?;
    let roles = if args.role.iter().any(|r| r == "all") {
        project.roles()?
    } else {
        args.role.clone()
    };
    let options = args.release.options()?;
    if options.insecure_skip_signature {
        eprintln!("{INSECURE_WARNING}");
    }
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) => Some(value.trim().parse::<i64>().map_err(|_| {
            anyhow::anyhow!("SOURCE_DATE_EPOCH={value:?} is not a number of seconds")
        })?),
        Err(_) => None,
    };
    let release_for =
        |profile: &kato_image::profile::Profile| args.release.spec(profile.release.clone());
    let request = BuildRequest {
        project: &project,
        roles: &roles,
        release_for: &release_for,
        fetch: &options,
        out_dir: &args.out,
        source_date_epoch,
        // An AMI is uploaded from the raw image, so `ami` makes one too.
        raw: args
            .output
            .iter()
            .any(|o| matches!(o, OutputArg::Raw | OutputArg::Ami)),
        ipxe: args.output.iter().any(|o| matches!(o, OutputArg::Ipxe)),
        ipxe_base_url: args.base_url.clone(),
        allow_unpinned: args.allow_unpinned,
        pull_workers: args.pull_workers,
        ami: args
            .output
            .iter()
            .any(|o| matches!(o, OutputArg::Ami))
            .then(|| kato_image::build::AmiTarget {
                region: args.region.clone(),
                workers: args.upload_workers,
                retries: options.retries,
                wait: std::time::Duration::from_secs(args.wait_timeout),
            }),
    };
    let reporter = Reporter::for_stderr(args.quiet, args.json);
    let builds = build(&request, &reporter)?;
    if args.json {
        let summary: Vec<_> = builds
            .iter()
            .map(|b| {
                serde_json::json!({
                    "role": b.role,
                    "image": b.image,
                    "manifest": b.manifest_path,
                    "build_id": b.manifest.build_id,
                    "sha256": b.manifest.output.as_ref().map(|o| o.sha256.clone()),
                    "changed_partitions": b.manifest.changed_partitions,
                    "ipxe": b.manifest.ipxe.as_ref().map(|i| args.out.join("ipxe").join(&i.script)),
                    "ami": b.manifest.ami,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        for b in &builds {
            let m = &b.manifest;
            println!("{}: build id {}", b.role, m.build_id);
            println!("  manifest:  {}", b.manifest_path.display());
            println!("  config:    sha256 {}", m.config.sha256);
            if let (Some(image), Some(output), Some(base)) = (&b.image, &m.output, &m.base) {
                println!(
                    "  image:     {} ({}, sha256 {})",
                    image.display(),
                    bytes(output.size),
                    output.sha256
                );
                println!(
                    "  base:      Flatcar {} {} {} ({})",
                    base.channel, base.board, base.version, base.file
                );
                println!("  changed:   {}", m.changed_partitions.join(", "));
            }
            if let Some(ami) = &m.ami {
                let reused = if ami.image.reused { " (reused)" } else { "" };
                println!(
                    "  ami:       {} {}{reused}",
                    ami.image.region, ami.image.image_id
                );
                for copy in &ami.copies {
                    println!("  copy:      {} {}", copy.region, copy.image_id);
                }
            }
            if let Some(ipxe) = &m.ipxe {
                println!(
                    "  ipxe:      {}",
                    args.out.join("ipxe").join(&ipxe.script).display()
                );
            }
        }
    }
    if options.insecure_skip_signature {
        eprintln!("{INSECURE_WARNING}");
    }
    Ok(())
}
