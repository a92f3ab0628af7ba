//! One role's outputs, in order: its disk images (and the AMI of the EC2 one), its iPXE
//! payload, then its manifest (written once, last) and its provenance.

use std::path::{Path, PathBuf};

use super::facts::RoleFacts;
use super::gather::{DiskInputs, RoleInputs};
use super::manifest::{Manifest, ManifestError};
use super::plan::{DiskKind, PlannedRole};
use super::{OutputOptions, RoleBuild};
use crate::emit::ami::{
    AmiError, AmiIdentity, AmiPublish, AmiRecord, ParentSnapshot, Publisher, SnapshotSource,
};
use crate::emit::ipxe::{self, IpxeRecord};
use crate::emit::oem::{OemRecord, PlatformOem};
use crate::emit::raw::{self, DiskRecord, RawError};
use crate::fs::tree::Timespec;
use crate::io::{At, PathError};
use crate::profile::IpxeOutput;
use crate::progress::Progress;
use crate::provenance::dsse::{Envelope, EnvelopeSignature};
use crate::provenance::sign::{self, SignError};
use crate::provenance::{self as prov, Statement};

/// What can go wrong while one role's outputs are written; the driver says which role.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error(transparent)]
    Raw(#[from] RawError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error(transparent)]
    Ami(#[from] AmiError),
    /// The snapshot of the vendor image, which every role's AMI is made on.
    #[error("{0}")]
    BaseSnapshot(AmiError),
    #[error(transparent)]
    Io(#[from] PathError),
}

impl RoleError {
    /// Whether the message is about the role (and so names it): not for what the role
    /// shares with others (the vendor image, its snapshot, the iPXE folder, the output
    /// folder, the signing key).
    pub(crate) fn is_the_roles(&self) -> bool {
        match self {
            RoleError::Raw(e) => e.is_the_roles(),
            RoleError::Ami(_) => true,
            _ => false,
        }
    }
}

/// What every role's outputs share: where they go and how, the AWS connection, the
/// zero-leaf table and the progress sink.
pub(super) struct RoleWriter<'a> {
    pub out: &'a OutputOptions<'a>,
    pub publisher: Option<&'a Publisher>,
    pub(crate) profiles_dir: &'a Path,
    pub progress: &'a dyn Progress,
}

impl RoleWriter<'_> {
    pub fn write(&self, role: &PlannedRole, inputs: &RoleInputs) -> Result<RoleBuild, RoleError> {
        self.progress
            .note(&format!("building role {}", role.name()));
        let facts = RoleFacts::new(role, inputs, self.out.source_date_epoch);
        let time = Timespec {
            sec: facts.timestamp,
            nsec: 0,
        };
        let mut disks = Vec::new();
        for disk_inputs in &inputs.disks {
            let mut disk = self.disk(role, inputs, disk_inputs, time)?;
            if disk_inputs.kind == DiskKind::Ami
                && let Some(publisher) = self.publisher
            {
                disk.ami =
                    Some(self.publish(publisher, role, inputs, disk_inputs, &facts, &disk)?);
            }
            disks.push(disk);
        }
        let ipxe = match (&role.ipxe, inputs.pxe) {
            (Some(settings), Some(pxe)) => Some(self.ipxe(role, inputs, settings, pxe, &facts)?),
            _ => None,
        };
        let manifest = Manifest::assemble(role, inputs, &facts, self.profiles_dir, disks, ipxe);
        let manifest_path = Manifest::path(self.out.dir, role.name());
        let manifest_bytes = manifest.write(&manifest_path)?;
        let (provenance_path, envelope_path) =
            self.provenance(role, &manifest, &manifest_bytes, &manifest_path)?;
        Ok(RoleBuild {
            role: role.name().to_string(),
            manifest_path,
            manifest,
            provenance_path,
            envelope_path,
        })
    }

    /// The role's statement, and with a signer its DSSE envelope and the manifest's
    /// detached signature, all over `manifest_bytes` as written; without a signer,
    /// signatures of an earlier build are removed, so that nothing beside the new manifest
    /// claims to sign it.
    fn provenance(
        &self,
        role: &PlannedRole,
        manifest: &Manifest,
        manifest_bytes: &[u8],
        manifest_path: &Path,
    ) -> Result<(PathBuf, Option<PathBuf>), RoleError> {
        let out_dir = self.out.dir;
        let write = |path: &Path, bytes: &[u8]| crate::atomic::write_atomic(path, bytes).at(path);
        let statement = Statement::of_build(&prov::Inputs {
            manifest,
            manifest_bytes,
            builder_id: self.out.builder_id,
            config: &role.config,
        });
        let payload = statement.to_bytes();
        let statement_path = prov::statement_path(out_dir, role.name());
        let envelope_path = prov::envelope_path(out_dir, role.name());
        let detached_path = sign::manifest_signature_path(manifest_path);
        let Some(signer) = self.out.signer else {
            for stale in [&envelope_path, &detached_path] {
                match std::fs::remove_file(stale).at(stale) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
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
        let detached = signer.detached(manifest_bytes, manifest.timestamp)?;
        write(&statement_path, &payload)?;
        write(&detached_path, &detached)?;
        write(&envelope_path, &envelope.to_line())?;
        Ok((statement_path, Some(envelope_path)))
    }

    fn disk(
        &self,
        role: &PlannedRole,
        inputs: &RoleInputs,
        disk: &DiskInputs,
        time: Timespec,
    ) -> Result<DiskRecord, RoleError> {
        let version = &inputs.release.version;
        let platform = disk
            .kind
            .platform()
            .zip(disk.oem)
            .map(|(platform, sysext)| PlatformOem {
                platform,
                sysext: &sysext.path,
                sysext_len: sysext.record.size,
                version,
                record: OemRecord {
                    artifact: sysext.record.clone(),
                    installed_as: format!("/oem/{}", platform.sysext_path(version)),
                },
            });
        let raw_inputs = raw::RawInputs {
            role: role.name(),
            config: &role.config,
            kernel_args: &role.plan.kernel_args,
            images: inputs.images,
            data: &role.profile.data,
            time,
            platform,
        };
        let output = self.out.dir.join(disk.kind.file_name(role.name()));
        Ok(raw::build(disk.vendor, &raw_inputs, &output)?)
    }

    /// Uploads the role's AMI disk on the vendor image's snapshot and registers it.
    fn publish(
        &self,
        publisher: &Publisher,
        role: &PlannedRole,
        inputs: &RoleInputs,
        disk_inputs: &DiskInputs,
        facts: &RoleFacts,
        disk: &DiskRecord,
    ) -> Result<AmiRecord, RoleError> {
        let settings = role.ami.as_ref().expect("AMI disks come with AMI settings");
        let vendor = disk_inputs.vendor;
        let snapshot = publisher
            .base_snapshot(
                &vendor.image.path,
                &vendor.artifact.record,
                inputs.release,
                self.progress,
            )
            .map_err(RoleError::BaseSnapshot)?;
        self.progress
            .note(&format!("publishing role {} as an AMI", role.name()));
        let image = self.out.dir.join(&disk.file);
        let request = AmiPublish {
            source: SnapshotSource {
                image: &image,
                parent_image: Some(&vendor.image.path),
            },
            parent: Some(ParentSnapshot::Id(snapshot)),
            kms_key_arn: None,
            identity: AmiIdentity::new(role.name(), &facts.build_id, inputs.release, &disk.blake3),
            settings,
            board: role.board(),
        };
        Ok(publisher.publish_ami(&request, self.progress)?)
    }

    fn ipxe(
        &self,
        role: &PlannedRole,
        inputs: &RoleInputs,
        settings: &IpxeOutput,
        pxe: &crate::release::PxeFiles,
        facts: &RoleFacts,
    ) -> Result<IpxeRecord, RoleError> {
        let release = inputs.release;
        let header = format!(
            "kato-image role {}, Flatcar {} {} {}",
            role.name(),
            release.channel,
            release.board,
            release.version
        );
        let payload = ipxe::RolePayload {
            role: role.name(),
            config: &role.config.bytes,
            kernel_args: &role.plan.kernel_args,
            mtime: facts.timestamp.clamp(0, u32::MAX as i64) as u32,
            header: &header,
        };
        Ok(ipxe::emit(
            &self.out.dir.join("ipxe"),
            &payload,
            settings,
            pxe,
        )?)
    }
}
