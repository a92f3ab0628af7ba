//! The command line: arguments, dispatch to the library, reports and exit codes.

#[macro_use]
mod stdout;

mod build;
mod fetch;
mod inspect;
mod progress;
mod publish;
mod pull;
mod run;
mod serve;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use kato_image::config::Format;
use kato_image::project::Project;

#[derive(Parser)]
#[command(
    name = "kato-image",
    version,
    about = "Build per-role boot artifacts for CoreOS-family fleets from signed Flatcar images",
    long_about = "kato-image turns the official, signed Flatcar Container Linux image into per-role \
                  artifacts (raw disk image, AMI, iPXE payload) that boot already configured for \
                  their role. Roles are described by profiles (profiles/*.yaml) and the systemd \
                  units they run (units/*), selected by each unit's [X-Fleet] section.",
    after_help = "Examples:\n  kato-image render --role master\n  kato-image render --role worker --format cloud-config\n  kato-image validate"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print progress lines on stderr even when it is not a terminal (a CI log).
    #[arg(long, global = true)]
    progress: bool,
}

#[derive(clap::Args, Debug)]
pub struct ProjectArgs {
    /// Folder of role profiles (base.yaml, master.yaml, ...).
    #[arg(long, value_name = "DIR", default_value = "profiles")]
    pub profiles: PathBuf,
    /// Folder of unit files [default: `units` beside the profiles folder].
    #[arg(long, value_name = "DIR")]
    pub units: Option<PathBuf>,
    /// Profiles and fragments may also name files inside this folder (after links are
    /// followed); by default only files inside the profiles folder are read.
    #[arg(long, value_name = "DIR")]
    pub files_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the machine config a role's machines boot with.
    #[command(
        after_help = "Examples:\n  kato-image render --role master > master.ign\n  kato-image render --role edge --format cloud-config"
    )]
    Render {
        /// The role to render (a profile that is not abstract).
        #[arg(long)]
        role: String,
        #[arg(long, value_enum, default_value_t = FormatArg::Ignition)]
        format: FormatArg,
        #[command(flatten)]
        project: ProjectArgs,
    },
    /// Check every role (or one) without printing its config.
    #[command(
        after_help = "Examples:\n  kato-image validate\n  kato-image validate --role worker --profiles ./profiles"
    )]
    Validate {
        /// Check only this role.
        #[arg(long)]
        role: Option<String>,
        /// Accept registry images named by tag alone, as `build --allow-unpinned` does.
        #[arg(long)]
        allow_unpinned: bool,
        #[command(flatten)]
        project: ProjectArgs,
    },
    /// Build role images: fetch and verify the vendor image, bake each role's config in.
    #[command(
        after_help = "Examples:\n  kato-image build --role master\n  kato-image build --role all --out out --json\n  kato-image build --role worker,edge --channel beta --release-url 'http://mirror/{channel}/{board}/{version}/'"
    )]
    Build(Box<build::BuildArgs>),
    /// Download and verify a Flatcar release into the cache; print the artifacts.
    #[command(
        after_help = "Examples:\n  kato-image fetch\n  kato-image fetch --channel beta --version 4593.1.0 --artifact pxe --json\n  kato-image fetch --release-url 'http://127.0.0.1:8080/flatcar/{channel}/{board}/{version}/' --offline"
    )]
    Fetch(fetch::FetchArgs),
    /// Show a disk image's partitions, filesystems and Flatcar boot flags.
    #[command(
        after_help = "Examples:\n  kato-image inspect flatcar_production_image.bin.bz2\n  kato-image inspect out/master.raw --json"
    )]
    Inspect(inspect::InspectArgs),
    /// Pull a registry image (verified, cached) into a tar that `docker load` accepts.
    #[command(
        after_help = "Examples:\n  kato-image pull docker.io/library/zookeeper:3.9 -o zookeeper.tar\n  kato-image pull 127.0.0.1:5000/kato/app@sha256:... -o app.tar --board arm64-usr --json"
    )]
    Pull(pull::PullArgs),
    /// Publish a built image: an AMI (`ami`) or just its EBS snapshot (`snapshot`).
    #[command(
        subcommand,
        after_help = "Examples:\n  kato-image publish ami out/master.raw --regions eu-west-1,us-east-1 --public\n  kato-image publish ami out/worker.raw --parent out/master.raw\n  kato-image publish ami out/worker.raw --parent out/master.raw --dry-run --json\n  kato-image publish snapshot out/master.raw --wait"
    )]
    Publish(publish::PublishCommand),
    /// Boot a built image on this machine under QEMU (UEFI, serial console, SSH forward).
    #[command(
        after_help = "Examples:\n  kato-image run out/master.raw\n  kato-image run --role worker --memory 4096 --cpus 4\n  kato-image run out/edge.raw --accel tcg --no-network"
    )]
    Run(run::RunArgs),
    /// Check a built image against its manifest and signed provenance, partition by partition.
    #[command(
        after_help = "Examples:\n  kato-image verify out/master.raw\n  kato-image verify out/master.raw --key ci-signing-key.asc\n  kato-image verify out/worker.raw --allowed-signers allowed_signers --json"
    )]
    Verify(verify::VerifyArgs),
    /// Serve a folder (iPXE payloads) over HTTP, loopback by default.
    #[command(
        after_help = "Examples:\n  kato-image serve out/ipxe\n  kato-image serve out/ipxe --listen 0.0.0.0:8080"
    )]
    Serve(serve::ServeArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  kato-image completions bash > /etc/bash_completion.d/kato-image"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    #[command(after_help = "Example:\n  kato-image man > kato-image.1 && man ./kato-image.1")]
    Man,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FormatArg {
    /// Ignition spec 3.3.0 JSON (Flatcar, Fedora CoreOS).
    Ignition,
    /// #cloud-config for coreos-cloudinit (CoreOS Container Linux era).
    CloudConfig,
}

impl From<FormatArg> for Format {
    fn from(value: FormatArg) -> Self {
        match value {
            FormatArg::Ignition => Format::Ignition,
            FormatArg::CloudConfig => Format::CloudConfig,
        }
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(error),
    };
    progress::LINES_WANTED.store(cli.progress, std::sync::atomic::Ordering::Relaxed);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kato-image: error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// Help and the version as clap prints them; a mistake on the command line as one line,
/// with clap's usage exit status.
fn usage_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        error.exit();
    }
    let text = error.render().to_string();
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("invalid command line");
    let message = first.strip_prefix("error: ").unwrap_or(first);
    eprintln!(
        "kato-image: error: {} (kato-image --help lists the options)",
        kato_image::origin::printable(message)
    );
    ExitCode::from(2)
}

