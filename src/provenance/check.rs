//! `kato-image verify`: what a consumer can check about a disk image before launching it,
//! from the files beside it: the manifest's detached signature and the signed statement
//! (with the key it is told to trust), the statement naming this manifest and this image,
//! and the image itself re-hashed, whole and partition by partition, against the manifest.
//! Each partition is reported as the vendor's byte for byte, or as changed by the build.

use std::path::{Path, PathBuf};

use crate::platform::Container;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::allowed_signers::AllowedSigners;
use super::dsse::{self, Envelope};
use super::sshkey;
use super::{PAYLOAD_TYPE, Statement};
use crate::build::manifest::Manifest;
use crate::disk::{PartitionTable, digest};
use crate::emit::raw::DiskRecord;
use crate::input::InputError;
use crate::io::{At, PathError};
use crate::trust::Keyring;
use crate::wording::JsonFault;

/// The keys a consumer trusts.
pub enum Trust {
    /// No key given: signatures are reported, not required.
    None,
    OpenPgp(Keyring),
    /// An `allowed_signers` file, for this principal if one is named (as `ssh-keygen -Y
    /// verify -I`), judged at this time (seconds since the epoch).
    Ssh {
        signers: AllowedSigners,
        principal: Option<String>,
        now: i64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error(transparent)]
    Manifest(#[from] crate::build::manifest::ManifestError),
    #[error("{}: {why}", path.display())]
    Refused { path: PathBuf, why: String },
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("{}: the build manifest of {} ({reason}); pass --manifest FILE", path.display(), image.display())]
    NoManifest {
        path: PathBuf,
        image: PathBuf,
        reason: String,
    },
    #[error("{}: the manifest of role {role} lists {}, not {file}", path.display(), listed_words(listed))]
    NotListed {
        path: PathBuf,
        role: String,
        listed: Vec<String>,
        file: String,
    },
    #[error("{}: {difference}, but its manifest {} says {}", image.display(), manifest.display(), difference.recorded())]
    Changed {
        image: PathBuf,
        manifest: PathBuf,
        difference: Difference,
    },
}

fn listed_words(listed: &[String]) -> String {
    if listed.is_empty() {
        "no disk images".to_string()
    } else {
        listed.join(", ")
    }
}

/// How an image differs from what its build recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    Size { actual: u64, recorded: u64 },
    Blake3 { actual: String, recorded: String },
}

impl Difference {
    fn recorded(&self) -> String {
        match self {
            Difference::Size { recorded, .. } => {
                format!("{recorded} bytes: it is not the image that build made")
            }
            Difference::Blake3 { recorded, .. } => {
                format!("{recorded}: the image changed after its build")
            }
        }
    }
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Size { actual, .. } => write!(f, "{actual} bytes"),
            Difference::Blake3 { actual, .. } => write!(f, "BLAKE3 {actual}"),
        }
    }
}

/// A disk image and what its build recorded of it: the manifest (and its bytes, which a
/// signature covers) and the image's own record in it.
pub struct Recorded {
    pub image: PathBuf,
    pub manifest: Manifest,
    pub manifest_path: PathBuf,
    pub(crate) manifest_bytes: Vec<u8>,
    pub disk: DiskRecord,
}

impl Recorded {
    /// Finds `image`'s record in the manifest beside it (or `manifest`).
    pub fn find(image: &Path, manifest: Option<&Path>) -> Result<Self, CheckError> {
        let manifest_path = manifest.map_or_else(|| Manifest::beside(image), Path::to_path_buf);
        let (m, manifest_bytes) = Manifest::read_bytes(&manifest_path).map_err(|e| match e {
            crate::build::manifest::ManifestError::Read { path, source } => {
                CheckError::NoManifest {
                    path,
                    image: image.to_path_buf(),
                    reason: match source {
                        InputError::Io { source, .. } => source.to_string(),
                        other => other.to_string(),
                    },
                }
            }
            e => e.into(),
        })?;
        let file = Manifest::image_name(image);
        let Some(disk) = m.disk(&file).cloned() else {
            return Err(CheckError::NotListed {
                path: manifest_path,
                role: m.role.clone(),
                listed: m.disks.iter().map(|d| d.file.clone()).collect(),
                file,
            });
        };
        Ok(Recorded {
            image: image.to_path_buf(),
            manifest: m,
            manifest_path,
            manifest_bytes,
            disk,
        })
    }

