//! `build`: a signed vendor image in, per-role artifacts out. One file per stage, each
//! handing the next a typed value:
//!
//! 1. `plan`: `BuildPlan::make` checks every role's config, release and outputs (pure);
//! 2. `gather`: releases, container images, then each vendor image once (fetched, verified,
//!    decompressed, hashed), OEM sysexts and PXE files; `Gathered::for_role` hands each role
//!    its `RoleInputs`;
//! 3. `role`: `RoleWriter::write` makes the role's `facts` (build ID, timestamps), its disks
//!    (`emit::raw`, then `emit::ami` for the AMI one) and its iPXE payload, each returning
//!    its record;
//! 4. `manifest`: `Manifest::assemble` from those records, written once; the provenance
//!    statement and signatures are made over the bytes written.

pub(crate) mod facts;
pub mod gather;
pub mod manifest;
pub mod plan;
mod role;

use std::path::{Path, PathBuf};

use crate::emit::ami::{AmiError, AwsOptions, Publisher};
use crate::emit::ipxe;
use crate::io::{At, PathError};
use crate::progress::Progress;
use crate::provenance::sign::Signer;
use gather::{GatherError, GatherOptions};
use manifest::Manifest;
use plan::{BuildPlan, PlanError, PlanRequest};
pub use role::RoleError;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Gather(#[from] GatherError),
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("{0}")]
    Aws(AmiError),
    /// One role's outputs failed; the message names the role where it is about that role.
    #[error("{}{source}", if source.is_the_roles() { format!("role {role}: ") } else { String::new() })]
    Role { role: String, source: RoleError },
}

/// What a build is asked for: the plan, what is gathered and how, how AMIs are published,
/// and where and how the outputs are written.
pub struct BuildRequest<'a> {
    pub plan: PlanRequest<'a>,
    pub gather: GatherOptions<'a>,
    /// How AMIs are published, if the plan has any.
    pub aws: AwsOptions,
    pub out: OutputOptions<'a>,
}

/// Where and how a build's outputs are written.
pub struct OutputOptions<'a> {
    pub dir: &'a Path,
    /// Time for the files the build writes; else the vendor signature's time.
    pub source_date_epoch: Option<i64>,
    /// Upload and register AMI disks in this run; otherwise they are only written, for
    /// `publish ami` later.
    pub publish_ami: bool,
    /// Signs each role's provenance and manifest; `None` writes them unsigned.
    pub signer: Option<&'a Signer>,
    /// Who ran the build, as a URI (SLSA's `builder.id`): a CI job's, or kato-image's local one.
    pub builder_id: &'a str,
}

#[derive(Debug, Clone)]
pub struct RoleBuild {
    pub role: String,
    pub manifest_path: PathBuf,
    pub manifest: Manifest,
    /// The statement (`<role>.provenance.json`).
    pub provenance_path: PathBuf,
    /// The DSSE envelope, when signed (`<role>.intoto.jsonl`).
    pub envelope_path: Option<PathBuf>,
}

pub fn build(
    request: &BuildRequest,
    progress: &dyn Progress,
) -> Result<Vec<RoleBuild>, BuildError> {
    let plan = BuildPlan::make(&request.plan)?;
    let out = &request.out;
    std::fs::create_dir_all(out.dir).at(out.dir)?;
    crate::atomic::remove_stale_temps(out.dir);
    let cache = &request.gather.fetch.net.cache;
    let gathered = gather::gather(&plan, &request.gather, progress);
    cache.save_zero_leaves();
    let gathered = gathered?;
    // Credentials and region are checked before any role is written.
    let publisher = match plan.has_ami() && out.publish_ami {
        true => Some(Publisher::connect(&request.aws).map_err(BuildError::Aws)?),
        false => None,
    };
    let writer = role::RoleWriter {
        out,
        publisher: publisher.as_ref(),
        profiles_dir: request.plan.project.profiles.dir(),
        progress,
    };
    let mut builds = Vec::new();
    for role in &plan.roles {
        let inputs = gathered.for_role(role);
        let build = writer
            .write(role, &inputs)
            .map_err(|source| BuildError::Role {
                role: role.name().to_string(),
                source,
            })?;
        builds.push(build);
    }
    if plan.has_ipxe() {
        ipxe::machine_map(&out.dir.join("ipxe"), &plan.machines)?;
    }
    cache.save_zero_leaves();
    Ok(builds)
}
