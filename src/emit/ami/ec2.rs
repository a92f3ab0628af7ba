//! The handful of EC2 Query API calls publishing needs (RegisterImage, DescribeImages,
//! DescribeSnapshots, CopyImage, CreateTags, ModifyImageAttribute), signed with SigV4. The
//! whole EC2 SDK would cost more to build than the rest of kato-image.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;

use super::AmiError;
use crate::profile::{AmiBootMode, ImdsSupport, VolumeType};

const API_VERSION: &str = "2016-11-15";

#[derive(Clone)]
pub(crate) struct Ec2 {
    http: reqwest::Client,
    endpoint: String,
    region: String,
    credentials: SharedCredentialsProvider,
    retries: u32,
}

/// What RegisterImage is given.
#[derive(Debug, Clone)]
pub(crate) struct RegisterSpec {
    pub name: String,
    pub description: String,
    /// `x86_64` or `arm64`.
    pub architecture: &'static str,
    pub snapshot_id: String,
    pub volume_type: VolumeType,
    pub volume_size_gib: u64,
    pub iops: Option<u32>,
    pub throughput: Option<u32>,
    pub boot_mode: AmiBootMode,
    pub imds: ImdsSupport,
    pub tpm: bool,
}

impl Ec2 {
    /// A client for `region`: the SDK configuration's endpoint override (`AWS_ENDPOINT_URL`)
    /// if any, else EC2's regional endpoint.
    pub fn new(
        config: &aws_config::SdkConfig,
        region: &str,
        retries: u32,
    ) -> Result<Self, AmiError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let endpoint = std::env::var("AWS_ENDPOINT_URL_EC2")
            .ok()
            .or_else(|| config.endpoint_url().map(str::to_string))
            .unwrap_or_else(|| format!("https://ec2.{region}.amazonaws.com"));
        let credentials = config
            .credentials_provider()
            .ok_or_else(|| AmiError::Credentials("no credential provider".into()))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("kato-image/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| AmiError::Answer(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Ec2 {
            http,
            endpoint: endpoint.trim_end_matches('/').to_string() + "/",
            region: region.to_string(),
            credentials,
            retries,
        })
    }

    /// One signed call; throttling and 5xx answers are retried with backoff.
    async fn call(
        &self,
        action: &'static str,
        params: &[(String, String)],
    ) -> Result<String, AmiError> {
        let mut body = form_encode(&[
            ("Action".into(), action.into()),
            ("Version".into(), API_VERSION.into()),
        ]);
        if !params.is_empty() {
            body.push('&');
            body.push_str(&form_encode(params));
        }
        let mut failures = 0;
        loop {
            let credentials = self
                .credentials
                .provide_credentials()
                .await
                .map_err(|e| AmiError::Credentials(e.to_string()))?;
            let identity = credentials.into();
            let settings = SigningSettings::default();
            let signing_error =
                |e: &dyn std::fmt::Display| AmiError::Answer(format!("{action}: signing: {e}"));
            let signing = v4::SigningParams::builder()
                .identity(&identity)
                .region(&self.region)
                .name("ec2")
                .time(SystemTime::now())
                .settings(settings)
                .build()
                .map_err(|e| signing_error(&e))?
                .into();
            let content_type = "application/x-www-form-urlencoded; charset=utf-8";
            let headers = [("content-type", content_type)];
            let signable = SignableRequest::new(
                "POST",
                &self.endpoint,
                headers.iter().copied(),
                SignableBody::Bytes(body.as_bytes()),
            )
            .map_err(|e| signing_error(&e))?;
            let (instructions, _) = sign(signable, &signing)
                .map_err(|e| signing_error(&e))?
                .into_parts();
            let mut request = self
                .http
                .post(&self.endpoint)
                .header("content-type", content_type)
                .body(body.clone());
            for (name, value) in instructions.headers() {
                request = request.header(name, value);
            }
            let outcome = request.send().await;
            match outcome {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let text = response.text().await.unwrap_or_default();
                    if (200..300).contains(&status) {
                        return Ok(text);
                    }
                    let code = first(&text, "Code").unwrap_or_default();
                    let message = first(&text, "Message").unwrap_or_default();
                    if super::is_expired(&code) {
                        return Err(AmiError::Expired { call: action });
                    }
                    let throttled = matches!(
                        code.as_str(),
                        "RequestLimitExceeded" | "Throttling" | "ThrottlingException"
                    ) || status == 429
                        || status >= 500;
                    if !throttled || failures >= self.retries {
                        return Err(AmiError::Aws {
                            call: action,
                            message: format!("HTTP {status} {code}: {message}"),
                        });
                    }
                }
                Err(_) if failures < self.retries => {}
                Err(e) => {
                    return Err(AmiError::Aws {
                        call: action,
                        message: e.without_url().to_string(),
                    });
                }
            }
            tokio::time::sleep(crate::release::transport::backoff(
                Duration::from_millis(500),
                failures,
            ))
            .await;
            failures += 1;
        }
    }

    /// An image of ours tagged `key=value` in this region: its ID and state.
    /// An image of ours with every one of `tags` in this region: its ID and state.
    pub(crate) async fn find_image(
        &self,
        tags: &[(&str, &str)],
    ) -> Result<Option<(String, String)>, AmiError> {
        let xml = self.call("DescribeImages", &ours_tagged(tags)).await?;
        Ok(first(&xml, "imageId").map(|id| (id, first(&xml, "imageState").unwrap_or_default())))
    }

    pub(crate) async fn image_state(&self, image_id: &str) -> Result<String, AmiError> {
        let xml = self
            .call("DescribeImages", &[("ImageId.1".into(), image_id.into())])
            .await?;
        first(&xml, "imageState")
            .ok_or_else(|| AmiError::Answer(format!("DescribeImages: no image {image_id}")))
    }

    /// The snapshot behind an image's root device.
    pub(crate) async fn root_snapshot(&self, image_id: &str) -> Result<String, AmiError> {
        let xml = self
            .call("DescribeImages", &[("ImageId.1".into(), image_id.into())])
            .await?;
        if first(&xml, "imageId").is_none() {
            return Err(AmiError::Answer(format!(
                "DescribeImages: no image {image_id} in this region"
            )));
        }
        first(&xml, "snapshotId").ok_or_else(|| {
            AmiError::Answer(format!(
                "DescribeImages: image {image_id} has no EBS snapshot"
            ))
        })
    }

    /// A completed snapshot of ours with every one of `tags` in this region.
    pub(crate) async fn find_snapshot(
        &self,
        tags: &[(&str, &str)],
    ) -> Result<Option<String>, AmiError> {
        let mut params = ours_tagged(tags);
        let n = tags.len() + 1;
        params.push((format!("Filter.{n}.Name"), "status".into()));
        params.push((format!("Filter.{n}.Value.1"), "completed".into()));
        let xml = self.call("DescribeSnapshots", &params).await?;
        Ok(first(&xml, "snapshotId"))
    }

    pub(crate) async fn snapshot_state(&self, snapshot_id: &str) -> Result<String, AmiError> {
        let xml = self
            .call(
                "DescribeSnapshots",
                &[("SnapshotId.1".into(), snapshot_id.into())],
            )
            .await?;
        first(&xml, "status").ok_or_else(|| {
            AmiError::Answer(format!("DescribeSnapshots: no snapshot {snapshot_id}"))
        })
    }

    pub(crate) async fn register_image(&self, spec: &RegisterSpec) -> Result<String, AmiError> {
        let mut params: Vec<(String, String)> = vec![
            ("Name".into(), spec.name.clone()),
            ("Description".into(), spec.description.clone()),
            ("Architecture".into(), spec.architecture.into()),
            ("VirtualizationType".into(), "hvm".into()),
            ("RootDeviceName".into(), "/dev/xvda".into()),
            ("BlockDeviceMapping.1.DeviceName".into(), "/dev/xvda".into()),
            (
                "BlockDeviceMapping.1.Ebs.SnapshotId".into(),
                spec.snapshot_id.clone(),
            ),
            (
                "BlockDeviceMapping.1.Ebs.VolumeType".into(),
                spec.volume_type.as_str().into(),
            ),
            (
                "BlockDeviceMapping.1.Ebs.VolumeSize".into(),
                spec.volume_size_gib.to_string(),
            ),
            (
                "BlockDeviceMapping.1.Ebs.DeleteOnTermination".into(),
                "true".into(),
            ),
            // The instance store's first volume, where the instance type has one, as
            // Flatcar's own AMIs map it.
            ("BlockDeviceMapping.2.DeviceName".into(), "/dev/xvdb".into()),
            (
                "BlockDeviceMapping.2.VirtualName".into(),
                "ephemeral0".into(),
            ),
            ("EnaSupport".into(), "true".into()),
            ("SriovNetSupport".into(), "simple".into()),
            ("BootMode".into(), spec.boot_mode.as_str().into()),
        ];
        if let Some(iops) = spec.iops {
            params.push(("BlockDeviceMapping.1.Ebs.Iops".into(), iops.to_string()));
        }
        if let Some(throughput) = spec.throughput {
            params.push((
                "BlockDeviceMapping.1.Ebs.Throughput".into(),
                throughput.to_string(),
            ));
        }
        if spec.imds == ImdsSupport::Required {
            params.push(("ImdsSupport".into(), "v2.0".into()));
        }
        if spec.tpm {
            params.push(("TpmSupport".into(), "v2.0".into()));
        }
        let xml = self.call("RegisterImage", &params).await?;
        first(&xml, "imageId")
            .ok_or_else(|| AmiError::Answer("RegisterImage returned no image ID".into()))
    }

    pub(crate) async fn create_tags(
        &self,
        resources: &[&str],
        tags: &[(String, String)],
    ) -> Result<(), AmiError> {
        let mut params = Vec::new();
        for (i, id) in resources.iter().enumerate() {
            params.push((format!("ResourceId.{}", i + 1), id.to_string()));
        }
        for (i, (key, value)) in tags.iter().enumerate() {
            params.push((format!("Tag.{}.Key", i + 1), key.clone()));
            params.push((format!("Tag.{}.Value", i + 1), value.clone()));
        }
        self.call("CreateTags", &params).await.map(|_| ())
    }

    /// Copies `image_id` from `source_region` into this client's region.
    pub(crate) async fn copy_image(
        &self,
        source_region: &str,
        image_id: &str,
        name: &str,
        description: &str,
    ) -> Result<String, AmiError> {
        let xml = self
            .call(
                "CopyImage",
                &[
                    ("SourceRegion".into(), source_region.into()),
                    ("SourceImageId".into(), image_id.into()),
                    ("Name".into(), name.into()),
                    ("Description".into(), description.into()),
                    ("CopyImageTags".into(), "true".into()),
                ],
            )
            .await?;
        first(&xml, "imageId")
            .ok_or_else(|| AmiError::Answer("CopyImage returned no image ID".into()))
    }

    pub(crate) async fn make_public(&self, image_id: &str) -> Result<(), AmiError> {
        self.call(
            "ModifyImageAttribute",
            &[
                ("ImageId".into(), image_id.into()),
                ("LaunchPermission.Add.1.Group".into(), "all".into()),
            ],
        )
        .await
        .map(|_| ())
    }
}

