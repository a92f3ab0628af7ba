//! Gathering what a plan needs, each thing once, what fails soonest first: every release
//! resolved, every role's container images, every vendor disk image fetched, verified and
//! decompressed into the cache (with its digests), every PXE kernel and initramfs.

use std::collections::BTreeMap;

use crate::build::plan::{BuildPlan, DiskKind, PlannedRole, VendorDisk};
use crate::cache::ArtifactRecord;
use crate::disk::{self, DiskError, VendorImage};
use crate::oci::{self, BakeError, BakedImage, PullOptions};
use crate::platform::Platform;
use crate::progress::Progress;
use crate::release::{
    self, FetchOptions, FetchedArtifact, Fetcher, PxeFiles, ReleaseError, ReleaseInfo, ReleaseSpec,
};

#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error(transparent)]
    Images(#[from] BakeError),
    #[error(
        "{about}; build raw or ami outputs from it, pick another release, or pass --allow-known-issues to make the iPXE payload anyway"
    )]
    KnownIssue { about: String },
    #[error(transparent)]
    NoOem(Box<MissingOem>),
}

/// A platform's OEM sysext is not in the release folder.
#[derive(Debug, thiserror::Error)]
#[error(
    "Flatcar {channel} {version} {board} publishes no {file} ({url}), so no {title} disk can be made from it: OEM sysexts exist from release {first} on, and some platforms came later; pick a newer release"
)]
pub struct MissingOem {
    pub channel: String,
    pub version: String,
    pub board: String,
    pub file: String,
    pub url: String,
    pub title: &'static str,
    pub first: u32,
}

/// Everything the plan needs, by what asked for it.
#[derive(Debug, Default)]
pub struct Gathered {
    pub releases: BTreeMap<ReleaseSpec, ReleaseInfo>,
    pub images: BTreeMap<(ReleaseSpec, VendorDisk), VendorImage>,
    /// Each platform's OEM sysext, verified.
    pub(crate) oems: BTreeMap<(ReleaseSpec, Platform), FetchedArtifact>,
    pub pxe: BTreeMap<ReleaseSpec, PxeFiles>,
    /// Each role's container images, in profile order.
    pub baked: BTreeMap<String, Vec<BakedImage>>,
}

/// What one role's outputs are made from, handed over once.
pub(crate) struct RoleInputs<'a> {
    pub release: &'a ReleaseInfo,
    /// Each disk image to make, in the plan's order.
    pub disks: Vec<DiskInputs<'a>>,
    /// With an iPXE output.
    pub pxe: Option<&'a PxeFiles>,
    /// The container images baked into KATO-DATA.
    pub images: &'a [BakedImage],
    /// Every vendor file the outputs are made from, each once: the disks' images, the
    /// platforms' OEM sysexts, the PXE files.
    pub vendor: Vec<ArtifactRecord>,
}

/// One disk image to make: its kind, the vendor image it starts from, and for a platform
/// disk the verified OEM sysext it gets.
pub(crate) struct DiskInputs<'a> {
    pub kind: DiskKind,
    pub vendor: &'a VendorImage,
    pub oem: Option<&'a FetchedArtifact>,
}

impl Gathered {
    /// What `role` is made from (everything the plan asked for was gathered).
    pub(crate) fn for_role(&self, role: &PlannedRole) -> RoleInputs<'_> {
        let spec = &role.release;
        let disks: Vec<DiskInputs> = role
            .disks
            .iter()
            .map(|&kind| DiskInputs {
                kind,
                vendor: &self.images[&(spec.clone(), kind.vendor())],
                oem: kind.platform().map(|p| &self.oems[&(spec.clone(), p)]),
            })
            .collect();
        let pxe = role.ipxe.as_ref().map(|_| &self.pxe[spec]);
        let mut vendor: Vec<ArtifactRecord> = Vec::new();
        let images = disks.iter().map(|d| &d.vendor.artifact.record);
        let oems = disks.iter().filter_map(|d| d.oem.map(|o| &o.record));
        let pxe_files = pxe
            .into_iter()
            .flat_map(|p| [&p.kernel.record, &p.initramfs.record]);
        for record in images.chain(oems).chain(pxe_files) {
            if !vendor.contains(record) {
                vendor.push(record.clone());
            }
        }
        RoleInputs {
            release: &self.releases[spec],
            disks,
            pxe,
            images: self.baked.get(role.name()).map_or(&[], Vec::as_slice),
            vendor,
        }
    }

    pub fn release(&self, spec: &ReleaseSpec) -> &ReleaseInfo {
        &self.releases[spec]
    }
}

