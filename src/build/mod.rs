//! `build`: a signed vendor image in, one image per role out. The base is fetched, verified
//! and decompressed once; each role costs a copy of the data extents, a new OEM filesystem
//! holding its config, and hashing. Every partition but OEM stays byte-identical, and the
//! manifest proves it.

pub mod images;
pub mod manifest;
pub mod oem;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::cache::hex;
use crate::config::{self, Format};
use crate::disk::{self, DiskError, Window, WorkingCopy};
use crate::emit::{ami, ipxe};
use crate::fs::btrfs::{EditError, WriteError, edit_partition};
use crate::fs::tree::Timespec;
use crate::fs::{self as filesystems, FsKind};
use crate::profile::{Located, Profile, UnknownMachine};
use crate::progress::Progress;
use crate::project::{Project, ProjectError};
use crate::release::{
    self, ArtifactKind, FetchOptions, FetchedArtifact, FetchedRelease, ReleaseError, ReleaseSpec,
};
use manifest::{Base, Config, FileDigest, Manifest, Output, PartitionDigest, Tool};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error(
        "{file}: the OEM partition holds {found}, not btrfs: Flatcar 2983 and later keep the baked config on a btrfs OEM, and GRUB under UEFI reads only FAT and btrfs"
    )]
    OemNotBtrfs { file: String, found: String },
    #[error(
        "role {role}: the OEM partition is {size} bytes but its files and the config need {needed}"
    )]
    OemTooSmall {
        role: String,
        needed: u64,
        size: u64,
    },
    #[error("role {role}: {source}")]
    Edit { role: String, source: EditError },
    #[error("{}: {source}", path.display())]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Image {
        origin: crate::origin::Origin,
        message: String,
    },
    #[error("role {role}: adding the KATO-DATA partition: {source}")]
    Layout {
        role: String,
        source: crate::disk::layout::LayoutError,
    },
    #[error("role {role}: {source}")]
    Ami { role: String, source: ami::AmiError },
    #[error("{origin}: {message}")]
    Machine {
        origin: crate::origin::Origin,
        message: String,
    },
}

pub struct BuildRequest<'a> {
    pub project: &'a Project,
    pub roles: &'a [String],
    /// The release a role is built from, given its profile (command-line flags applied).
    pub release_for: &'a dyn Fn(&Profile) -> ReleaseSpec,
    pub fetch: &'a FetchOptions,
    pub out_dir: &'a Path,
    /// Time for the files the build writes; else the vendor signature's time.
    pub source_date_epoch: Option<i64>,
    /// Emit `OUT/<role>.raw`.
    pub raw: bool,
    /// Emit `OUT/ipxe/` payloads.
    pub ipxe: bool,
    /// URL prefix for the files iPXE scripts name (else relative to the script).
    pub ipxe_base_url: Option<String>,
    /// Bake registry images named by tag alone, recording the digest they resolve to.
    pub allow_unpinned: bool,
    /// Blobs downloaded at once when pulling images.
    pub pull_workers: usize,
    /// Publish each role's image as an AMI (made from Flatcar's EC2 image).
    pub ami: Option<AmiTarget>,
}

/// Where and how `build --output ami` publishes.
#[derive(Debug, Clone)]
pub struct AmiTarget {
    /// Default: the AWS configuration's.
    pub region: Option<String>,
    pub workers: usize,
    pub retries: u32,
    /// How long to wait for snapshots to complete and copies to become available.
    pub wait: std::time::Duration,
}

#[derive(Debug, Clone)]
pub struct RoleBuild {
    pub role: String,
    pub image: Option<PathBuf>,
    pub manifest_path: PathBuf,
    pub manifest: Manifest,
}

/// A fetched, decompressed base and its partitions' digests.
struct PreparedBase {
    release: FetchedRelease,
    raw: PathBuf,
    digests: BTreeMap<u32, String>,
}

