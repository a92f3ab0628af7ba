//! AMIs on EC2, uploaded straight to EBS snapshots with the EBS direct APIs: the upload plan
//! (which 512 KiB blocks, with or without a parent snapshot, and the checksums EBS is told),
//! the snapshot upload (`ebs`), then RegisterImage, copies to other regions and launch
//! permissions through a small EC2 Query client (`ec2`), found again by tags on later runs.

pub mod ebs;
pub mod ec2;
pub mod plan;

pub use ebs::{SnapshotSpec, UploadedSnapshot};
pub use plan::{BLOCK, BlockPlan, UploadPlan, linear_checksum, plan};

use std::fs::File;
use std::sync::Arc;

use aws_config::BehaviorVersion;
use aws_sdk_ebs::error::{DisplayErrorContext, ProvideErrorMetadata};

use crate::progress::Progress;

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
        let message = DisplayErrorContext(&error).to_string().replace('\n', " ");
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
pub async fn sdk_config(region: Option<&str>) -> Result<aws_config::SdkConfig, AmiError> {
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
    provider.provide_credentials().await.map_err(|e| {
        AmiError::Credentials(DisplayErrorContext(&e).to_string().replace('\n', " "))
    })?;
    Ok(config)
}

/// The runtime the blocking entry points run the SDK on.
fn runtime() -> Result<tokio::runtime::Runtime, AmiError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(AmiError::Runtime)
}

/// What `publish_snapshot` needs.
pub struct SnapshotUpload<'a> {
    pub image: &'a std::path::Path,
    /// The image the parent snapshot holds, to send only the blocks that differ.
    pub parent_image: Option<&'a std::path::Path>,
    pub region: Option<&'a str>,
    pub retries: u32,
    pub spec: SnapshotSpec,
}

/// Plans and uploads one snapshot, blocking (a runtime of its own); with `wait`, waits that
/// long at most for it to complete.
pub fn publish_snapshot(
    request: &SnapshotUpload,
    wait: Option<std::time::Duration>,
    progress: &dyn Progress,
) -> Result<UploadedSnapshot, AmiError> {
    runtime()?.block_on(async {
        let config = sdk_config(request.region).await?;
        let mut snapshot = upload_with(&config, request, &request.spec, progress).await?;
        if let Some(limit) = wait {
            let (_, ec2) = ec2_client(&config, request.retries)?;
            wait_completed(&ec2, &mut snapshot, &limit, progress).await?;
        }
        Ok(snapshot)
    })
}

/// Waits for an uploaded snapshot to leave `pending`, for `limit` at most.
async fn wait_completed(
    ec2: &ec2::Ec2,
    snapshot: &mut UploadedSnapshot,
    limit: &std::time::Duration,
    progress: &dyn Progress,
) -> Result<(), AmiError> {
    let id = snapshot.snapshot_id.clone();
    wait_for(limit, "snapshot", &id, "completed", progress, || {
        ec2.snapshot_state(&id)
    })
    .await?;
    snapshot.status = "completed".into();
    Ok(())
}

/// Waits for an image to be `available` (launching or copying a pending one fails).
async fn wait_available(
    ec2: &ec2::Ec2,
    image_id: &str,
    limit: &std::time::Duration,
    progress: &dyn Progress,
) -> Result<(), AmiError> {
    wait_for(limit, "image", image_id, "available", progress, || {
        ec2.image_state(image_id)
    })
    .await
}

/// How the AMI is registered.
#[derive(Debug, Clone)]
pub struct AmiSettings {
    pub architecture: String,
    pub volume_type: String,
    pub boot_mode: String,
    pub imds_v2_required: bool,
    pub tpm: bool,
    pub public: bool,
    /// Other regions to copy the AMI to.
    pub regions: Vec<String>,
}

/// What names an AMI: the role, its build and the Flatcar release it was built from.
pub struct BuildFacts<'a> {
    pub role: &'a str,
    pub build_id: &'a str,
    pub channel: &'a str,
    pub version: &'a str,
    pub board: &'a str,
    /// SHA-256 of the build manifest's bytes.
    pub manifest_sha256: &'a str,
}

