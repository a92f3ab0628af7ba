//! AMIs on EC2, uploaded straight to EBS snapshots with the EBS direct APIs: the upload plan
//! (which 512 KiB blocks, with or without a parent snapshot, and the checksums EBS is told),
//! the snapshot upload (`ebs`), then RegisterImage, copies to other regions and launch
//! permissions through a small EC2 Query client (`ec2`), found again by tags on later runs.

pub mod compare;
pub mod ebs;
pub mod ec2;
pub mod plan;

pub use ebs::{SnapshotSpec, UploadedSnapshot};
pub use plan::{BLOCK, BlockPlan, UploadPlan, plan};

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_ebs::error::ProvideErrorMetadata;

use crate::cache::ArtifactRecord;
use crate::profile::AmiOutput;
use crate::progress::Progress;
use crate::release::{Board, ReleaseInfo};

#[derive(Debug, thiserror::Error)]
pub enum AmiError {
    #[error("{call}: {message}")]
    Aws { call: &'static str, message: String },
    #[error(
        "{call}: the AWS credentials have expired; renew them (for example `aws sso login`, or new keys) and run again"
    )]
    Expired { call: &'static str },
    #[error("no AWS credentials: {0}")]
    Credentials(String),
    #[error(
        "no AWS region: pass --region or set AWS_REGION (or a region in the AWS config profile)"
    )]
    NoRegion,
    #[error("{0}")]
    Answer(String),
    #[error("block {0} of the image changed while it was being uploaded")]
    Changed(u64),
    #[error("reading the image: {0}")]
    Read(std::io::Error),
    #[error("{0}")]
    Runtime(std::io::Error),
}

impl AmiError {
    /// An SDK error, as one line. Expired credentials get their own advice; no request or
    /// credential material is ever part of the text.
    pub fn aws<E, R>(call: &'static str, error: aws_sdk_ebs::error::SdkError<E, R>) -> AmiError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        if is_expired(error.code().unwrap_or_default()) {
            return AmiError::Expired { call };
        }
        // AWS's own code and message where it answered; otherwise each cause in turn. The
        // SDK's full context ends with its Debug form, which is no message for a user.
        let message = match (error.code(), error.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_string(),
            (None, _) => crate::origin::with_causes(&error),
        };
        AmiError::Aws { call, message }
    }
}

/// Whether an AWS error code means the credentials (or the request's signature time) expired.
fn is_expired(code: &str) -> bool {
    matches!(
        code,
        "ExpiredToken" | "ExpiredTokenException" | "RequestExpired" | "TokenRefreshRequired"
    )
}

/// The SDK's configuration from the standard chain (environment, shared config and
/// credentials files with profiles, SSO, web identity, container and instance metadata),
/// `AWS_ENDPOINT_URL` included, over rustls on ring.
pub(crate) async fn sdk_config(region: Option<&str>) -> Result<aws_config::SdkConfig, AmiError> {
    use aws_credential_types::provider::ProvideCredentials;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_string()));
    }
    let config = loader.load().await;
    if config.region().is_none() {
        return Err(AmiError::NoRegion);
    }
    let provider = config
        .credentials_provider()
        .ok_or_else(|| AmiError::Credentials("no credential provider".into()))?;
    provider
        .provide_credentials()
        .await
        .map_err(|e| AmiError::Credentials(crate::origin::with_causes(&e)))?;
    Ok(config)
}

/// The runtime the SDK runs on.
fn runtime() -> Result<tokio::runtime::Runtime, AmiError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(AmiError::Runtime)
}

/// Where and how to talk to AWS.
#[derive(Debug, Clone)]
pub struct AwsOptions {
    /// Default: the AWS configuration's.
    pub region: Option<String>,
    /// Snapshot blocks in flight at once.
    pub workers: usize,
    /// Attempts after a throttled or failed request.
    pub retries: u32,
    /// How long to wait for snapshots to complete and images to become available.
    pub wait: Duration,
}

