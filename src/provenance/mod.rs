//! Provenance: per role, an in-toto Statement v1 whose predicate is SLSA Provenance v1,
//! made from the role's manifest (what went in, what came out), and optionally signed.
//!
//! The statement's subjects are the files the build wrote (the manifest, each disk image,
//! the iPXE files); its resolved dependencies are the vendor files with who signed them, the
//! container images, and the profile, fragment and unit files. The same inputs give the same
//! bytes: times come from the manifest's timestamp (`SOURCE_DATE_EPOCH`, else the vendor
//! signature's time), keys of digest sets are sorted, lists keep the manifest's order.
//!
//! Disk images are named by BLAKE3 (the manifest's digest, made while the image was written,
//! so that provenance costs no second pass over gigabytes); smaller files by SHA-256.

pub mod allowed_signers;
pub mod check;
pub mod dsse;
pub mod sign;
pub mod sshkey;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::build::manifest::Manifest;
use crate::cache::hex;
use crate::wording::JsonFault;

pub(crate) const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub(crate) const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
pub(crate) const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// What kind of build this is: a URI that names kato-image's build, version 1 of its
/// parameters (a `tag:` URI, which needs no web site to stay meaningful).
pub(crate) const BUILD_TYPE: &str = "tag:kato-image,2026:build/v1";
/// The builder when the command line names none: a build on someone's own machine.
pub const LOCAL_BUILDER: &str = "tag:kato-image,2026:builder/local";

#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    #[error("{}: not an in-toto statement: {why}", path.display())]
    Invalid { path: PathBuf, why: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub(crate) statement_type: String,
    pub subject: Vec<ResourceDescriptor>,
    #[serde(rename = "predicateType")]
    pub(crate) predicate_type: String,
    pub predicate: Provenance,
}

/// A file or artifact, named and identified by its digests (algorithm -> lower-case hex).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResourceDescriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digest: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    pub(crate) build_definition: BuildDefinition,
    pub(crate) run_details: RunDetails,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BuildDefinition {
    pub(crate) build_type: String,
    pub(crate) external_parameters: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) internal_parameters: Option<serde_json::Value>,
    pub(crate) resolved_dependencies: Vec<ResourceDescriptor>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunDetails {
    pub builder: Builder,
    pub metadata: BuildMetadata,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) byproducts: Vec<ResourceDescriptor>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Builder {
    pub id: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub version: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BuildMetadata {
    pub(crate) invocation_id: String,
    pub(crate) started_on: String,
    pub(crate) finished_on: String,
}

fn digest(algorithm: &str, hex: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(algorithm.to_string(), hex.to_string())])
}

fn named(name: &str, digest: BTreeMap<String, String>) -> ResourceDescriptor {
    ResourceDescriptor {
        name: Some(name.to_string()),
        digest,
        ..Default::default()
    }
}

/// `OUT/<role>.provenance.json`: the statement, signed or not.
pub(crate) fn statement_path(out_dir: &Path, role: &str) -> PathBuf {
    out_dir.join(format!("{role}.provenance.json"))
}

/// `OUT/<role>.intoto.jsonl`: the signed statement, a DSSE envelope on one line (the
/// in-toto attestation bundle format).
pub fn envelope_path(out_dir: &Path, role: &str) -> PathBuf {
    out_dir.join(format!("{role}.intoto.jsonl"))
}

/// What a role's statement is made from, beside its manifest.
pub struct Inputs<'a> {
    pub manifest: &'a Manifest,
    /// The manifest's bytes as written.
    pub(crate) manifest_bytes: &'a [u8],
    pub builder_id: &'a str,
    /// The rendered config baked in (a byproduct).
    pub config: &'a crate::config::RenderedConfig,
}

impl Statement {
    /// The statement of one role's build, from the digests its stages recorded (no file is
    /// read back).
    pub(crate) fn of_build(inputs: &Inputs) -> Statement {
        let m = inputs.manifest;
        let mut subject = vec![named(
            &format!("{}.manifest.json", m.role),
            digest("sha256", &hex(&Sha256::digest(inputs.manifest_bytes))),
        )];
        for disk in &m.disks {
            subject.push(named(&disk.file, digest("blake3", &disk.blake3)));
        }
        if let Some(ipxe) = &m.ipxe {
            // The kernel and initramfs are the vendor's files as signed: named by the SHA-512
            // Flatcar signs them with.
            for (file, algorithm, hex) in [
                (&ipxe.script, "sha256", &ipxe.script_sha256),
                (&ipxe.kernel, "sha512", &ipxe.kernel_sha512),
                (&ipxe.initramfs, "sha512", &ipxe.initramfs_sha512),
                (&ipxe.overlay, "sha256", &ipxe.overlay_sha256),
            ] {
                subject.push(named(&format!("ipxe/{file}"), digest(algorithm, hex)));
            }
        }
        let time = rfc3339(m.timestamp);
        Statement {
            statement_type: STATEMENT_TYPE.into(),
            subject,
            predicate_type: PREDICATE_TYPE.into(),
            predicate: Provenance {
                build_definition: BuildDefinition {
                    build_type: BUILD_TYPE.into(),
                    external_parameters: external_parameters(m),
                    internal_parameters: None,
                    resolved_dependencies: dependencies(m),
                },
                run_details: RunDetails {
                    builder: Builder {
                        id: inputs.builder_id.to_string(),
                        version: BTreeMap::from([(m.tool.name.clone(), m.tool.version.clone())]),
                    },
                    metadata: BuildMetadata {
                        invocation_id: m.build_id.clone(),
                        started_on: time.clone(),
                        finished_on: time,
                    },
                    byproducts: vec![named(
                        &m.config.path,
                        digest("sha256", &inputs.config.sha256),
                    )],
                },
            },
        }
    }

