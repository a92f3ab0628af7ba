//! AMIs on EC2, uploaded straight to EBS snapshots with the EBS direct APIs. Built so far: the
//! upload plan (which 512 KiB blocks, with or without a parent snapshot, and the checksums EBS
//! is told) and the snapshot upload itself. Registering the AMI is not built yet.

pub mod ebs;
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
        let code = error.code().unwrap_or_default();
        if matches!(
            code,
            "ExpiredToken" | "ExpiredTokenException" | "RequestExpired" | "TokenRefreshRequired"
        ) {
            return AmiError::Expired { call };
        }
        let message = DisplayErrorContext(&error).to_string().replace('\n', " ");
        AmiError::Aws { call, message }
    }
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

/// What `publish_snapshot` needs.
pub struct SnapshotUpload<'a> {
    pub image: &'a std::path::Path,
    /// The image the parent snapshot holds, to send only the blocks that differ.
    pub parent_image: Option<&'a std::path::Path>,
    pub region: Option<&'a str>,
    pub retries: u32,
    pub spec: SnapshotSpec,
}

/// Plans and uploads one snapshot, blocking (a runtime of its own).
pub fn publish_snapshot(
    request: &SnapshotUpload,
    progress: &dyn Progress,
) -> Result<UploadedSnapshot, AmiError> {
    let image = File::open(request.image).map_err(AmiError::Read)?;
    let parent = request
        .parent_image
        .map(File::open)
        .transpose()
        .map_err(AmiError::Read)?;
    let plan = plan(&image, parent.as_ref()).map_err(AmiError::Read)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(AmiError::Runtime)?;
    runtime.block_on(async {
        let config = sdk_config(request.region).await?;
        let ebs_config = aws_sdk_ebs::config::Builder::from(&config)
            .retry_config(
                aws_config::retry::RetryConfig::standard()
                    .with_max_attempts(request.retries.saturating_add(1)),
            )
            .build();
        let client = aws_sdk_ebs::Client::from_conf(ebs_config);
        ebs::upload(
            &client,
            Arc::new(image),
            Arc::new(plan),
            &request.spec,
            progress,
        )
        .await
    })
}
