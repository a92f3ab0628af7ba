//! The JSON documents of the distribution API: image indexes (manifest lists) that point at
//! one manifest per platform, and image manifests that name a config and layers. Docker's
//! schema-2 media types and OCI's have the same shape.

use serde::{Deserialize, Serialize};

use crate::wording::JsonFault;

pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// What we ask registries for, best first.
pub(crate) const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Manifests are small; anything larger is not one.
pub(crate) const MANIFEST_LIMIT: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image index or a manifest list.
#[derive(Debug, Clone, Deserialize)]
pub struct Index {
    pub manifests: Vec<Descriptor>,
}

/// One platform's image.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageManifest {
    #[serde(rename = "schemaVersion")]
    pub(crate) schema_version: u32,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// Which of the two a manifest body is: by its media type, else by its fields (some
/// registries answer OCI documents without a `mediaType`).
pub enum Document {
    Index(Index),
    Image(ImageManifest),
}

pub fn parse(content_type: &str, body: &[u8]) -> Result<Document, String> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| format!("manifest is not JSON: {}", JsonFault::from(e)))?;
    let declared = value
        .get("mediaType")
        .and_then(|m| m.as_str())
        .unwrap_or(media);
    let is_index = declared == OCI_INDEX
        || declared == DOCKER_LIST
        || (value.get("manifests").is_some() && value.get("layers").is_none());
    if is_index {
        serde_json::from_value(value)
            .map(Document::Index)
            .map_err(|e| format!("image index: {}", JsonFault::from(e)))
    } else {
        let manifest: ImageManifest = serde_json::from_value(value)
            .map_err(|e| format!("image manifest: {}", JsonFault::from(e)))?;
        if manifest.schema_version != 2 {
            return Err(format!(
                "schema version {} manifests are not supported (only 2)",
                manifest.schema_version
            ));
        }
        Ok(Document::Image(manifest))
    }
}

/// The entry of `index` for `architecture` on Linux (`arm64` also matches variant `v8`).
pub fn select<'a>(index: &'a Index, architecture: &str) -> Option<&'a Descriptor> {
    index.manifests.iter().find(|d| {
        d.platform.as_ref().is_some_and(|p| {
            p.os == "linux"
                && p.architecture == architecture
                && p.variant
                    .as_deref()
                    .is_none_or(|v| architecture != "arm64" || v == "v8")
        })
    })
}

/// The platforms an index offers, for error messages.
pub fn platforms(index: &Index) -> String {
    let names: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .map(|p| match &p.variant {
            Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
            None => format!("{}/{}", p.os, p.architecture),
        })
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// A manifest's media type: its own `mediaType` field, else the response's, else OCI's.
pub fn media_type(content_type: &str, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Typed {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Typed>(body)
        .ok()
        .and_then(|t| t.media_type)
        .or_else(|| {
            let declared = content_type.split(';').next().unwrap_or("").trim();
            (!declared.is_empty() && declared != "application/json").then(|| declared.to_string())
        })
        .unwrap_or_else(|| OCI_MANIFEST.to_string())
}