pub fn build(
    request: &BuildRequest,
    progress: &dyn Progress,
) -> Result<Vec<RoleBuild>, BuildError> {
    let out_error = |source| BuildError::Output {
        path: request.out_dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(request.out_dir).map_err(out_error)?;
    // Every role is planned before anything is fetched: a bad profile costs no download.
    let mut plans = Vec::new();
    for role in request.roles {
        let profile = request.project.profile(role)?;
        let plan =
            crate::role::plan(&profile, &request.project.units).map_err(ProjectError::from)?;
        let config = config::render(&plan, Format::Ignition).map_err(ProjectError::from)?;
        let kind = if profile.outputs.ami.is_some() || request.ami.is_some() {
            ArtifactKind::Ami
        } else {
            ArtifactKind::Image
        };
        let spec = (request.release_for)(&profile);
        if !request.allow_unpinned {
            images::check_pinned(&profile)?;
        }
        plans.push((profile, plan, config, kind, spec));
    }
    let pull = crate::oci::PullOptions {
        cache: request.fetch.cache.clone(),
        retries: request.fetch.retries,
        retry_delay: request.fetch.retry_delay,
        transport: request.fetch.transport.clone(),
        workers: request.pull_workers,
    };
    let mut bases: Vec<((ReleaseSpec, ArtifactKind), PreparedBase)> = Vec::new();
    let mut pxes: Vec<(ReleaseSpec, FetchedRelease)> = Vec::new();
    let mut builds = Vec::new();
    let mut machines = Vec::new();
    // The snapshot of each vendor image: role snapshots are made on it and send only the
    // blocks the role changed.
    let mut published: Vec<((ReleaseSpec, ArtifactKind), PathBuf, String)> = Vec::new();
    for (profile, plan, config, kind, spec) in plans {
        let key = (spec.clone(), kind);
        if request.raw && !bases.iter().any(|(k, _)| *k == key) {
            let base = prepare_base(&spec, kind, request.fetch, progress)?;
            bases.push((key.clone(), base));
        }
        if request.ipxe && !pxes.iter().any(|(k, _)| *k == spec) {
            let pxe = release::fetch(&spec, ArtifactKind::Pxe, request.fetch, progress)?;
            pxes.push((spec.clone(), pxe));
        }
        let base = bases.iter().find(|(k, _)| *k == key).map(|(_, b)| b);
        let pxe = pxes.iter().find(|(k, _)| *k == spec).map(|(_, p)| p);
        let baked = if request.raw && !profile.images.is_empty() {
            images::prepare(&profile, &pull, progress)?
        } else {
            Vec::new()
        };
        progress.note(&format!("building role {}", profile.role));
        builds.push(build_role(
            request,
            &profile,
            &plan.kernel_args,
            &config,
            base,
            pxe,
            &baked,
        )?);
        if let (Some(target), Some(base)) = (&request.ami, base) {
            let parent = match published.iter().find(|(k, _, _)| *k == key) {
                Some((_, raw, snapshot)) => (raw.clone(), snapshot.clone()),
                None => {
                    let snapshot = publish_base(target, base, progress)?;
                    published.push((key.clone(), base.raw.clone(), snapshot.clone()));
                    (base.raw.clone(), snapshot)
                }
            };
            let built = builds.last_mut().expect("just built");
            publish_ami(target, &profile, built, parent, progress)?;
        }
        let unknown = profile.outputs.ipxe.as_ref().map(|i| i.unknown);
        machines.push((profile.role.clone(), profile.machines.clone(), unknown));
    }
    if request.ipxe {
        write_machine_map(request, &machines)?;
    }
    Ok(builds)
}

/// The snapshot holding the unmodified vendor image `base` (found by tag, else uploaded).
fn publish_base(
    target: &AmiTarget,
    base: &PreparedBase,
    progress: &dyn Progress,
) -> Result<String, BuildError> {
    let artifact = &base.release.artifacts[0];
    let upload = ami::SnapshotUpload {
        image: &base.raw,
        parent_image: None,
        region: target.region.as_deref(),
        retries: target.retries,
        spec: ami::SnapshotSpec {
            description: format!(
                "Flatcar {} {} {} ({}), base of kato-image role snapshots",
                base.release.channel, base.release.board, base.release.version, artifact.file
            ),
            tags: vec![("kato:flatcar-version".into(), base.release.version.clone())],
            parent_snapshot_id: None,
            kms_key_arn: None,
            workers: target.workers,
        },
    };
    ami::base_snapshot(&upload, &artifact.sha512, target.wait, progress).map_err(|source| {
        BuildError::Ami {
            role: "(base)".into(),
            source,
        }
    })
}

/// Uploads a role's image on `parent` (the vendor image and its snapshot), registers the AMI
/// and records it in the role's manifest.
fn publish_ami(
    target: &AmiTarget,
    profile: &Profile,
    built: &mut RoleBuild,
    (parent_image, parent_snapshot): (PathBuf, String),
    progress: &dyn Progress,
) -> Result<(), BuildError> {
    let image = built.image.clone().expect("AMIs are built from raw images");
    let manifest_bytes =
        std::fs::read(&built.manifest_path).map_err(|source| BuildError::Output {
            path: built.manifest_path.clone(),
            source,
        })?;
    let manifest = &built.manifest;
    let base = manifest.base.as_ref().expect("raw builds have a base");
    let manifest_sha256 = hex(&Sha256::digest(&manifest_bytes));
    let facts = ami::BuildFacts {
        role: &manifest.role,
        build_id: &manifest.build_id,
        channel: &base.channel,
        version: &base.version,
        board: &base.board,
        manifest_sha256: &manifest_sha256,
    };
    let identity = facts.identity();
    let settings = profile.outputs.ami.clone().unwrap_or_default();
    progress.note(&format!("publishing role {} as an AMI", manifest.role));
    let request = ami::AmiPublish {
        upload: ami::SnapshotUpload {
            image: &image,
            parent_image: Some(&parent_image),
            region: target.region.as_deref(),
            retries: target.retries,
            spec: ami::SnapshotSpec {
                description: identity.description.clone(),
                tags: Vec::new(),
                parent_snapshot_id: Some(parent_snapshot),
                kms_key_arn: None,
                workers: target.workers,
            },
        },
        settings: ami::AmiSettings {
            architecture: facts.architecture().into(),
            volume_type: settings.volume_type.clone(),
            boot_mode: settings.boot_mode.as_str().into(),
            imds_v2_required: settings.imds_v2 == crate::profile::ImdsSupport::Required,
            tpm: settings.tpm,
            public: settings.public,
            regions: settings.regions.clone(),
        },
        identity,
        wait: target.wait,
        parent_build_id: None,
    };
    let record = ami::publish_ami(&request, progress).map_err(|source| BuildError::Ami {
        role: manifest.role.clone(),
        source,
    })?;
    built.manifest.ami = Some(record);
    write_manifest(&built.manifest_path, &built.manifest)
}

/// The manifest as pretty JSON with a final newline, replaced whole.
fn write_manifest(path: &Path, manifest: &Manifest) -> Result<(), BuildError> {
    let mut json = serde_json::to_vec_pretty(manifest).expect("manifests serialise");
    json.push(b'\n');
    crate::fsutil::write_atomic(path, &json).map_err(|source| BuildError::Output {
        path: path.to_path_buf(),
        source,
    })
}

/// A role, the MACs of its machines, and its profile's choice for unknown machines.
type RoleMachines = (String, Vec<Located<String>>, Option<UnknownMachine>);

/// `OUT/ipxe/boot.ipxe` for every role built; a MAC listed by two roles is an error.
fn write_machine_map(request: &BuildRequest, roles: &[RoleMachines]) -> Result<(), BuildError> {
    let mut map: BTreeMap<String, (String, &Located<String>)> = BTreeMap::new();
    for (role, macs, _) in roles {
        for mac in macs {
            if let Some((other, first)) = map.get(&mac.value)
                && other != role
            {
                return Err(BuildError::Machine {
                    origin: mac.origin.clone(),
                    message: format!(
                        "machine {} is listed for role {role} and for role {other} (at {})",
                        mac.value, first.origin
                    ),
                });
            }
            map.insert(mac.value.clone(), (role.clone(), mac));
        }
    }
    let unknown = roles
        .iter()
        .find_map(|(_, _, u)| *u)
        .unwrap_or(UnknownMachine::Error);
    let names: Vec<String> = roles.iter().map(|(r, _, _)| r.clone()).collect();
    let machines = map
        .into_iter()
        .map(|(mac, (role, _))| (mac, role))
        .collect();
    ipxe::machine_map(&request.out_dir.join("ipxe"), &machines, &names, unknown).map_err(|e| {
        BuildError::Output {
            path: e.path,
            source: e.source,
        }
    })?;
    Ok(())
}

fn prepare_base(
    spec: &ReleaseSpec,
    kind: ArtifactKind,
    fetch: &FetchOptions,
    progress: &dyn Progress,
) -> Result<PreparedBase, BuildError> {
    let release = release::fetch(spec, kind, fetch, progress)?;
    let artifact = &release.artifacts[0];
    let raw = disk::cached_raw(&fetch.cache, &artifact.path, &artifact.sha512, progress)?;
    // The base's partition digests, computed once per artifact.
    let digests_path = raw.with_extension("partitions.json");
    let digests = match std::fs::read(&digests_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        Some(digests) => digests,
        None => {
            let (file, table) = disk::open_table(&raw, false)?;
            let digests = disk::partition_digests(&file, &table).map_err(DiskError::io(&raw))?;
            let json = serde_json::to_vec(&digests).expect("digests serialise");
            crate::fsutil::write_atomic(&digests_path, &json)
                .map_err(DiskError::io(&digests_path))?;
            digests
        }
    };
    Ok(PreparedBase {
        release,
        raw,
        digests,
    })
}

fn artifact_record(release: &FetchedRelease, artifact: &FetchedArtifact) -> Base {
    Base {
        channel: release.channel.clone(),
        board: release.board.clone(),
        version: release.version.clone(),
        file: artifact.file.clone(),
        url: artifact.url.clone(),
        sha512: artifact.sha512.clone(),
        size: artifact.size,
        signature: artifact.signature.clone(),
        digests_asc_verified: artifact.digests_asc_verified,
        insecure_skip_signature: release.insecure_skip_signature,
    }
}

/// The raw image: a copy of the base with the OEM filesystem rewritten.
struct RawOutput {
    image: PathBuf,
    partitions: Vec<PartitionDigest>,
    output: Output,
}

/// What goes into a role's raw image besides the base.
struct RawInputs<'a> {
    kernel_args: &'a [String],
    config: &'a [u8],
    images: &'a [images::BakedImage],
    data: &'a crate::profile::DataSettings,
}

