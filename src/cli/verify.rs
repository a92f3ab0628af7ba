//! `kato-image verify`: checks a built image against its manifest and signed provenance.

use std::path::PathBuf;

use clap::Args;
use kato_image::provenance::check::{self, Report, Trust};
use kato_image::provenance::sshkey;
use kato_image::verify::Keyring;

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
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let text = args.image.to_string_lossy();
    if text.starts_with("ami-") && !args.image.exists() {
        anyhow::bail!(
            "{text}: verifying a published AMI against its image is not built yet; verify the image it was published from (OUT/<role>-ami.raw)"
        );
    }
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    };
    let trust = match (&args.key, &args.allowed_signers) {
        (Some(path), _) => {
            Trust::OpenPgp(Keyring::parse(&read(path)?, &path.display().to_string())?)
        }
        (None, Some(path)) => {
            let keys = sshkey::allowed_signers(&String::from_utf8_lossy(&read(path)?));
            if keys.is_empty() {
                anyhow::bail!("{}: holds no ssh-ed25519 key", path.display());
            }
            Trust::Ssh(keys)
        }
        (None, None) => Trust::None,
    };
    let report = check::verify(&args.image, args.manifest.as_deref(), &trust)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
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
    println!(
        "{}: role {}, build {}",
        report.image, report.role, report.build_id
    );
    match &report.signer {
        Some(signer) => println!("  signature: verified, {signer}"),
        None => println!("  signature: {}", report.signature),
    }
    println!("  image:     blake3 {}", report.blake3);
    for p in &report.partitions {
        let state = match (p.as_built, p.vendor) {
            (false, _) => "DIFFERS from the build",
            (true, true) => "the vendor's, byte for byte",
            (true, false) => "changed by the build, as recorded",
        };
        println!("  {:>2} {:<12} {state}", p.slot, p.name);
    }
    for problem in &report.problems {
        println!("  problem:   {problem}");
    }
    if report.ok() {
        println!("  ok");
    }
}