/// The error on one line. Every error's message already includes its causes (library errors
/// embed their sources; `Prefix` puts the command line's context in front), so no chain of
/// sources is walked here.
fn one_line(error: &anyhow::Error) -> String {
    // Any control character quoted from an input (an escape sequence that would clear the
    // terminal or set its title) is shown escaped.
    kato_image::origin::printable(&without_os_codes(&error.to_string().replace('\n', " ")))
}

/// The text without the ` (os error N)` the standard library puts after a system error's
/// description: the description is the user's words, the number is the library's.
fn without_os_codes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(" (os error ") {
        let tail = &rest[at + " (os error ".len()..];
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        out.push_str(&rest[..at]);
        if digits > 0 && tail[digits..].starts_with(')') {
            rest = &tail[digits + 1..];
        } else {
            out.push_str(" (os error ");
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// Where an error happened, in front of its message, on the same line: the command line's
/// only way to add context to an error.
pub trait Prefix<T> {
    fn prefix<D: std::fmt::Display>(self, place: impl FnOnce() -> D) -> anyhow::Result<T>;
}

impl<T, E: std::fmt::Display> Prefix<T> for Result<T, E> {
    fn prefix<D: std::fmt::Display>(self, place: impl FnOnce() -> D) -> anyhow::Result<T> {
        self.map_err(|e| anyhow::anyhow!("{}: {e}", place()))
    }
}

pub fn open(project: &ProjectArgs) -> anyhow::Result<Project> {
    Ok(Project::open(
        &project.profiles,
        project.units.as_deref(),
        project.files_dir.as_deref(),
    )?)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Render {
            role,
            format,
            project,
        } => {
            let bytes = open(&project)?.render(&role, format.into())?;
            stdout::document(&bytes).prefix(|| "cannot write to standard output")?;
        }
        Command::Validate {
            role,
            allow_unpinned,
            project,
        } => {
            let project = open(&project)?;
            let roles = match role {
                Some(role) => vec![role],
                None => project.roles()?,
            };
            if roles.is_empty() {
                anyhow::bail!("{}: no roles to check", project.profiles.dir().display());
            }
            // What `build` checks before it writes anything, without the network.
            let release = |profile: &kato_image::profile::Profile| {
                fetch::ReleaseArgs::default().spec(profile.release.clone())
            };
            let plan =
                kato_image::build::plan::BuildPlan::make(&kato_image::build::plan::PlanRequest {
                    project: &project,
                    roles: &roles,
                    outputs: None,
                    release: &release,
                    ipxe_base_url: None,
                    allow_unpinned,
                    config_format: Format::Ignition,
                })?;
            for role in &plan.roles {
                let fragments = &role.plan.fragments;
                if fragments.is_empty() {
                    // A role without fragments can also be baked as cloud-config.
                    kato_image::config::render(&role.plan, Format::CloudConfig)?;
                }
                let units: Vec<&str> = role.plan.enabled_units().collect();
                let added = if fragments.is_empty() {
                    String::new()
                } else {
                    format!(
                        " and {} paths, {} units from Butane/Ignition fragments",
                        fragments.nodes.len(),
                        fragments.units.len()
                    )
                };
                say!(
                    "{}: ok ({} files{added}; starts {})",
                    role.name(),
                    role.plan.files.len(),
                    units.join(", ")
                );
            }
        }
        Command::Build(args) => build::run(*args)?,
        Command::Fetch(args) => fetch::run(args)?,
        Command::Inspect(args) => inspect::run(args)?,
        Command::Serve(args) => serve::run(args)?,
        Command::Run(args) => run::run(args)?,
        Command::Verify(args) => verify::run(args)?,
        Command::Pull(args) => pull::run(args)?,
        Command::Publish(command) => publish::run(command)?,
        Command::Completions { shell } => {
            // Generated whole first: the generator panics on a failed write.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "kato-image", &mut script);
            stdout::document(&script).prefix(|| "cannot write to standard output")?;
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .and_then(|()| stdout::document(&page))
                .prefix(|| "cannot write the man page")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::without_os_codes;

    #[test]
    fn system_error_numbers_are_left_out() {
        assert_eq!(
            without_os_codes(
                "a: No such file or directory (os error 2); b: Permission denied (os error 13)"
            ),
            "a: No such file or directory; b: Permission denied"
        );
        assert_eq!(without_os_codes("plain"), "plain");
        assert_eq!(without_os_codes("x (os error y)"), "x (os error y)");
    }
}