/// Describe* filters for resources of this account tagged `key=value`.
fn ours_tagged(tags: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut params = vec![("Owner.1".into(), "self".into())];
    for (i, (key, value)) in tags.iter().enumerate() {
        params.push((format!("Filter.{}.Name", i + 1), format!("tag:{key}")));
        params.push((format!("Filter.{}.Value.1", i + 1), value.to_string()));
    }
    params
}

/// `application/x-www-form-urlencoded`, RFC 3986 unreserved characters kept.
fn form_encode(params: &[(String, String)]) -> String {
    use crate::url::percent_encode;
    params
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                percent_encode(k.as_bytes()),
                percent_encode(v.as_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The text of the first `<tag>…</tag>` in an EC2 answer, unescaped.
fn first(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(
        xml[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_first_element_and_unescapes_it() {
        let xml = "<r><imagesSet><item><imageId>ami-1</imageId><name>a &amp; b</name></item></imagesSet></r>";
        assert_eq!(first(xml, "imageId").as_deref(), Some("ami-1"));
        assert_eq!(first(xml, "name").as_deref(), Some("a & b"));
        assert_eq!(first(xml, "missing"), None);
    }

    #[test]
    fn form_encoding_escapes_reserved_characters() {
        assert_eq!(
            form_encode(&[
                ("Tag.1.Key".into(), "kato:role".into()),
                ("D".into(), "a b/c".into())
            ]),
            "Tag.1.Key=kato%3Arole&D=a%20b%2Fc"
        );
    }
}