/// One connection to AWS for a whole run: the runtime, the configuration (credentials and
/// region, checked once) and the EC2 client of the region. Snapshots, base snapshots and
/// AMIs are all published through it.
pub struct Publisher {
    runtime: tokio::runtime::Runtime,
    config: aws_config::SdkConfig,
    region: String,
    ec2: ec2::Ec2,
    ebs: aws_sdk_ebs::Client,
    options: AwsOptions,
    /// The snapshot of each vendor image (by its SHA-512) in this region, found or made
    /// once a run: role snapshots are made on it and send only the blocks a role changed.
    base_snapshots: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
}

/// What a snapshot is uploaded from.
pub struct SnapshotSource<'a> {
    pub image: &'a Path,
    /// The image the parent snapshot holds: only blocks that differ from it are sent.
    pub parent_image: Option<&'a Path>,
}

/// Where a role's snapshot is made on.
#[derive(Debug, Clone)]
pub enum ParentSnapshot {
    /// This snapshot.
    Id(String),
    /// The snapshot of a parent image published before: its build ID and the BLAKE3 of the
    /// image, since one build may have made several (`raw,ami`).
    OfImage { build_id: String, blake3: String },
}

/// What names an AMI: the role, its build, the Flatcar release and the image's digest.
#[derive(Debug, Clone)]
pub struct AmiIdentity {
    pub name: String,
    pub description: String,
    pub build_id: String,
    /// The BLAKE3 of the image: with the build ID, it finds an AMI already made of it.
    pub(crate) image_blake3: String,
    pub tags: Vec<(String, String)>,
}

impl AmiIdentity {
    /// The identity of the AMI of the image whose BLAKE3 is `image_blake3`, built for
    /// `role` as build `build_id`. `build` and `publish ami` both name AMIs this way, from
    /// the same manifest facts.
    pub fn new(role: &str, build_id: &str, release: &ReleaseInfo, image_blake3: &str) -> Self {
        let short = &build_id[..build_id.len().min(12)];
        AmiIdentity {
            name: format!("kato-{role}-{}-{short}", release.version),
            description: format!(
                "Kato {role} role on Flatcar {} {} (kato-image build {build_id})",
                release.channel, release.version
            ),
            build_id: build_id.to_string(),
            image_blake3: image_blake3.to_string(),
            tags: vec![
                ("kato:role".into(), role.to_string()),
                ("kato:flatcar-version".into(), release.version.clone()),
                (IMAGE_TAG.into(), image_blake3.to_string()),
            ],
        }
    }
}

impl AmiIdentity {
    /// The tags that find an AMI already made of this image by this build: the build ID
    /// alone would also match the AMI of another image of the same build.
    fn lookup(&self) -> [(&str, &str); 2] {
        [
            (BUILD_ID_TAG, self.build_id.as_str()),
            (IMAGE_TAG, self.image_blake3.as_str()),
        ]
    }
}

/// How machines launched from a role's AMI learn their member number and host name: EC2
/// gives instance tags to the machine only when metadata tags are on.
pub const IDENTITY_HINT: &str = "give each instance tags kato:instance=N and kato:hostname=NAME, and launch with --metadata-options InstanceMetadataTags=enabled, so that it knows which member of its role it is";

/// The tag that holds the BLAKE3 of the image an AMI was made from (`b3sum` of the file).
pub(crate) const IMAGE_TAG: &str = "kato:image-blake3";

