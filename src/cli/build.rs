//! `kato-image build`: role images from a signed vendor image.

use std::path::PathBuf;

use clap::Args;
use kato_image::build::gather::GatherOptions;
use kato_image::build::plan::OutputKind;
use kato_image::build::plan::PlanRequest;
use kato_image::build::{BuildRequest, OutputOptions, RoleBuild, build};
use kato_image::emit::ami::AwsOptions;
use kato_image::provenance::sign::{Passphrase, Signer};

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
    /// What to emit, comma-separated [default: what each profile lists under `outputs:`,
    /// else `raw`]: `raw` (OUT/<role>.raw), `ipxe` (OUT/ipxe/), `ami` (OUT/<role>-ami.raw
    /// from Flatcar's EC2 image, uploaded to EBS on a snapshot of that image, sending only
    /// the blocks the role changed, and registered), or a platform: `gce` (tar.gz), `azure`
    /// (fixed VHD), `qemu` (or `qcow2`), `openstack`, `proxmoxve`, `kubevirt`, `scaleway`,
    /// `stackit`, `nutanix`, `oraclecloud`, `cloudsigma`, `exoscale` (qcow2), `hetzner`,
    /// `digitalocean`, `akamai`, `vmware` (raw): OUT/<role>-<platform>.<format>, Flatcar's
    /// generic image with the platform's signed OEM sysext.
    #[arg(long, value_delimiter = ',', value_parser = parse_output, value_name = "OUTPUT")]
    pub output: Option<Vec<OutputKind>>,
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
    /// What configures the machines: the role's Ignition config, or its cloud-config, which
    /// a one-file Ignition config writes to /var/lib/flatcar-install/user_data for Flatcar's
    /// coreos-cloudinit to run on every boot.
    #[arg(long, value_enum, default_value_t = super::FormatArg::Ignition)]
    pub format: super::FormatArg,
    /// Make outputs from a release with a known problem for them (such as the alpha and beta
    /// releases whose PXE initramfs drops appended OEM files), with a warning.
    #[arg(long)]
    pub allow_known_issues: bool,
    /// Write `--output ami` disks (OUT/<role>-ami.raw) without uploading them, for `publish
    /// ami` later (AWS is not needed).
    #[arg(long)]
    pub no_publish: bool,
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
    /// Sign each role's provenance and manifest with this key: an OpenPGP secret key
    /// (armored) or an unencrypted OpenSSH Ed25519 key. Without it they are written unsigned.
    #[arg(
        long,
        value_name = "FILE",
        env = "KATO_IMAGE_SIGN_KEY",
        hide_env_values = true
    )]
    pub sign_key: Option<PathBuf>,
    /// The OpenPGP key's passphrase is in this file (its first line).
    #[arg(
        long,
        value_name = "FILE",
        requires = "sign_key",
        conflicts_with = "sign_passphrase_env"
    )]
    pub sign_passphrase_file: Option<PathBuf>,
    /// The OpenPGP key's passphrase is in this environment variable.
    #[arg(long, value_name = "VAR", requires = "sign_key")]
    pub sign_passphrase_env: Option<String>,
    /// Who runs the build, as a URI recorded as the provenance's builder (a CI job's URL)
    /// [default: kato-image's local builder].
    #[arg(long, value_name = "URI", env = "KATO_IMAGE_BUILDER_ID")]
    pub builder_id: Option<String>,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