pub struct GatherOptions<'a> {
    pub fetch: &'a FetchOptions,
    /// Image blobs downloaded at once.
    pub pull_workers: usize,
    /// Make outputs from releases with a known problem for them, with a warning.
    pub allow_known_issues: bool,
}

/// Fetches, verifies and decompresses what `plan` needs.
pub fn gather(
    plan: &BuildPlan,
    options: &GatherOptions,
    progress: &dyn Progress,
) -> Result<Gathered, GatherError> {
    let mut gathered = Gathered::default();
    let mut fetcher = Fetcher::new(options.fetch, progress);
    // Known problems of the releases are found before anything large is downloaded.
    for spec in plan.pxe_releases() {
        let release = resolve(&mut gathered, &mut fetcher, &spec)?;
        if let Some(issue) =
            release::known_issues::pxe_appended_initrd(release.channel, &release.version)
        {
            let about = issue.about(&release.version);
            if !options.allow_known_issues {
                return Err(GatherError::KnownIssue { about });
            }
            progress.warn(&format!(
                "{about}; making the iPXE payload anyway (--allow-known-issues)"
            ));
        }
    }
    // OEM sysexts are small: a release without one is found before the image is fetched.
    for (spec, platform) in plan.oems() {
        let release = resolve(&mut gathered, &mut fetcher, &spec)?;
        let file = platform.sysext_file();
        let digests = format!("{file}.DIGESTS");
        let artifact = fetcher.artifact(&release, &file).map_err(|e| match e {
            // Not published: no file, or no DIGESTS for it (what is fetched first). A file
            // whose signature is missing is another matter, told as such.
            ReleaseError::Missing { what, .. } if what == file || what == digests => {
                GatherError::NoOem(Box::new(MissingOem {
                    channel: release.channel.to_string(),
                    version: release.version.clone(),
                    board: release.board.to_string(),
                    url: format!("{}{file}", release.base_url),
                    file: file.clone(),
                    title: platform.title(),
                    first: crate::platform::FIRST_SYSEXT_RELEASE,
                }))
            }
            e => e.into(),
        })?;
        gathered.oems.insert((spec, platform), artifact);
    }
    let pull = PullOptions {
        net: options.fetch.net.clone(),
        workers: options.pull_workers,
    };
    // Container images come before the vendor images: a bad archive or a missing tag is
    // told in seconds, not after a vendor image has been fetched and decompressed.
    for role in &plan.roles {
        // Images go onto disks; an iPXE-only role carries none.
        if role.disks.is_empty() || role.profile.images.is_empty() {
            continue;
        }
        let baked = oci::bake::prepare(&role.profile.images, role.board(), &pull, progress)?;
        gathered.baked.insert(role.name().to_string(), baked);
    }
    for (spec, vendor) in plan.bases() {
        let release = resolve(&mut gathered, &mut fetcher, &spec)?;
        let artifact = fetcher.artifact(&release, vendor.file())?;
        let image = disk::cached_raw(&options.fetch.net.cache, &artifact, progress)?;
        gathered
            .images
            .insert((spec, vendor), VendorImage { artifact, image });
    }
    for spec in plan.pxe_releases() {
        let release = resolve(&mut gathered, &mut fetcher, &spec)?;
        let kernel = fetcher.artifact(&release, release::PXE_KERNEL_FILE)?;
        let initramfs = fetcher.artifact(&release, release::PXE_INITRAMFS_FILE)?;
        gathered.pxe.insert(spec, PxeFiles { kernel, initramfs });
    }
    Ok(gathered)
}

fn resolve(
    gathered: &mut Gathered,
    fetcher: &mut Fetcher,
    spec: &ReleaseSpec,
) -> Result<ReleaseInfo, ReleaseError> {
    if let Some(release) = gathered.releases.get(spec) {
        return Ok(release.clone());
    }
    let release = fetcher.resolve(spec)?;
    gathered.releases.insert(spec.clone(), release.clone());
    Ok(release)
}