/// Publishing one role's image as an AMI.
pub struct AmiPublish<'a> {
    pub source: SnapshotSource<'a>,
    pub parent: Option<ParentSnapshot>,
    pub kms_key_arn: Option<String>,
    pub identity: AmiIdentity,
    pub settings: &'a AmiOutput,
    pub board: Board,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RegionImage {
    pub region: String,
    pub image_id: String,
    /// Found by its build-ID tag instead of made.
    pub reused: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AmiRecord {
    pub name: String,
    pub build_id: String,
    pub image: RegionImage,
    /// Absent when the AMI was reused.
    pub snapshot: Option<UploadedSnapshot>,
    pub copies: Vec<RegionImage>,
    pub public: bool,
}

/// The tag that names the vendor image a base snapshot holds.
pub(crate) const BASE_TAG: &str = "kato:base-sha512";
/// The tag that makes publishing idempotent.
pub(crate) const BUILD_ID_TAG: &str = "kato:build-id";

impl RegionImage {
    fn new(region: &str, image_id: String, reused: bool) -> Self {
        RegionImage {
            region: region.to_string(),
            image_id,
            reused,
        }
    }
}

impl Publisher {
    /// Loads the AWS configuration (credentials are checked now, before anything is sent).
    pub fn connect(options: &AwsOptions) -> Result<Publisher, AmiError> {
        let runtime = runtime()?;
        let config = runtime.block_on(sdk_config(options.region.as_deref()))?;
        let region = config
            .region()
            .map(|r| r.to_string())
            .ok_or(AmiError::NoRegion)?;
        let ec2 = ec2::Ec2::new(&config, &region, options.retries)?;
        let ebs_config = aws_sdk_ebs::config::Builder::from(&config)
            .retry_config(
                aws_config::retry::RetryConfig::standard()
                    .with_max_attempts(options.retries.saturating_add(1)),
            )
            .build();
        Ok(Publisher {
            runtime,
            ebs: aws_sdk_ebs::Client::from_conf(ebs_config),
            config,
            region,
            ec2,
            options: options.clone(),
            base_snapshots: Default::default(),
        })
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Proves that the root snapshot of `image_id` holds `image`, byte for byte, or names
    /// the first block where it does not.
    pub fn compare_image(
        &self,
        image_id: &str,
        image: &Path,
        progress: &dyn Progress,
    ) -> Result<compare::SnapshotComparison, AmiError> {
        let file =
            File::open(image).map_err(|e| AmiError::Answer(format!("{}: {e}", image.display())))?;
        self.runtime.block_on(async {
            let snapshot = self.ec2.root_snapshot(image_id).await?;
            compare::compare(&self.ebs, image_id, &snapshot, &file, progress).await
        })
    }

    /// Plans and uploads one snapshot; with `wait`, waits for it to complete.
    pub fn snapshot(
        &self,
        source: &SnapshotSource,
        spec: &SnapshotSpec,
        wait: bool,
        progress: &dyn Progress,
    ) -> Result<UploadedSnapshot, AmiError> {
        self.runtime.block_on(async {
            let mut snapshot = self.upload(source, spec, progress).await?;
            if wait {
                self.wait_completed(&mut snapshot, progress).await?;
            }
            Ok(snapshot)
        })
    }

    /// The snapshot holding `image`, the unmodified vendor file `vendor` of `release`
    /// decompressed, which role snapshots are made on: found by its tag (the vendor file's
    /// SHA-512), else uploaded and tagged; once a run.
    pub(crate) fn base_snapshot(
        &self,
        image: &Path,
        vendor: &ArtifactRecord,
        release: &ReleaseInfo,
        progress: &dyn Progress,
    ) -> Result<String, AmiError> {
        let sha512 = vendor.sha512.as_str();
        let memo = |id: &String| {
            self.base_snapshots
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(sha512.to_string(), id.clone());
        };
        if let Some(id) = self
            .base_snapshots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sha512)
        {
            return Ok(id.clone());
        }
        let description = format!(
            "Flatcar {} {} {} ({}), base of kato-image role snapshots",
            release.channel, release.board, release.version, vendor.file
        );
        self.runtime.block_on(async {
            if let Some(id) = self.ec2.find_snapshot(&[(BASE_TAG, sha512)]).await? {
                progress.note(&format!(
                    "{}: base snapshot {id} already holds this vendor image",
                    self.region
                ));
                memo(&id);
                return Ok(id);
            }
            let spec = SnapshotSpec {
                description,
                tags: vec![
                    ("kato:flatcar-version".into(), release.version.clone()),
                    (BASE_TAG.into(), sha512.to_string()),
                ],
                parent_snapshot_id: None,
                kms_key_arn: None,
                workers: self.options.workers,
            };
            let source = SnapshotSource {
                image,
                parent_image: None,
            };
            let mut snapshot = self.upload(&source, &spec, progress).await?;
            self.wait_completed(&mut snapshot, progress).await?;
            memo(&snapshot.snapshot_id);
            Ok(snapshot.snapshot_id)
        })
    }

    /// Uploads the image (unless an AMI of this build exists), registers it, tags it, copies
    /// it to the other regions and, if asked, makes every copy public.
    pub fn publish_ami(
        &self,
        request: &AmiPublish,
        progress: &dyn Progress,
    ) -> Result<AmiRecord, AmiError> {
        self.runtime
            .block_on(self.publish_ami_async(request, progress))
    }

    async fn upload(
        &self,
        source: &SnapshotSource<'_>,
        spec: &SnapshotSpec,
        progress: &dyn Progress,
    ) -> Result<UploadedSnapshot, AmiError> {
        let image = File::open(source.image).map_err(AmiError::Read)?;
        let parent = source
            .parent_image
            .map(File::open)
            .transpose()
            .map_err(AmiError::Read)?;
        let plan = plan(&image, parent.as_ref()).map_err(AmiError::Read)?;
        ebs::upload(&self.ebs, Arc::new(image), Arc::new(plan), spec, progress).await
    }

    /// Waits for an uploaded snapshot to leave `pending`.
    async fn wait_completed(
        &self,
        snapshot: &mut UploadedSnapshot,
        progress: &dyn Progress,
    ) -> Result<(), AmiError> {
        let id = snapshot.snapshot_id.clone();
        wait_for(
            &self.options.wait,
            "snapshot",
            &id,
            "completed",
            progress,
            || self.ec2.snapshot_state(&id),
        )
        .await?;
        snapshot.status = "completed".into();
        Ok(())
    }

    async fn publish_ami_async(
        &self,
        request: &AmiPublish<'_>,
        progress: &dyn Progress,
    ) -> Result<AmiRecord, AmiError> {
        let identity = &request.identity;
        let settings = request.settings;
        let (region, ec2) = (&self.region, &self.ec2);
        let mut tags = identity.tags.clone();
        tags.push((BUILD_ID_TAG.into(), identity.build_id.clone()));

        let (image, snapshot) = match ec2.find_image(&identity.lookup()).await? {
            Some((image_id, state)) => {
                progress.note(&format!(
                    "{region}: {image_id} ({state}) is already this build ({}); reusing it",
                    identity.build_id
                ));
                (RegionImage::new(region, image_id, true), None)
            }
            None => {
                let parent_snapshot_id = match &request.parent {
                    None => None,
                    Some(ParentSnapshot::Id(id)) => Some(id.clone()),
                    Some(ParentSnapshot::OfImage { build_id, blake3 }) => {
                        let lookup = [
                            (BUILD_ID_TAG, build_id.as_str()),
                            (IMAGE_TAG, blake3.as_str()),
                        ];
                        let found = ec2.find_snapshot(&lookup).await?;
                        let id = found.ok_or_else(|| {
                            AmiError::Answer(format!(
                                "{region}: no completed snapshot tagged {BUILD_ID_TAG}={build_id} \
                                 and {IMAGE_TAG}={blake3} (the parent image); publish the parent \
                                 first or pass --parent-snapshot"
                            ))
                        })?;
                        progress.note(&format!("{region}: on {id}, the parent's snapshot"));
                        Some(id)
                    }
                };
                let spec = SnapshotSpec {
                    description: identity.description.clone(),
                    tags: tags.clone(),
                    parent_snapshot_id,
                    kms_key_arn: request.kms_key_arn.clone(),
                    workers: self.options.workers,
                };
                let mut snapshot = self.upload(&request.source, &spec, progress).await?;
                self.wait_completed(&mut snapshot, progress).await?;
                let image_id = ec2
                    .register_image(&ec2::RegisterSpec {
                        name: identity.name.clone(),
                        description: identity.description.clone(),
                        architecture: request.board.ec2_architecture(),
                        snapshot_id: snapshot.snapshot_id.clone(),
                        volume_type: settings.volume_type,
                        volume_size_gib: settings.volume_size_gib.max(snapshot.volume_size_gib),
                        iops: settings.iops,
                        throughput: settings.throughput,
                        boot_mode: settings.boot_mode,
                        imds: settings.imds_v2,
                        tpm: settings.tpm,
                    })
                    .await?;
                ec2.create_tags(&[&image_id], &tags).await?;
                progress.note(&format!("{region}: registered {image_id}"));
                (RegionImage::new(region, image_id, false), Some(snapshot))
            }
        };
        // The record is what CI jobs launch next.
        self.wait_available(ec2, &image.image_id, progress).await?;
        let mut copies = Vec::new();
        for target in settings.regions.iter().filter(|r| *r != region) {
            let there = ec2::Ec2::new(&self.config, target, self.options.retries)?;
            let copy = match there.find_image(&identity.lookup()).await? {
                Some((image_id, _)) => {
                    progress.note(&format!(
                        "{target}: {image_id} is already this build; reusing it"
                    ));
                    RegionImage::new(target, image_id, true)
                }
                None => {
                    let image_id = there
                        .copy_image(
                            region,
                            &image.image_id,
                            &identity.name,
                            &identity.description,
                        )
                        .await?;
                    // Tags are copied by EC2 only on request and not everywhere: set them.
                    there.create_tags(&[&image_id], &tags).await?;
                    progress.note(&format!("{target}: copied as {image_id}"));
                    RegionImage::new(target, image_id, false)
                }
            };
            self.wait_available(&there, &copy.image_id, progress)
                .await?;
            if settings.public {
                there.make_public(&copy.image_id).await?;
            }
            copies.push(copy);
        }
        if settings.public {
            ec2.make_public(&image.image_id).await?;
        }
        Ok(AmiRecord {
            name: identity.name.clone(),
            build_id: identity.build_id.clone(),
            image,
            snapshot,
            copies,
            public: settings.public,
        })
    }

    /// Waits for an image to be `available` (launching or copying a pending one fails).
    async fn wait_available(
        &self,
        ec2: &ec2::Ec2,
        image_id: &str,
        progress: &dyn Progress,
    ) -> Result<(), AmiError> {
        wait_for(
            &self.options.wait,
            "image",
            image_id,
            "available",
            progress,
            || ec2.image_state(image_id),
        )
        .await
    }
}

const FIRST_PAUSE: std::time::Duration = std::time::Duration::from_secs(2);

/// Polls `state` until it says `wanted`, for at most `limit` (the last poll is at the limit).
async fn wait_for<F, Fut>(
    limit: &std::time::Duration,
    what: &str,
    id: &str,
    wanted: &str,
    progress: &dyn Progress,
    mut state: F,
) -> Result<(), AmiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<String, AmiError>>,
{
    let started = std::time::Instant::now();
    // Snapshots of a few GiB take minutes on EBS: poll soon, then every 15 s like AWS's waiters.
    let mut pause = FIRST_PAUSE;
    loop {
        let now = state().await?;
        if now == wanted {
            return Ok(());
        }
        if now == "error" || now == "failed" {
            return Err(AmiError::Answer(format!("{what} {id} is in state {now}")));
        }
        if pause == FIRST_PAUSE {
            progress.note(&format!(
                "{what} {id} is {now}; waiting up to {} s for {wanted}",
                limit.as_secs()
            ));
        }
        let left = limit.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(AmiError::Answer(format!(
                "{what} {id} is still {now} after {} s",
                limit.as_secs()
            )));
        }
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(std::time::Duration::from_secs(15));
    }
}