    /// Compact JSON (the DSSE payload and the `.provenance.json` file), with a final
    /// newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(self).expect("statements serialise");
        bytes.push(b'\n');
        bytes
    }

    pub fn parse(bytes: &[u8], path: &Path) -> Result<Statement, ProvenanceError> {
        let statement: Statement =
            serde_json::from_slice(bytes).map_err(|e| ProvenanceError::Invalid {
                path: path.to_path_buf(),
                why: JsonFault::from(e).to_string(),
            })?;
        if statement.statement_type != STATEMENT_TYPE || statement.predicate_type != PREDICATE_TYPE
        {
            return Err(ProvenanceError::Invalid {
                path: path.to_path_buf(),
                why: format!(
                    "its types are {:?} / {:?}, not {STATEMENT_TYPE} / {PREDICATE_TYPE}",
                    statement.statement_type, statement.predicate_type
                ),
            });
        }
        Ok(statement)
    }

    /// The subject named `name`.
    pub fn subject(&self, name: &str) -> Option<&ResourceDescriptor> {
        self.subject
            .iter()
            .find(|s| s.name.as_deref() == Some(name))
    }
}

/// What the build was asked for: the role, its release and its outputs.
fn external_parameters(m: &Manifest) -> serde_json::Value {
    let mut outputs: Vec<&str> = m
        .disks
        .iter()
        .map(|d| if d.ami.is_some() { "ami" } else { "raw" })
        .collect();
    if m.ipxe.is_some() {
        outputs.push("ipxe");
    }
    serde_json::json!({
        "role": m.role,
        "release": {
            "channel": m.release.channel.to_string(),
            "board": m.release.board.to_string(),
            "version": m.release.requested_version,
        },
        "outputs": outputs,
        "configFormat": m.config.format,
        "insecureSkipSignature": m.release.insecure_skip_signature,
    })
}

/// Every input: vendor files with their signers, container images, profile, fragment and
/// unit files.
fn dependencies(m: &Manifest) -> Vec<ResourceDescriptor> {
    let mut out = Vec::new();
    for vendor in &m.vendor {
        let mut annotations = BTreeMap::new();
        annotations.insert("kind".into(), "vendor".into());
        annotations.insert("flatcarVersion".into(), m.release.version.clone().into());
        if let Some(sig) = &vendor.signature {
            annotations.insert(
                "signerFingerprint".into(),
                sig.signer_fingerprint.clone().into(),
            );
            annotations.insert(
                "signerPrimaryFingerprint".into(),
                sig.primary_fingerprint.clone().into(),
            );
            annotations.insert("signedOn".into(), rfc3339(sig.created as i64).into());
        } else {
            annotations.insert("unsigned".into(), true.into());
        }
        out.push(ResourceDescriptor {
            name: Some(vendor.file.clone()),
            uri: Some(vendor.url.clone()),
            digest: digest("sha512", &vendor.sha512),
            annotations,
        });
    }
    for image in &m.images {
        let mut annotations = BTreeMap::new();
        annotations.insert("kind".into(), "container-image".into());
        annotations.insert("imageId".into(), image.config_digest.clone().into());
        if let Some(resolved) = &image.digest {
            annotations.insert("registryDigest".into(), resolved.clone().into());
        }
        out.push(ResourceDescriptor {
            name: Some(image.reference.clone()),
            uri: None,
            digest: digest("sha256", &image.sha256),
            annotations,
        });
    }
    for (kind, files) in [("profile", &m.profiles), ("unit", &m.units)] {
        for file in files {
            let mut d = named(&file.path, digest("sha256", &file.sha256));
            d.annotations.insert("kind".into(), kind.into());
            out.push(d);
        }
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (UTC); times before 1970 are not
/// build times and read as the epoch.
pub(crate) fn rfc3339(seconds: i64) -> String {
    crate::trust::format_time(seconds.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_764_597_600), "2025-12-01T14:00:00Z");
        assert_eq!(rfc3339(-1), "1970-01-01T00:00:00Z");
    }
}
