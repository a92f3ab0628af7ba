//! `build`: a signed vendor image in, per-role artifacts out, in four stages with types
//! between them:
//!
//! 1. `plan::BuildPlan::make`: every role's config, release and outputs, checked (pure);
//! 2. `gather::gather`: releases, container images, then each vendor image once (fetched,
//!    verified, decompressed, hashed) and PXE files;
//! 3. per role, `emit::raw::build` for each disk image (then `emit::ami` to publish the AMI
//!    one), `emit::ipxe::emit` for the payload;
//! 4. `manifest::Manifest::assemble`, written once per role, then its provenance
//!    (`provenance::Statement`), signed when the request has a signer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::disk::ZeroLeaves;
use crate::emit::ami::{
    AmiError, AmiIdentity, AmiPublish, AmiRecord, AwsOptions, ParentSnapshot, Publisher,
    SnapshotSource,
};
use crate::emit::ipxe::{self, IpxeError, IpxeRecord};
use crate::emit::oem::PlatformOem;
use crate::emit::raw::{self, RawError};
use crate::fs::tree::Timespec;
use crate::gather::{self, GatherError, GatherOptions, Gathered};
use crate::manifest::{DiskRecord, Manifest, ManifestError, OemRecord, RoleFacts};
use crate::plan::{BuildPlan, DiskKind, OutputKind, PlanError, PlanRequest, PlannedRole};
use crate::profile::Profile;
use crate::progress::Progress;
use crate::project::Project;
use crate::provenance::dsse::{Envelope, EnvelopeSignature};
use crate::provenance::sign::{self, Signer};
use crate::provenance::{self as prov, Statement};
use crate::release::{FetchOptions, ReleaseSpec};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Gather(#[from] GatherError),
    #[error(transparent)]
    Raw(#[from] RawError),
    #[error(transparent)]
    Ipxe(#[from] IpxeError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{}: {source}", path.display())]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Provenance(#[from] crate::provenance::ProvenanceError),
    #[error(transparent)]
    Sign(#[from] crate::provenance::sign::SignError),
    #[error("{0}")]
    Aws(AmiError),
    #[error("role {role}: {source}")]
    Ami { role: String, source: AmiError },
}

pub struct BuildRequest<'a> {
    pub project: &'a Project,
    pub roles: &'a [String],
    /// What to emit for every role; `None`: what each profile's `outputs:` lists.
    pub outputs: Option<&'a [OutputKind]>,
    /// The release a role is built from, given its profile (command-line flags applied).
    pub release: &'a dyn Fn(&Profile) -> ReleaseSpec,
    pub fetch: &'a FetchOptions,
    pub out_dir: &'a Path,
    /// Time for the files the build writes; else the vendor signature's time.
    pub source_date_epoch: Option<i64>,
    /// URL prefix for the files iPXE scripts name (else relative to the script).
    pub ipxe_base_url: Option<&'a str>,
    /// Bake registry images named by tag alone, recording the digest they resolve to.
    pub allow_unpinned: bool,
    /// Blobs downloaded at once when pulling images.
    pub pull_workers: usize,
    /// Ignition, or cloud-config for coreos-cloudinit written by Ignition.
    pub config_format: crate::config::Format,
    /// Make outputs from releases with a known problem for them (with a warning).
    pub allow_known_issues: bool,
    /// How AMIs are published, if the plan has any.
    pub aws: AwsOptions,
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
    let plan = BuildPlan::make(&PlanRequest {
        project: request.project,
        roles: request.roles,
        outputs: request.outputs,
        release: request.release,
        ipxe_base_url: request.ipxe_base_url,
        allow_unpinned: request.allow_unpinned,
        config_format: request.config_format,
    })?;
    let out_dir = request.out_dir;
    std::fs::create_dir_all(out_dir).map_err(|source| BuildError::Output {
        path: out_dir.to_path_buf(),
        source,
    })?;
    crate::fsutil::remove_stale_temps(out_dir);
    let mut zeros = ZeroLeaves::load(&request.fetch.cache.zero_leaves_path());
    let options = GatherOptions {
        fetch: request.fetch,
        pull_workers: request.pull_workers,
        allow_known_issues: request.allow_known_issues,
    };
    let gathered = gather::gather(&plan, &options, &mut zeros, progress);
    zeros.save();
    let gathered = gathered?;
    // Credentials and region are checked before any role is written.
    let publisher = match plan.has_ami() && request.publish_ami {
        true => Some(Publisher::connect(&request.aws).map_err(BuildError::Aws)?),
        false => None,
    };
    let mut emitter = Emitter {
        request,
        gathered: &gathered,
        publisher: publisher.as_ref(),
        base_snapshots: BTreeMap::new(),
        zeros: &mut zeros,
        progress,
    };
    let mut builds = Vec::new();
    for role in &plan.roles {
        builds.push(emitter.role(role)?);
    }
    if plan.has_ipxe() {
        ipxe::machine_map(&out_dir.join("ipxe"), &plan.machines)?;
    }
    zeros.save();
    Ok(builds)
}

/// Stage 3 and 4 for one role at a time, with what roles share.
struct Emitter<'a> {
    request: &'a BuildRequest<'a>,
    gathered: &'a Gathered,
    publisher: Option<&'a Publisher>,
    /// The snapshot of each vendor image in the AWS region, made or found once: role
    /// snapshots are made on it and send only the blocks the role changed.
    base_snapshots: BTreeMap<ReleaseSpec, String>,
    zeros: &'a mut ZeroLeaves,
    progress: &'a dyn Progress,
}

impl Emitter<'_> {
    fn role(&mut self, role: &PlannedRole) -> Result<RoleBuild, BuildError> {
        self.progress
            .note(&format!("building role {}", role.name()));
        let facts = RoleFacts::new(role, self.gathered, self.request.source_date_epoch);
        let time = Timespec {
            sec: facts.timestamp,
            nsec: 0,
        };
        let mut disks = Vec::new();
        for &kind in &role.disks {
            let mut disk = self.disk(role, kind, time)?;
            if kind == DiskKind::Ami && self.publisher.is_some() {
                disk.ami = Some(self.publish(role, &facts, &disk)?);
            }
            disks.push(disk);
        }
        let ipxe = match &role.ipxe {
            Some(settings) => Some(self.ipxe(role, settings, &facts)?),
            None => None,
        };
        let profiles_dir = self.request.project.profiles.dir();
        let manifest = Manifest::assemble(role, self.gathered, &facts, profiles_dir, disks, ipxe);
        let manifest_path = Manifest::path(self.request.out_dir, role.name());
        manifest.write(&manifest_path)?;
        let (provenance_path, envelope_path) = self.provenance(role, &manifest, &manifest_path)?;
        Ok(RoleBuild {
            role: role.name().to_string(),
            manifest_path,
            manifest,
            provenance_path,
            envelope_path,
        })
    }

    /// The role's statement, and with a signer its DSSE envelope and the manifest's
    /// detached signature; without one, signatures of an earlier build are removed, so that
    /// nothing beside the new manifest claims to sign it.
    fn provenance(
        &self,
        role: &PlannedRole,
        manifest: &Manifest,
        manifest_path: &Path,
    ) -> Result<(PathBuf, Option<PathBuf>), BuildError> {
        let out_dir = self.request.out_dir;
        let write = |path: &Path, bytes: &[u8]| {
            crate::fsutil::write_atomic(path, bytes).map_err(|source| BuildError::Output {
                path: path.to_path_buf(),
                source,
            })
        };
        let manifest_bytes = manifest.to_bytes();
        let statement = Statement::of_build(&prov::Inputs {
            manifest,
            manifest_bytes: &manifest_bytes,
            out_dir,
            builder_id: self.request.builder_id,
            config: &role.config,
        })?;
        let payload = statement.to_bytes();
        let statement_path = prov::statement_path(out_dir, role.name());
        let envelope_path = prov::envelope_path(out_dir, role.name());
        let detached_path = sign::manifest_signature_path(manifest_path);
        let Some(signer) = self.request.signer else {
            for stale in [&envelope_path, &detached_path] {
                match std::fs::remove_file(stale) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(BuildError::Output {
                            path: stale.clone(),
                            source: e,
                        });
                    }
                    _ => {}
                }
            }
            write(&statement_path, &payload)?;
            return Ok((statement_path, None));
        };
        let mut envelope = Envelope::new(prov::PAYLOAD_TYPE, &payload);
        let pae = prov::dsse::pae(prov::PAYLOAD_TYPE, &payload);
        envelope.signatures.push(EnvelopeSignature {
            keyid: signer.keyid(),
            sig: prov::dsse::base64(&signer.signature(&pae, manifest.timestamp)?),
        });
        let detached = signer.detached(&manifest_bytes, manifest.timestamp)?;
        write(&statement_path, &payload)?;
        write(&detached_path, &detached)?;
        write(&envelope_path, &envelope.to_line())?;
        Ok((statement_path, Some(envelope_path)))
    }

    fn disk(
        &mut self,
        role: &PlannedRole,
        kind: DiskKind,
        time: Timespec,
    ) -> Result<DiskRecord, BuildError> {
        let vendor = self.gathered.image(&role.release, kind);
        let base = raw::Base {
            file: &vendor.artifact.record.file,
            sha512: &vendor.artifact.record.sha512,
            image: &vendor.image,
        };
        let version = &self.gathered.release(&role.release).version;
        let platform = kind.platform().map(|platform| {
            let sysext = self.gathered.oem(&role.release, platform);
            PlatformOem {
                platform,
                sysext: &sysext.path,
                sysext_len: sysext.record.size,
                version,
                record: OemRecord {
                    artifact: sysext.record.clone(),
                    installed_as: format!("/oem/{}", platform.sysext_path(version)),
                },
            }
        });
        let inputs = raw::RawInputs {
            role: role.name(),
            config: &role.config,
            kernel_args: &role.plan.kernel_args,
            images: self.gathered.baked(role.name()),
            data: &role.profile.data,
            time,
            platform,
        };
        let output = self.request.out_dir.join(kind.file_name(role.name()));
        Ok(raw::build(&base, &inputs, &output, self.zeros)?)
    }

    /// Uploads the role's AMI disk on the vendor image's snapshot and registers it.
    fn publish(
        &mut self,
        role: &PlannedRole,
        facts: &RoleFacts,
        disk: &DiskRecord,
    ) -> Result<AmiRecord, BuildError> {
        let publisher = self.publisher.expect("connected when the plan has AMIs");
        let settings = role.ami.as_ref().expect("AMI disks come with AMI settings");
        let vendor = self.gathered.image(&role.release, DiskKind::Ami);
        let release = self.gathered.release(&role.release);
        let ami_error = |source| BuildError::Ami {
            role: role.name().to_string(),
            source,
        };
        let snapshot = match self.base_snapshots.get(&role.release) {
            Some(id) => id.clone(),
            None => {
                let id = publisher
                    .base_snapshot(
                        &vendor.image.path,
                        &vendor.artifact.record,
                        release,
                        self.progress,
                    )
                    .map_err(|source| BuildError::Ami {
                        role: "(base)".into(),
                        source,
                    })?;
                self.base_snapshots.insert(role.release.clone(), id.clone());
                id
            }
        };
        self.progress
            .note(&format!("publishing role {} as an AMI", role.name()));
        let image = self.request.out_dir.join(&disk.file);
        let request = AmiPublish {
            source: SnapshotSource {
                image: &image,
                parent_image: Some(&vendor.image.path),
            },
            parent: Some(ParentSnapshot::Id(snapshot)),
            kms_key_arn: None,
            identity: AmiIdentity::new(role.name(), &facts.build_id, release, disk),
            settings,
            board: role.board(),
        };
        publisher
            .publish_ami(&request, self.progress)
            .map_err(ami_error)
    }

    fn ipxe(
        &self,
        role: &PlannedRole,
        settings: &crate::profile::IpxeOutput,
        facts: &RoleFacts,
    ) -> Result<IpxeRecord, BuildError> {
        let pxe = self.gathered.pxe(&role.release);
        let release = self.gathered.release(&role.release);
        let header = format!(
            "kato-image role {}, Flatcar {} {} {}",
            role.name(),
            release.channel,
            release.board,
            release.version
        );
        let payload = ipxe::RolePayload {
            role: role.name(),
            config: &role.config,
            kernel_args: &role.plan.kernel_args,
            mtime: facts.timestamp.clamp(0, u32::MAX as i64) as u32,
            header: &header,
        };
        let inputs = ipxe::PxeInputs {
            kernel: &pxe.kernel,
            initramfs: &pxe.initramfs,
        };
        Ok(ipxe::emit(
            &self.request.out_dir.join("ipxe"),
            &payload,
            settings,
            &inputs,
        )?)
    }
}