    /// The image's size and BLAKE3 now, and how they differ from the record.
    pub(crate) fn measure(
        &self,
        file: &std::fs::File,
    ) -> Result<(String, Vec<Difference>), CheckError> {
        let len = file.metadata().at(&self.image)?.len();
        let mut differences = Vec::new();
        if len != self.disk.size {
            differences.push(Difference::Size {
                actual: len,
                recorded: self.disk.size,
            });
        }
        let blake3 = digest::hex(&digest::hash_range(file, 0, len).at(&self.image)?);
        if blake3 != self.disk.blake3 {
            differences.push(Difference::Blake3 {
                actual: blake3.clone(),
                recorded: self.disk.blake3.clone(),
            });
        }
        Ok((blake3, differences))
    }

    /// What publishing asks: the image is, byte for byte, the one its manifest records. A
    /// size that differs is told before anything is hashed.
    pub fn unchanged(&self) -> Result<(), CheckError> {
        let file = std::fs::File::open(&self.image).at(&self.image)?;
        let len = file.metadata().at(&self.image)?.len();
        let changed = |difference| CheckError::Changed {
            image: self.image.clone(),
            manifest: self.manifest_path.clone(),
            difference,
        };
        if len != self.disk.size {
            return Err(changed(Difference::Size {
                actual: len,
                recorded: self.disk.size,
            }));
        }
        match self.measure(&file)?.1.into_iter().next() {
            Some(difference) => Err(changed(difference)),
            None => Ok(()),
        }
    }
}

/// The largest statement, envelope or signature read: a role's are a few KiB.
pub(crate) const MAX_PROVENANCE_FILE: u64 = 16 << 20;

fn read_small(path: &Path, what: &'static str) -> Result<Vec<u8>, CheckError> {
    Ok(crate::input::read_regular(path, MAX_PROVENANCE_FILE, what)?)
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Report {
    pub image: String,
    pub role: String,
    pub build_id: String,
    pub signature: SignatureState,
    /// Who signed, when verified: a key ID and its kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    pub blake3: String,
    pub partitions: Vec<PartitionReport>,
    /// For a qcow2 or GCE archive: its format. Partitions are inside it and not read one by
    /// one; the file's digest covers them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packaged: Option<crate::platform::Container>,
    /// With `verify --ami`: the AMI's root snapshot compared with the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ami: Option<crate::emit::ami::compare::SnapshotComparison>,
    /// Everything that does not hold, one line each; empty when the image checks out.
    pub problems: Vec<String>,
}

/// What `verify` found of the build's signatures (JSON: `unsigned`, `not checked`,
/// `untrusted`, `verified`).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub enum SignatureState {
    /// No envelope beside the manifest.
    #[serde(rename = "unsigned")]
    Unsigned,
    /// Signed, but no key was given to check it with.
    #[serde(rename = "not checked")]
    NotChecked,
    /// Signed by no key the caller trusts.
    #[serde(rename = "untrusted")]
    Untrusted,
    #[serde(rename = "verified")]
    Verified,
}

impl std::fmt::Display for SignatureState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SignatureState::Unsigned => "unsigned",
            SignatureState::NotChecked => "not checked",
            SignatureState::Untrusted => "untrusted",
            SignatureState::Verified => "verified",
        })
    }
}