/// An `--output` value.
fn parse_output(text: &str) -> Result<OutputKind, String> {
    use kato_image::platform::Platform;
    match text {
        "raw" => Ok(OutputKind::Raw),
        "ipxe" => Ok(OutputKind::Ipxe),
        "ami" => Ok(OutputKind::Ami),
        "qcow2" => Ok(OutputKind::Platform(Platform::Qemu)),
        name => Platform::parse(name)
            .map(OutputKind::Platform)
            .ok_or_else(|| {
                format!(
                    "expected raw, ipxe, ami or a platform ({}; qcow2 is qemu's)",
                    Platform::names()
                )
            }),
    }
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
    // The key is read and tried before anything is fetched or written.
    let signer = match &args.sign_key {
        Some(path) => {
            let passphrase = match (&args.sign_passphrase_file, &args.sign_passphrase_env) {
                (Some(file), _) => Passphrase::File(file.clone()),
                (None, Some(var)) => Passphrase::Env(var.clone()),
                (None, None) => Passphrase::None,
            };
            Some(Signer::load(path, &passphrase)?)
        }
        None => None,
    };
    let builder_id = args
        .builder_id
        .clone()
        .unwrap_or_else(|| kato_image::provenance::LOCAL_BUILDER.to_string());
    let release =
        |profile: &kato_image::profile::Profile| args.release.spec(profile.release.clone());
    let outputs = args.output.clone();
    let request = BuildRequest {
        plan: PlanRequest {
            project: &project,
            roles: &roles,
            outputs: outputs.as_deref(),
            release: &release,
            ipxe_base_url: args.base_url.as_deref(),
            allow_unpinned: args.allow_unpinned,
            config_format: args.format.into(),
        },
        gather: GatherOptions {
            fetch: &options,
            pull_workers: args.pull_workers,
            allow_known_issues: args.allow_known_issues,
        },
        aws: AwsOptions {
            region: args.region.clone(),
            workers: args.upload_workers,
            retries: options.net.retries,
            wait: std::time::Duration::from_secs(args.wait_timeout),
        },
        out: OutputOptions {
            dir: &args.out,
            source_date_epoch,
            publish_ami: !args.no_publish,
            signer: signer.as_ref(),
            builder_id: &builder_id,
        },
    };
    let reporter = Reporter::for_stderr(args.quiet, args.json);
    let builds = build(&request, &reporter)?;
    if args.json {
        let summary: Vec<_> = builds.iter().map(|b| summary(&args.out, b)).collect();
        say!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        for b in &builds {
            print_text(&args.out, b);
        }
        match &signer {
            Some(signer) => say!(
                "provenance signed with {} key {}",
                signer.kind(),
                signer.keyid()
            ),
            None => say!("provenance unsigned (give --sign-key to sign it)"),
        }
    }
    if options.insecure_skip_signature {
        eprintln!("{INSECURE_WARNING}");
    }
    Ok(())
}

/// One role's JSON summary: where its outputs are, and what a CI job uses next.
fn summary(out: &std::path::Path, b: &RoleBuild) -> serde_json::Value {
    let m = &b.manifest;
    serde_json::json!({
        "role": b.role,
        "manifest": b.manifest_path,
        "build_id": m.build_id,
        "disks": m.disks.iter().map(|d| serde_json::json!({
            "path": out.join(&d.file),
            "from": d.from,
            "size": d.size,
            "blake3": d.blake3,
            "changed_partitions": d.changed_partitions,
            "ami": d.ami,
            "platform": d.platform,
        })).collect::<Vec<_>>(),
        "ipxe": m.ipxe.as_ref().map(|i| out.join("ipxe").join(&i.script)),
        "provenance": b.provenance_path,
        "signed": b.envelope_path,
    })
}

fn print_text(out: &std::path::Path, b: &RoleBuild) {
    let m = &b.manifest;
    say!("{}: build id {}", b.role, m.build_id);
    say!("  manifest:  {}", b.manifest_path.display());
    say!("  config:    sha256 {}", m.config.sha256);
    say!("  provenance: {}", b.provenance_path.display());
    if let Some(envelope) = &b.envelope_path {
        say!("  signed:    {}", envelope.display());
    }
    say!(
        "  release:   Flatcar {} {} {}",
        m.release.channel,
        m.release.board,
        m.release.version
    );
    for disk in &m.disks {
        say!(
            "  image:     {} ({}, blake3 {})",
            out.join(&disk.file).display(),
            bytes(disk.size),
            disk.blake3
        );
        say!("    from:    {}", disk.from);
        if let Some(p) = &disk.platform {
            say!(
                "    for:     {} ({}, oem_id {}, {} as {}; disk {})",
                p.name.title(),
                p.format.extension(),
                p.oem_id,
                p.oem.artifact.file,
                p.oem.installed_as,
                bytes(p.disk_size)
            );
        }
        say!("    changed: {}", disk.changed_partitions.join(", "));
        if let Some(ami) = &disk.ami {
            let reused = if ami.image.reused { " (reused)" } else { "" };
            say!(
                "    ami:     {} {}{reused}",
                ami.image.region,
                ami.image.image_id
            );
            for copy in &ami.copies {
                say!("    copy:    {} {}", copy.region, copy.image_id);
            }
            say!("    launch:  {}", kato_image::emit::ami::IDENTITY_HINT);
        }
    }
    if let Some(ipxe) = &m.ipxe {
        say!(
            "  ipxe:      {}",
            out.join("ipxe").join(&ipxe.script).display()
        );
    }
}