fn build_raw(
    request: &BuildRequest,
    role: &str,
    inputs: &RawInputs,
    base: &PreparedBase,
    time: Timespec,
) -> Result<RawOutput, BuildError> {
    let RawInputs {
        kernel_args,
        config,
        ..
    } = *inputs;
    let artifact = &base.release.artifacts[0];
    let image = request.out_dir.join(format!("{role}.raw"));
    let mut copy = WorkingCopy::create(&base.raw, &image, &["OEM"])?;
    let oem = copy.table.by_name("OEM").map_err(|source| DiskError::Gpt {
        file: base.raw.display().to_string(),
        source,
    })?;
    let found = filesystems::detect(&mut Window::new(&copy.file, oem.start(), oem.len()))
        .map_err(DiskError::io(&base.raw))?;
    if found.as_ref().map(|f| f.kind) != Some(FsKind::Btrfs) {
        return Err(BuildError::OemNotBtrfs {
            file: artifact.file.clone(),
            found: found.map_or_else(
                || "no filesystem kato-image knows".into(),
                |f| f.kind.name().to_string(),
            ),
        });
    }
    edit_partition(&mut copy.file, oem.start(), oem.len(), time, |tree| {
        oem::bake(tree, config, role, kernel_args, time)
    })
    .map_err(|source| match source {
        EditError::Write(WriteError::TooSmall { needed, size }) => BuildError::OemTooSmall {
            role: role.to_string(),
            needed,
            size,
        },
        source => BuildError::Edit {
            role: role.to_string(),
            source,
        },
    })?;
    if !inputs.images.is_empty() {
        let seed = format!(
            "{}\0{role}\0{}",
            artifact.sha512,
            hex(&Sha256::digest(config))
        );
        images::add_data_partition(&mut copy, inputs.images, inputs.data, role, &seed, time)?;
    }
    let (image_sha256, after) = disk::image_and_partition_digests(&copy.file, &copy.table)
        .map_err(DiskError::io(copy.temp_path()))?;
    let partitions: Vec<PartitionDigest> = copy
        .table
        .partitions()
        .into_iter()
        .map(|p| {
            let before = base.digests.get(&p.slot).cloned().unwrap_or_default();
            let now = after.get(&p.slot).cloned().unwrap_or_default();
            PartitionDigest {
                slot: p.slot,
                changed: before != now,
                name: p.name,
                sha256_before: before,
                sha256_after: now,
            }
        })
        .collect();
    let size = copy
        .file
        .metadata()
        .map_err(DiskError::io(copy.temp_path()))?
        .len();
    let image = copy.commit()?;
    Ok(RawOutput {
        image,
        partitions,
        output: Output {
            file: format!("{role}.raw"),
            size,
            sha256: image_sha256,
        },
    })
}