/// The statement found beside a manifest, and what its signatures are worth.
struct Signed {
    state: SignatureState,
    /// Who signed, when verified.
    signer: Option<String>,
    statement: Option<Statement>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PartitionReport {
    pub slot: u32,
    pub name: String,
    pub blake3: String,
    /// Equal to the vendor image's partition.
    pub vendor: bool,
    /// Equal to what the manifest recorded for it.
    pub as_built: bool,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Records what comparing an AMI's snapshot with the image found.
    pub fn add_ami(
        &mut self,
        image: &Path,
        comparison: crate::emit::ami::compare::SnapshotComparison,
    ) {
        if let Some(block) = comparison.first_difference {
            let offset = block * crate::emit::ami::plan::BLOCK;
            let inside = partition_at(image, offset)
                .map(|name| format!(", in {name}"))
                .unwrap_or_default();
            self.problems.insert(
                0,
                format!(
                    "snapshot {} of {} differs from {} at block {block} (byte {offset}{inside})",
                    comparison.snapshot_id,
                    comparison.image_id,
                    image.display()
                ),
            );
        }
        self.ami = Some(comparison);
    }
}

/// The name of the partition that holds byte `offset` of a disk image.
fn partition_at(image: &Path, offset: u64) -> Option<String> {
    let mut file = std::fs::File::open(image).ok()?;
    let table = PartitionTable::read(&mut file, false).ok()?;
    table
        .partitions()
        .into_iter()
        .find(|p| (p.start()..p.end()).contains(&offset))
        .map(|p| format!("partition {} ({})", p.slot, p.name))
}

/// Checks `image` against the manifest beside it (or `manifest`) and its signatures, with
/// `trust`. Holes in large disks cost nothing to hash (the zero-leaf table).
pub fn verify(image: &Path, manifest: Option<&Path>, trust: &Trust) -> Result<Report, CheckError> {
    let recorded = Recorded::find(image, manifest)?;
    let Recorded {
        manifest: m,
        manifest_path,
        manifest_bytes,
        disk,
        ..
    } = &recorded;
    let mut problems = Vec::new();
    let dir = manifest_path.parent().unwrap_or(Path::new("."));
    let Signed {
        state: signature,
        signer,
        statement,
    } = signed_statement(
        dir,
        &m.role,
        manifest_path,
        manifest_bytes,
        trust,
        &mut problems,
    )?;
    if let Some(statement) = &statement {
        let manifest_name = format!("{}.manifest.json", m.role);
        let sha256 = crate::cache::hex(&Sha256::digest(manifest_bytes));
        match statement.subject(&manifest_name) {
            Some(s) if s.digest.get("sha256") == Some(&sha256) => {}
            Some(_) => problems.push(format!(
                "{}: changed since the build: the statement names another manifest",
                manifest_path.display()
            )),
            None => problems.push(format!("the statement does not name {manifest_name}")),
        }
        match statement.subject(&disk.file) {
            Some(s) if s.digest.get("blake3") == Some(&disk.blake3) => {}
            Some(_) => problems.push(format!(
                "the statement and the manifest give {} different digests",
                disk.file
            )),
            None => problems.push(format!("the statement does not name {}", disk.file)),
        }
    }
    let file = std::fs::File::open(image).at(image)?;
    // Partitions first: the one that differs says more than the whole image's digest. A raw
    // disk and a fixed VHD (the raw disk and a footer) are read as they are.
    let packaged = disk
        .platform
        .as_ref()
        .map(|p| p.format)
        .filter(|f| matches!(f, Container::Qcow2 | Container::GceTar));
    let partitions = match packaged {
        None => partitions(image, &file, disk, &mut problems)?,
        Some(_) => Vec::new(),
    };
    let (blake3, differences) = recorded.measure(&file)?;
    problems.extend(differences.into_iter().map(|difference| {
        CheckError::Changed {
            image: image.to_path_buf(),
            manifest: manifest_path.clone(),
            difference,
        }
        .to_string()
    }));
    Ok(Report {
        image: image.display().to_string(),
        role: m.role.clone(),
        build_id: m.build_id.clone(),
        signature,
        signer,
        blake3,
        partitions,
        packaged,
        ami: None,
        problems,
    })
}

fn partitions(
    image: &Path,
    file: &std::fs::File,
    disk: &DiskRecord,
    problems: &mut Vec<String>,
) -> Result<Vec<PartitionReport>, CheckError> {
    let table = match PartitionTable::read(&mut file.try_clone().at(image)?, false) {
        Ok(table) => table,
        Err(e) => {
            problems.push(format!("{}: {e}", image.display()));
            return Ok(Vec::new());
        }
    };
    let digests = crate::disk::partition_digests(file, &table).at(image)?;
    let mut out = Vec::new();
    for record in &disk.partitions {
        let Some(now) = digests.get(&record.slot) else {
            problems.push(format!(
                "partition {} ({}) is gone from the image",
                record.slot, record.name
            ));
            continue;
        };
        let as_built = *now == record.blake3_after;
        if !as_built {
            problems.push(format!(
                "partition {} ({}) differs from the build's: BLAKE3 {now}, not {}",
                record.slot, record.name, record.blake3_after
            ));
        }
        out.push(PartitionReport {
            slot: record.slot,
            name: record.name.clone(),
            blake3: now.clone(),
            vendor: record.blake3_before.as_deref() == Some(now.as_str()),
            as_built,
        });
    }
    Ok(out)
}

/// The statement and whether its signatures (and the manifest's) check out with `trust`.
fn signed_statement(
    dir: &Path,
    role: &str,
    manifest_path: &Path,
    manifest_bytes: &[u8],
    trust: &Trust,
    problems: &mut Vec<String>,
) -> Result<Signed, CheckError> {
    let envelope_path = super::envelope_path(dir, role);
    let statement_path = super::statement_path(dir, role);
    let detached_path = super::sign::manifest_signature_path(manifest_path);
    let required = !matches!(trust, Trust::None);
    if !envelope_path.exists() {
        if required {
            problems.push(format!(
                "{}: missing: the build was not signed, and a key was given",
                envelope_path.display()
            ));
        }
        let statement = match read_small(&statement_path, "provenance statement") {
            Ok(bytes) => Some(parse_statement(&bytes, &statement_path)?),
            Err(CheckError::Input(InputError::Io { source, .. }))
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                problems.push(format!("{}: missing", statement_path.display()));
                None
            }
            Err(e) => return Err(e),
        };
        return Ok(Signed {
            state: SignatureState::Unsigned,
            signer: None,
            statement,
        });
    }
    let text = read_small(&envelope_path, "DSSE envelope")?;
    let refused = |why: String| CheckError::Refused {
        path: envelope_path.clone(),
        why,
    };
    // An in-toto bundle: one envelope per line.
    let mut envelopes = Vec::new();
    for (index, line) in text.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let at = |why: String| refused(format!("line {}: {why}", index + 1));
        let envelope: Envelope = serde_json::from_slice(line)
            .map_err(|e| at(format!("not a DSSE envelope: {}", JsonFault::from(e))))?;
        if envelope.payload_type != PAYLOAD_TYPE {
            return Err(at(format!(
                "payload type {:?}, not {PAYLOAD_TYPE}",
                envelope.payload_type
            )));
        }
        let payload = envelope.payload_bytes().map_err(&at)?;
        let statement = parse_statement(&payload, &envelope_path)?;
        envelopes.push((envelope, payload, statement));
    }
    if envelopes.is_empty() {
        return Err(refused("holds no envelope".into()));
    }
    if !required {
        return Ok(Signed {
            state: SignatureState::NotChecked,
            signer: None,
            statement: Some(envelopes.swap_remove(0).2),
        });
    }
    let mut signer = None;
    let mut held_back = None;
    'envelopes: for (index, (envelope, payload, _)) in envelopes.iter().enumerate() {
        let pae = dsse::pae(&envelope.payload_type, payload);
        for sig in &envelope.signatures {
            let bytes = dsse::decode_sig(&sig.sig).map_err(&refused)?;
            match check_signature(trust, &pae, &bytes, &envelope_path) {
                Ok(who) => {
                    signer = Some((index, who));
                    break 'envelopes;
                }
                Err(why) => held_back = held_back.or(why),
            }
        }
    }
    let Some((index, signer)) = signer else {
        let envelope = &envelopes[0].0;
        problems.push(format!(
            "{}: no signature by a trusted key (signed by {}){}",
            envelope_path.display(),
            envelope
                .signatures
                .iter()
                .map(|s| s.keyid.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            held_back.map_or_else(String::new, |why| format!("; {why}"))
        ));
        return Ok(Signed {
            state: SignatureState::Untrusted,
            signer: None,
            statement: Some(envelopes.swap_remove(0).2),
        });
    };
    let statement = envelopes.swap_remove(index).2;
    match read_small(&detached_path, "signature") {
        Ok(sig) => {
            if check_signature(trust, manifest_bytes, &sig, &detached_path).is_err() {
                problems.push(format!(
                    "{}: does not verify {} with the trusted key: the manifest was changed after signing, or another key signed it",
                    detached_path.display(),
                    manifest_path.display()
                ));
            }
        }
        Err(_) => problems.push(format!("{}: missing", detached_path.display())),
    }
    Ok(Signed {
        state: SignatureState::Verified,
        signer: Some(signer),
        statement: Some(statement),
    })
}

