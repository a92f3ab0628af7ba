//! `kato-image fetch`: release flags (shared with `build`), and the report.

use std::path::PathBuf;
use std::time::Duration;

use super::Prefix;
use clap::{Args, ValueEnum};
use kato_image::cache::Cache;
use kato_image::release::transport::{NetOptions, TransportOptions};
use kato_image::release::{self, ArtifactKind, FetchOptions, FetchedRelease, ReleaseSpec};
use kato_image::release::{Board, Channel};
use kato_image::trust::{Keyring, format_time};

use super::progress::{Reporter, bytes};

/// Which release, where from, and how much to trust it. Flags win over the profile's
/// `release:` section, which wins over the defaults.
#[derive(Args, Debug, Clone, Default)]
pub struct ReleaseArgs {
    #[arg(long, value_enum)]
    pub channel: Option<ChannelArg>,
    /// `current` (resolved through version.txt) or a version such as 4593.1.0.
    #[arg(long)]
    pub version: Option<String>,
    #[arg(long, value_enum)]
    pub board: Option<BoardArg>,
    /// Where releases live, with {channel}, {board} and {version}
    /// [default: https://{channel}.release.flatcar-linux.net/{board}/{version}/].
    #[arg(long, value_name = "TEMPLATE", env = "KATO_IMAGE_RELEASE_URL")]
    pub release_url: Option<String>,
    /// Cache folder [default: $KATO_IMAGE_CACHE, else $XDG_CACHE_HOME/kato-image].
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Make no network request: use only what the cache holds.
    #[arg(long)]
    pub offline: bool,
    /// Trust these OpenPGP public keys instead of the embedded Flatcar key.
    #[arg(long, value_name = "FILE", env = "KATO_IMAGE_KEYRING")]
    pub keyring: Vec<PathBuf>,
    /// Do not check signatures (DIGESTS are still checked). Recorded in every output.
    #[arg(long)]
    pub insecure_skip_signature: bool,
    /// Further attempts after a transient network failure.
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// First wait between attempts in milliseconds; doubles each time, up to 30 s.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub retry_delay_ms: u64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ChannelArg {
    Stable,
    Beta,
    Alpha,
    Lts,
}

impl From<ChannelArg> for Channel {
    fn from(value: ChannelArg) -> Self {
        match value {
            ChannelArg::Stable => Channel::Stable,
            ChannelArg::Beta => Channel::Beta,
            ChannelArg::Alpha => Channel::Alpha,
            ChannelArg::Lts => Channel::Lts,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum BoardArg {
    #[value(name = "amd64-usr")]
    Amd64,
    #[value(name = "arm64-usr")]
    Arm64,
}

impl From<BoardArg> for Board {
    fn from(value: BoardArg) -> Self {
        match value {
            BoardArg::Amd64 => Board::Amd64,
            BoardArg::Arm64 => Board::Arm64,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ArtifactArg {
    /// The generic disk image.
    Image,
    /// The EC2 disk image.
    Ami,
    /// The PXE kernel and initramfs.
    Pxe,
}

#[derive(Args, Debug)]
pub struct FetchArgs {
    #[command(flatten)]
    pub release: ReleaseArgs,
    /// Take the release settings from this role's profile (flags still win).
    #[arg(long)]
    pub role: Option<String>,
    /// Folder of role profiles, for --role.
    #[arg(long, value_name = "DIR", default_value = "profiles")]
    pub profiles: PathBuf,
    #[arg(long, value_enum, default_value_t = ArtifactArg::Image)]
    pub artifact: ArtifactArg,
    /// Print a JSON summary on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

impl ReleaseArgs {
    /// The release to use: these flags over `from_profile`.
    pub fn spec(&self, from_profile: kato_image::profile::Release) -> ReleaseSpec {
        ReleaseSpec {
            channel: self
                .channel
                .map(Channel::from)
                .unwrap_or(from_profile.channel),
            version: self.version.clone().unwrap_or(from_profile.version),
            board: self.board.map(Board::from).unwrap_or(from_profile.board),
            url_template: self
                .release_url
                .clone()
                .or(from_profile.url)
                .unwrap_or_else(|| release::DEFAULT_URL_TEMPLATE.to_string()),
        }
    }

    pub fn options(&self) -> anyhow::Result<FetchOptions> {
        let keyring = if self.keyring.is_empty() {
            Keyring::flatcar()
        } else {
            let mut data = Vec::new();
            for path in &self.keyring {
                data.extend(
                    kato_image::input::read_regular(
                        path,
                        kato_image::trust::MAX_KEYRING,
                        "keyring",
                    )
                    .prefix(|| "--keyring")?,
                );
                data.push(b'\n');
            }
            let names: Vec<String> = self
                .keyring
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            Keyring::parse(&data, &names.join(", "))?
        };
        let cache_dir = self.cache.clone().unwrap_or_else(Cache::default_dir);
        Ok(FetchOptions {
            net: NetOptions {
                cache: Cache::open(&cache_dir)?,
                offline: self.offline,
                retries: self.retries,
                retry_delay: Duration::from_millis(self.retry_delay_ms),
                transport: TransportOptions::default(),
            },
            keyring,
            insecure_skip_signature: self.insecure_skip_signature,
        })
    }
}

pub const INSECURE_WARNING: &str = "WARNING: --insecure-skip-signature: OpenPGP signatures are NOT checked; \
anyone who can change the mirror or the connection can change what you boot";

pub fn run(args: FetchArgs) -> anyhow::Result<()> {
    let from_profile = match &args.role {
        Some(role) => kato_image::profile::load_role(&args.profiles, role)?.release,
        None => kato_image::profile::Release::default(),
    };
    let spec = args.release.spec(from_profile);
    let options = args.release.options()?;
    if options.insecure_skip_signature {
        eprintln!("{INSECURE_WARNING}");
    }
    let kind = match args.artifact {
        ArtifactArg::Image => ArtifactKind::Image,
        ArtifactArg::Ami => ArtifactKind::Ami,
        ArtifactArg::Pxe => ArtifactKind::Pxe,
    };
    let reporter = Reporter::for_stderr(args.quiet, args.json);
    let fetched = release::fetch(&spec, kind, &options, &reporter)?;
    if args.json {
        say!("{}", serde_json::to_string_pretty(&fetched)?);
    } else {
        print_text(&fetched);
    }
    if options.insecure_skip_signature {
        eprintln!("{INSECURE_WARNING}");
    }
    Ok(())
}

fn print_text(fetched: &FetchedRelease) {
    let release = &fetched.release;
    let requested = if release.requested_version == release.version {
        String::new()
    } else {
        format!(" ({})", release.requested_version)
    };
    say!(
        "Flatcar {} {} {}{requested}",
        release.channel,
        release.board,
        release.version
    );
    for artifact in &fetched.artifacts {
        let record = &artifact.record;
        say!("{}", artifact.path.display());
        say!("  file:      {} ({})", record.file, bytes(record.size));
        say!("  sha512:    {}", record.sha512);
        match &record.signature {
            Some(s) => say!(
                "  signed:    by {} (key {}) at {}{}",
                s.signer_fingerprint,
                s.primary_fingerprint,
                format_time(s.created),
                if record.digests_asc_verified {
                    "; DIGESTS.asc verified"
                } else {
                    ""
                }
            ),
            None => say!("  signed:    NOT CHECKED (--insecure-skip-signature)"),
        }
        say!(
            "  source:    {}{}",
            record.url,
            if artifact.from_cache { " (cached)" } else { "" }
        );
    }
}