fn build_role(
    request: &BuildRequest,
    profile: &Profile,
    kernel_args: &[String],
    config: &[u8],
    base: Option<&PreparedBase>,
    pxe: Option<&FetchedRelease>,
    baked: &[images::BakedImage],
) -> Result<RoleBuild, BuildError> {
    let role = &profile.role;
    let signature_time = base
        .and_then(|b| b.release.artifacts[0].signature.as_ref())
        .or_else(|| pxe.and_then(|p| p.artifacts[0].signature.as_ref()))
        .map(|s| s.created as i64);
    let timestamp = request.source_date_epoch.or(signature_time).unwrap_or(0);
    let time = Timespec {
        sec: timestamp,
        nsec: 0,
    };
    let raw = match base {
        Some(base) => {
            let inputs = RawInputs {
                kernel_args,
                config,
                images: baked,
                data: &profile.data,
            };
            Some(build_raw(request, role, &inputs, base, time)?)
        }
        None => None,
    };
    let ipxe = match pxe {
        Some(pxe) => {
            let mut settings = profile
                .outputs
                .ipxe
                .clone()
                .unwrap_or(crate::profile::IpxeOutput {
                    preset: crate::profile::IpxePreset::Metal,
                    console: None,
                    base_url: None,
                    autologin: false,
                    unknown: crate::profile::UnknownMachine::Error,
                });
            if let Some(url) = &request.ipxe_base_url {
                settings.base_url = Some(url.clone());
            }
            let (kernel, initramfs) = (&pxe.artifacts[0], &pxe.artifacts[1]);
            let inputs = ipxe::PxeInputs {
                kernel: (&kernel.file, &kernel.path, &kernel.sha512),
                initramfs: (&initramfs.file, &initramfs.path, &initramfs.sha512),
            };
            let header = format!(
                "kato-image role {role}, Flatcar {} {} {}",
                pxe.channel, pxe.board, pxe.version
            );
            let payload = ipxe::RolePayload {
                role,
                config,
                kernel_args,
                mtime: timestamp.clamp(0, u32::MAX as i64) as u32,
                header: &header,
            };
            let record = ipxe::emit(&request.out_dir.join("ipxe"), &payload, &settings, &inputs)
                .map_err(|e| BuildError::Output {
                    path: e.path,
                    source: e.source,
                })?;
            Some(record)
        }
        None => None,
    };

    let profiles_dir = request.project.profiles.dir();
    let profiles = profile
        .sources
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).map_err(|source| BuildError::Output {
                path: path.clone(),
                source,
            })?;
            let name = path
                .strip_prefix(profiles_dir)
                .unwrap_or(path)
                .display()
                .to_string();
            Ok(FileDigest {
                path: name,
                sha256: hex(&Sha256::digest(&bytes)),
            })
        })
        .collect::<Result<Vec<_>, BuildError>>()?;
    let config_sha256 = hex(&Sha256::digest(config));
    let base_record = base.map(|b| artifact_record(&b.release, &b.release.artifacts[0]));
    let pxe_records = pxe.map(|p| {
        p.artifacts
            .iter()
            .map(|a| artifact_record(p, a))
            .collect::<Vec<_>>()
    });
    let tool = Tool {
        name: "kato-image",
        version: env!("CARGO_PKG_VERSION"),
    };
    let build_id = {
        let inputs = serde_json::json!({
            "tool": tool.version, "role": role,
            "base_sha512": base_record.as_ref().map(|b| b.sha512.clone()),
            "pxe_sha512": pxe_records.as_ref().map(|p| p.iter().map(|a| a.sha512.clone()).collect::<Vec<_>>()),
            "profiles": profiles, "config_sha256": config_sha256,
            "kernel_args": kernel_args, "timestamp": timestamp,
            "images": baked.iter().map(|i| i.sha256.clone()).collect::<Vec<_>>(),
        });
        hex(&Sha256::digest(inputs.to_string().as_bytes()))[..32].to_string()
    };
    let (image, partitions, output) = match raw {
        Some(raw) => (Some(raw.image), raw.partitions, Some(raw.output)),
        None => (None, Vec::new(), None),
    };
    let manifest = Manifest {
        tool,
        build_id,
        role: role.clone(),
        base: base_record,
        pxe: pxe_records,
        profiles,
        config: Config {
            format: "ignition",
            spec: config::ignition::SPEC_VERSION,
            path: oem::CONFIG_PATH,
            sha256: config_sha256,
        },
        kernel_args: kernel_args.to_vec(),
        timestamp,
        changed_partitions: partitions
            .iter()
            .filter(|p| p.changed)
            .map(|p| p.name.clone())
            .collect(),
        partitions,
        output,
        ipxe,
        images: baked.to_vec(),
        ami: None,
    };
    let manifest_path = request.out_dir.join(format!("{role}.manifest.json"));
    write_manifest(&manifest_path, &manifest)?;
    Ok(RoleBuild {
        role: role.clone(),
        image,
        manifest_path,
        manifest,
    })
}
