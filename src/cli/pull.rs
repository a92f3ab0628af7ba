//! `kato-image pull`: one registry image into a tar `docker load` accepts, the same tar a
//! build bakes into KATO-DATA (useful to check an image before baking it, or to bake it from
//! an archive later).

use std::path::PathBuf;
use std::time::Duration;

use super::Prefix;
use clap::Args;
use kato_image::cache::Cache;
use kato_image::oci::{PullOptions, Reference, Registry, archive};
use kato_image::profile::Board;
use kato_image::release::transport::{NetOptions, TransportOptions};

use super::fetch::BoardArg;
use super::progress::{Reporter, bytes};

#[derive(Args, Debug)]
pub struct PullArgs {
    /// The image: `registry/repository:tag`, `...@sha256:...`, or both.
    pub reference: String,
    /// Where the archive goes (written under a temporary name, renamed when complete).
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
    /// The platform to pick from multi-platform images.
    #[arg(long, value_enum, default_value = "amd64-usr")]
    pub board: BoardArg,
    /// Cache folder [default: $KATO_IMAGE_CACHE, else $XDG_CACHE_HOME/kato-image].
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Blobs downloaded at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub workers: usize,
    /// Further attempts after a network failure.
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// Make no request: use only what the cache holds (a tag: the digest it last resolved
    /// to).
    #[arg(long)]
    pub offline: bool,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: PullArgs) -> anyhow::Result<()> {
    let reference = Reference::parse(&args.reference)?;
    let board: Board = args.board.into();
    let cache_dir = args.cache.clone().unwrap_or_else(Cache::default_dir);
    let options = PullOptions {
        net: NetOptions {
            cache: Cache::open(&cache_dir)?,
            offline: args.offline,
            retries: args.retries,
            retry_delay: Duration::from_secs(1),
            transport: TransportOptions::default(),
        },
        workers: args.workers,
    };
    let reporter = Reporter::for_stderr(args.quiet, args.json);
    let registry = Registry::new(&options)?;
    let pulled = registry.pull(&reference, board.oci_architecture(), &reporter)?;
    let output = &args.output;
    let written = archive::write_file(&pulled, output).prefix(|| output.display().to_string())?;
    let (sha256, size) = (written.sha256, written.size);
    let pinned = reference.pinned(&pulled.digest);
    if args.json {
        let summary = serde_json::json!({
            "reference": pinned.to_string(),
            "digest": pulled.digest,
            "manifest": pulled.manifest_digest,
            "config": pulled.manifest.config.digest,
            "layers": pulled.manifest.layers.iter().map(|l| &l.digest).collect::<Vec<_>>(),
            "archive": output,
            "sha256": sha256,
            "size": size,
        });
        say!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        say!("{pinned}");
        say!("  image id:  {}", pulled.manifest.config.digest);
        say!("  layers:    {}", pulled.manifest.layers.len());
        say!(
            "  archive:   {} ({}, sha256 {sha256})",
            output.display(),
            bytes(size)
        );
    }
    Ok(())
}