impl BuildFacts<'_> {
    /// The AMI's name, description and tags.
    pub fn identity(&self) -> AmiIdentity {
        let short = &self.build_id[..self.build_id.len().min(12)];
        AmiIdentity {
            name: format!("kato-{}-{}-{short}", self.role, self.version),
            description: format!(
                "Kato {} role on Flatcar {} {} (kato-image build {})",
                self.role, self.channel, self.version, self.build_id
            ),
            build_id: self.build_id.to_string(),
            tags: vec![
                ("kato:role".into(), self.role.to_string()),
                ("kato:flatcar-version".into(), self.version.to_string()),
                (
                    "kato:manifest-sha256".into(),
                    self.manifest_sha256.to_string(),
                ),
            ],
        }
    }

    /// EC2's name for the board's architecture.
    pub fn architecture(&self) -> &'static str {
        if self.board.starts_with("arm64") {
            "arm64"
        } else {
            "x86_64"
        }
    }
}

/// Names and tags, from the build's manifest.
#[derive(Debug, Clone)]
pub struct AmiIdentity {
    pub name: String,
    pub description: String,
    pub build_id: String,
    pub tags: Vec<(String, String)>,
}

pub struct AmiPublish<'a> {
    pub upload: SnapshotUpload<'a>,
    pub identity: AmiIdentity,
    pub settings: AmiSettings,
    /// How long to wait for the snapshot to complete and copies to become available.
    pub wait: std::time::Duration,
    /// With a parent image but no parent snapshot: the parent's build ID, whose snapshot is
    /// found by its `kato:build-id` tag.
    pub parent_build_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RegionImage {
    pub region: String,
    pub image_id: String,
    /// Found by its build-ID tag instead of made.
    pub reused: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
pub const BASE_TAG: &str = "kato:base-sha512";

/// The snapshot of an unmodified vendor image, which role snapshots are made on: found by its
/// tag (`BASE_TAG` = the image's SHA-512), else uploaded and tagged. Returns its ID.
pub fn base_snapshot(
    upload: &SnapshotUpload,
    base_sha512: &str,
    wait: std::time::Duration,
    progress: &dyn Progress,
) -> Result<String, AmiError> {
    runtime()?.block_on(async {
        let (config, region, ec2) = connect(upload).await?;
        if let Some(id) = ec2.find_snapshot(BASE_TAG, base_sha512).await? {
            progress.note(&format!(
                "{region}: base snapshot {id} already holds this vendor image"
            ));
            return Ok(id);
        }
        let mut spec = upload.spec.clone();
        spec.tags.push((BASE_TAG.into(), base_sha512.to_string()));
        let mut snapshot = upload_with(&config, upload, &spec, progress).await?;
        wait_completed(&ec2, &mut snapshot, &wait, progress).await?;
        Ok(snapshot.snapshot_id)
    })
}

/// The SDK configuration, its region and an EC2 client for that region.
async fn connect(
    upload: &SnapshotUpload<'_>,
) -> Result<(aws_config::SdkConfig, String, ec2::Ec2), AmiError> {
    let config = sdk_config(upload.region).await?;
    let (region, ec2) = ec2_client(&config, upload.retries)?;
    Ok((config, region, ec2))
}

/// The configuration's region and an EC2 client for it.
fn ec2_client(
    config: &aws_config::SdkConfig,
    retries: u32,
) -> Result<(String, ec2::Ec2), AmiError> {
    let region = config
        .region()
        .map(|r| r.to_string())
        .ok_or(AmiError::NoRegion)?;
    let ec2 = ec2::Ec2::new(config, &region, retries)?;
    Ok((region, ec2))
}

/// Plans and uploads `upload.image` with `spec`.
async fn upload_with(
    config: &aws_config::SdkConfig,
    upload: &SnapshotUpload<'_>,
    spec: &SnapshotSpec,
    progress: &dyn Progress,
) -> Result<UploadedSnapshot, AmiError> {
    let image = File::open(upload.image).map_err(AmiError::Read)?;
    let parent = upload
        .parent_image
        .map(File::open)
        .transpose()
        .map_err(AmiError::Read)?;
    let plan = plan(&image, parent.as_ref()).map_err(AmiError::Read)?;
    let ebs_config = aws_sdk_ebs::config::Builder::from(config)
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(upload.retries.saturating_add(1)),
        )
        .build();
    let client = aws_sdk_ebs::Client::from_conf(ebs_config);
    ebs::upload(&client, Arc::new(image), Arc::new(plan), spec, progress).await
}

