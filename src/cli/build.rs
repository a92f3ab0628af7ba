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
    /// What to emit (raw disk images; AMI and iPXE come with later releases).
    #[arg(long, value_enum, default_value_t = OutputArg::Raw)]
    pub output: OutputArg,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OutputArg {
    /// OUT/<role>.raw and OUT/<role>.manifest.json.
    Raw,
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
    };
    let reporter = Reporter::for_stderr(args.quiet || args.json);
    let builds = build(&request, &reporter)?;
    if args.json {
        let summary: Vec<_> = builds
            .iter()
            .map(|b| serde_json::json!({ "role": b.role, "image": b.image, "manifest": b.manifest_path, "build_id": b.manifest.build_id, "sha256": b.manifest.output.sha256, "changed_partitions": b.manifest.changed_partitions }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        for b in &builds {
            let m = &b.manifest;
            println!(
                "{}: {} ({})",
                b.role,
                b.image.display(),
                bytes(m.output.size)
            );
            println!("  manifest:  {}", b.manifest_path.display());
            println!(
                "  base:      Flatcar {} {} {} ({})",
                m.base.channel, m.base.board, m.base.version, m.base.file
            );
            println!("  changed:   {}", m.changed_partitions.join(", "));
            println!("  config:    sha256 {}", m.config.sha256);
            println!("  image:     sha256 {}", m.output.sha256);
            println!("  build id:  {}", m.build_id);
        }
    }
    if options.insecure_skip_signature {
        eprintln!("{INSECURE_WARNING}");
    }
    Ok(())
}