fn parse_statement(bytes: &[u8], path: &Path) -> Result<Statement, CheckError> {
    Statement::parse(bytes, path).map_err(|e| CheckError::Refused {
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

/// Who made `signature` over `data`, if a trusted key did: an OpenPGP signature packet, a
/// raw Ed25519 signature, or an armored SSH signature. Otherwise why the signer is not
/// trusted, when the signature is good but its key is held back by the trust file.
fn check_signature(
    trust: &Trust,
    data: &[u8],
    signature: &[u8],
    path: &Path,
) -> Result<String, Option<String>> {
    match trust {
        Trust::None => Err(None),
        Trust::OpenPgp(keyring) => keyring
            .verify_detached(signature, data, &path.display().to_string())
            .map(|info| format!("OpenPGP {}", info.signer_fingerprint))
            .map_err(|_| None),
        Trust::Ssh {
            signers,
            principal,
            now,
        } => {
            let key = if sshkey::is_sshsig(signature) {
                let text = std::str::from_utf8(signature).map_err(|_| None)?;
                sshkey::verify_sshsig(text, data).map_err(|_| None)?
            } else {
                signers
                    .keys()
                    .find(|k| k.verify_raw(data, signature).is_ok())
                    .ok_or(None)?
                    .clone()
            };
            signers
                .trusts(&key, principal.as_deref(), *now)
                .map(|_| format!("SSH {}", key.fingerprint()))
                .map_err(|refusal| Some(format!("{}: {refusal}", key.fingerprint())))
        }
    }
}