/// The tag that makes publishing idempotent.
pub const BUILD_ID_TAG: &str = "kato:build-id";

impl RegionImage {
    fn new(region: &str, image_id: String, reused: bool) -> Self {
        RegionImage {
            region: region.to_string(),
            image_id,
            reused,
        }
    }
}

/// Uploads the image (unless an AMI of this build exists), registers it, tags it, copies it
/// to the other regions and, if asked, makes every copy public.
pub fn publish_ami(request: &AmiPublish, progress: &dyn Progress) -> Result<AmiRecord, AmiError> {
    runtime()?.block_on(publish_ami_async(request, progress))
}

async fn publish_ami_async(
    request: &AmiPublish<'_>,
    progress: &dyn Progress,
) -> Result<AmiRecord, AmiError> {
    let upload = &request.upload;
    let identity = &request.identity;
    let settings = &request.settings;
    let (config, region, ec2) = connect(upload).await?;
    let mut tags = identity.tags.clone();
    tags.push((BUILD_ID_TAG.into(), identity.build_id.clone()));

    let (image, snapshot) = match ec2.find_image(BUILD_ID_TAG, &identity.build_id).await? {
        Some((image_id, state)) => {
            progress.note(&format!(
                "{region}: {image_id} ({state}) is already this build ({}); reusing it",
                identity.build_id
            ));
            (RegionImage::new(&region, image_id, true), None)
        }
        None => {
            let mut spec = upload.spec.clone();
            spec.tags.extend(tags.iter().cloned());
            if let (None, Some(parent)) = (&spec.parent_snapshot_id, &request.parent_build_id) {
                let found = ec2.find_snapshot(BUILD_ID_TAG, parent).await?;
                let id = found.ok_or_else(|| {
                    AmiError::Answer(format!(
                        "{region}: no completed snapshot tagged {BUILD_ID_TAG}={parent} (the \
                         parent's build); publish the parent first or pass --parent-snapshot"
                    ))
                })?;
                progress.note(&format!("{region}: on {id}, the parent's snapshot"));
                spec.parent_snapshot_id = Some(id);
            }
            let mut snapshot = upload_with(&config, upload, &spec, progress).await?;
            wait_completed(&ec2, &mut snapshot, &request.wait, progress).await?;
            let image_id = ec2
                .register_image(&ec2::RegisterSpec {
                    name: identity.name.clone(),
                    description: identity.description.clone(),
                    architecture: settings.architecture.clone(),
                    snapshot_id: snapshot.snapshot_id.clone(),
                    volume_type: settings.volume_type.clone(),
                    boot_mode: settings.boot_mode.clone(),
                    imds_v2_required: settings.imds_v2_required,
                    tpm: settings.tpm,
                })
                .await?;
            ec2.create_tags(&[&image_id], &tags).await?;
            progress.note(&format!("{region}: registered {image_id}"));
            (RegionImage::new(&region, image_id, false), Some(snapshot))
        }
    };
    // The record is what CI jobs launch next.
    wait_available(&ec2, &image.image_id, &request.wait, progress).await?;
    let mut copies = Vec::new();
    for target in settings.regions.iter().filter(|r| **r != region) {
        let there = ec2::Ec2::new(&config, target, upload.retries)?;
        let copy = match there.find_image(BUILD_ID_TAG, &identity.build_id).await? {
            Some((image_id, _)) => {
                progress.note(&format!(
                    "{target}: {image_id} is already this build; reusing it"
                ));
                RegionImage::new(target, image_id, true)
            }
            None => {
                let image_id = there
                    .copy_image(
                        &region,
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
        wait_available(&there, &copy.image_id, &request.wait, progress).await?;
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
