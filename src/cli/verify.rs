//! `kato-image verify`: checks a built image against its manifest and signed provenance.

use std::path::PathBuf;

use clap::Args;
use kato_image::emit::ami::{AwsOptions, Publisher};
use kato_image::provenance::allowed_signers::AllowedSigners;
use kato_image::provenance::check::{self, Report, Trust};
use kato_image::trust::Keyring;

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The disk image (a build's `<role>.raw` or `<role>-ami.raw`).
    pub image: PathBuf,
    /// The manifest [default: `<role>.manifest.json` beside the image].
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Trust signatures by these OpenPGP public keys (armored or binary); the build's
    /// signatures are then required.
    #[arg(long, value_name = "FILE", conflicts_with = "allowed_signers")]
    pub key: Option<PathBuf>,
    /// Trust signatures by the SSH keys of this `allowed_signers` file (as for `ssh-keygen
    /// -Y verify`); the build's signatures are then required.
    #[arg(long, value_name = "FILE")]
    pub allowed_signers: Option<PathBuf>,
    /// With `--allowed-signers`: the signer's identity, matched against each line's
    /// principals as `ssh-keygen -Y verify -I` matches it [default: the principals of the
    /// line that names the signing key, as git does]
    #[arg(long, value_name = "PRINCIPAL", requires = "allowed_signers")]
    pub principal: Option<String>,
    /// Also prove that this AMI's root snapshot holds the image, block by block (EBS direct
    /// APIs; every block the snapshot has is read once).
    #[arg(long, value_name = "AMI-ID")]
    pub ami: Option<String>,
    /// AWS region of `--ami` (default: the AWS configuration's).
    #[arg(long, requires = "ami")]
    pub region: Option<String>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Cache folder whose table of zero-block digests makes holes free to hash (only that
    /// table is read and extended) [default: $KATO_IMAGE_CACHE, else
    /// $XDG_CACHE_HOME/kato-image].
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let text = args.image.to_string_lossy();
    if text.starts_with("ami-") && !args.image.exists() {
        anyhow::bail!(
            "{text} is an AMI: give the image it was published from, and the AMI with --ami (kato-image verify OUT/<role>-ami.raw --ami {text})"
        );
    }
    let read = |path: &PathBuf, limit: u64, what: &'static str| {
        kato_image::input::read_regular(path, limit, what)
    };
    let trust = match (&args.key, &args.allowed_signers) {
        (Some(path), _) => Trust::OpenPgp(Keyring::parse(
            &read(path, kato_image::trust::MAX_KEYRING, "keyring")?,
            &path.display().to_string(),
        )?),
        (None, Some(path)) => {
            let bytes = read(
                path,
                kato_image::provenance::allowed_signers::MAX_FILE,
                "allowed signers file",
            )?;
            let text = String::from_utf8(bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{}: not UTF-8 text (byte {} is not part of a character)",
                    path.display(),
                    e.utf8_error().valid_up_to()
                )
            })?;
            let signers = AllowedSigners::parse(&text, &path.display().to_string())?;
            if !signers.has_ed25519() {
                anyhow::bail!(
                    "{}: names no plain ssh-ed25519 key, the only kind kato-image signs with",
                    path.display()
                );
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            Trust::Ssh {
                signers,
                principal: args.principal.clone(),
                now,
            }
        }
        (None, None) => Trust::None,
    };
    let cache = args
        .cache
        .clone()
        .unwrap_or_else(kato_image::cache::Cache::default_dir);
    let cache = kato_image::cache::Cache::open(&cache).ok();
    let report = check::verify(&args.image, args.manifest.as_deref(), &trust);
    if let Some(cache) = &cache {
        cache.save_zero_leaves();
    }
    let mut report = report?;
    if let Some(ami) = &args.ami {
        let options = AwsOptions {
            region: args.region.clone(),
            workers: 1,
            retries: 3,
            wait: std::time::Duration::from_secs(60),
        };
        let publisher = Publisher::connect(&options)?;
        let progress = super::progress::Reporter::for_stderr(false, args.json);
        let comparison = publisher.compare_image(ami, &args.image, &progress)?;
        report.add_ami(&args.image, comparison);
    }
    if args.json {
        say!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    match report.problems.first() {
        None => Ok(()),
        Some(first) if report.problems.len() == 1 => anyhow::bail!("{first}"),
        Some(first) => anyhow::bail!("{first} (and {} more above)", report.problems.len() - 1),
    }
}

fn print_text(report: &Report) {
    use kato_image::platform::Container;
    say!(
        "{}: role {}, build {}",
        report.image,
        report.role,
        report.build_id
    );
    match &report.signer {
        Some(signer) => say!("  signature: verified, {signer}"),
        None => say!("  signature: {}", report.signature),
    }
    say!("  image:     blake3 {}", report.blake3);
    if let Some(ami) = &report.ami {
        let state = match ami.first_difference {
            None => "holds the image, byte for byte",
            Some(_) => "DIFFERS from the image",
        };
        say!(
            "  ami:       {} (snapshot {}): {state}; {} of {} blocks read",
            ami.image_id,
            ami.snapshot_id,
            ami.blocks_read,
            ami.blocks
        );
    }
    if let Some(format) = report.packaged {
        let unpack = match format {
            Container::GceTar => "tar -xSzf",
            _ => "qemu-img convert -O raw",
        };
        say!(
            "  partitions: inside the {} file, covered by its digest ({unpack} to read them)",
            format.extension()
        );
    }
    for p in &report.partitions {
        let state = match (p.as_built, p.vendor) {
            (false, _) => "DIFFERS from the build",
            (true, true) => "the vendor's, byte for byte",
            (true, false) => "changed by the build, as recorded",
        };
        say!("  {:>2} {:<12} {state}", p.slot, p.name);
    }
    for problem in &report.problems {
        say!("  problem:   {problem}");
    }
    if report.ok() {
        say!("  ok");
    }
}
