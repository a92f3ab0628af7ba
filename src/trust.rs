//! OpenPGP trust: a keyring of trusted keys, and the rule that decides whether a detached or
//! clear-text signature counts.
//!
//! rPGP checks the mathematics; the policy is ours. A signature counts only when the (sub)key
//! that made it was, at the signature's creation time: created, bound to a trusted primary key
//! by a valid binding signature, flagged for signing (and, for a subkey, cross-certified by a
//! back-signature), not expired, and not revoked. A revocation whose reason is "superseded",
//! "retired" or "user ID no longer valid" takes effect at its own creation time; any other
//! revocation (compromised, or no reason) invalidates the key for all time, as RFC 9580 says.

use std::fmt;
use std::io::Read;

use pgp::composed::{CleartextSignedMessage, Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::{RevocationCode, Signature, SignatureType};
use pgp::types::{KeyDetails, Tag, Timestamp, VerifyingKey};

/// The Flatcar image signing key (Flatcar Buildbot, primary F88CFEDE...B34A).
pub(crate) const FLATCAR_KEY: &str = include_str!("../keys/flatcar-image-signing-key.asc");

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{source_name}: not an OpenPGP public key: {message}")]
    Keyring {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: holds no public key")]
    EmptyKeyring { source_name: String },
    #[error("{0}: not an OpenPGP signature: {1}")]
    Malformed(String, String),
    #[error("{0}: signed by key {1}, which is not in the trusted keyring")]
    UnknownSigner(String, String),
    #[error("{0}: signature by {1} made {2} does not count: {3}")]
    Untrusted(String, String, String, String),
    #[error("{0}: BAD signature by {1}: the data is not what was signed")]
    Bad(String, String),
    #[error("{0}: cannot read the signed data: {1}")]
    Read(String, std::io::Error),
}

/// Who signed, and when: what a manifest records.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignatureInfo {
    /// Fingerprint of the primary key the signer belongs to (upper-case hex).
    pub primary_fingerprint: String,
    /// Fingerprint of the (sub)key that made the signature.
    pub signer_fingerprint: String,
    /// Signature creation time, seconds since the Unix epoch.
    pub created: u64,
}

/// Trusted public keys.
/// The largest keyring file read (Flatcar's key with its subkeys is a few KiB).
pub const MAX_KEYRING: u64 = 16 << 20;

#[derive(Clone)]
pub struct Keyring {
    keys: Vec<SignedPublicKey>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| format!("{:X}", k.fingerprint())))
            .finish()
    }
}

impl Keyring {
    /// The embedded Flatcar image signing key.
    pub fn flatcar() -> Self {
        Keyring::parse(FLATCAR_KEY.as_bytes(), "embedded Flatcar key")
            .expect("the embedded Flatcar key parses")
    }

    /// Parses one or more public keys, ASCII-armored or binary.
    pub fn parse(data: &[u8], source_name: &str) -> Result<Self, VerifyError> {
        let error = |_| VerifyError::Keyring {
            source_name: source_name.to_string(),
            message: unreadable(data),
        };
        let (keys, _) = SignedPublicKey::from_reader_many(data).map_err(error)?;
        let keys = keys.collect::<Result<Vec<_>, _>>().map_err(error)?;
        if keys.is_empty() {
            return Err(VerifyError::EmptyKeyring {
                source_name: source_name.to_string(),
            });
        }
        Ok(Keyring { keys })
    }

    pub(crate) fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| format!("{:X}", k.fingerprint()))
            .collect()
    }

    /// Checks a detached signature (binary or armored) over everything `data` yields.
    pub(crate) fn verify_detached(
        &self,
        signature: &[u8],
        data: impl Read,
        name: &str,
    ) -> Result<SignatureInfo, VerifyError> {
        let signature = parse_detached(signature, name)?;
        let signer = self.signer(&signature, name)?;
        signer.check(&signature, data, name)?;
        Ok(signer.info)
    }

    /// Finds the trusted (sub)key that made `signature` and checks the policy, without
    /// reading the data yet: a caller can refuse early, then stream the data once.
    pub fn signer(&self, signature: &Signature, name: &str) -> Result<Signer<'_>, VerifyError> {
        let created = signature
            .created()
            .ok_or_else(|| VerifyError::Malformed(name.into(), "no creation time".into()))?;
        for key in &self.keys {
            let primary_fpr = format!("{:X}", key.fingerprint());
            if issued_by(signature, &key.primary_key) {
                let info = SignatureInfo {
                    primary_fingerprint: primary_fpr.clone(),
                    signer_fingerprint: primary_fpr.clone(),
                    created: u64::from(created.as_secs()),
                };
                let can_sign =
                    primary_state_at(key, created).map_err(|why| untrusted(name, &info, why))?;
                if !can_sign {
                    return Err(untrusted(
                        name,
                        &info,
                        "the primary key is not flagged for signing".into(),
                    ));
                }
                return Ok(Signer {
                    key: SignerKey::Primary(key),
                    info,
                });
            }
            for subkey in &key.public_subkeys {
                if issued_by(signature, &subkey.key) {
                    let info = SignatureInfo {
                        primary_fingerprint: primary_fpr.clone(),
                        signer_fingerprint: format!("{:X}", subkey.key.fingerprint()),
                        created: u64::from(created.as_secs()),
                    };
                    primary_state_at(key, created).map_err(|why| untrusted(name, &info, why))?;
                    subkey_valid_at(key, subkey, created)
                        .map_err(|why| untrusted(name, &info, why))?;
                    return Ok(Signer {
                        key: SignerKey::Subkey(subkey),
                        info,
                    });
                }
            }
        }
        let issuer = signature
            .issuer_fingerprint()
            .first()
            .map(|f| format!("{f:X}"))
            .or_else(|| {
                signature
                    .issuer_key_id()
                    .first()
                    .map(|k| k.to_string().to_uppercase())
            })
            .unwrap_or_else(|| "(no issuer)".into());
        Err(VerifyError::UnknownSigner(name.into(), issuer))
    }

    /// Checks a clear-signed message (`-----BEGIN PGP SIGNED MESSAGE-----`) and returns the
    /// signed text with `\n` line ends.
    pub(crate) fn verify_cleartext(
        &self,
        armored: &[u8],
        name: &str,
    ) -> Result<(String, SignatureInfo), VerifyError> {
        let (message, _) = CleartextSignedMessage::from_armor(armored)
            .map_err(|e| VerifyError::Malformed(name.into(), e.to_string()))?;
        let text = message.signed_text().replace("\r\n", "\n");
        let mut last_error = None;
        for signature in message.signatures() {
            match self.signer(signature, name) {
                Ok(signer) => {
                    signer.check(signature, message.signed_text().as_bytes(), name)?;
                    return Ok((text, signer.info));
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error
            .unwrap_or_else(|| VerifyError::Malformed(name.into(), "no signature".into())))
    }
}

/// Parses a detached signature, binary or armored.
pub fn parse_detached(bytes: &[u8], name: &str) -> Result<Signature, VerifyError> {
    let (signature, _) = DetachedSignature::from_reader_single(bytes)
        .map_err(|_| VerifyError::Malformed(name.into(), unreadable(bytes)))?;
    Ok(signature.signature)
}

/// Why OpenPGP data does not read, in a user's words. rPGP's own reasons name its readers,
/// buffers and packet-header versions (`PacketBodyReader errored`, `Fixed chunk was shorter
/// than expected`), which say nothing to someone holding a key file, so they are not passed on.
fn unreadable(data: &[u8]) -> String {
    let text = data.trim_ascii_start();
    if text.starts_with(b"-----BEGIN PGP") {
        "its armor (-----BEGIN PGP ...-----) is damaged or cut short".into()
    } else {
        "the bytes are neither armored (-----BEGIN PGP ...-----) nor whole OpenPGP packets".into()
    }
}

enum SignerKey<'a> {
    Primary(&'a SignedPublicKey),
    Subkey(&'a pgp::composed::SignedPublicSubKey),
}

/// A trusted key that may make the signature in question.
pub struct Signer<'a> {
    key: SignerKey<'a>,
    pub info: SignatureInfo,
}

impl Signer<'_> {
    /// Whether a SHA-512 state over the data can finish this check (a v4 binary signature
    /// hashed with SHA-512, as Flatcar's are), so one pass serves the DIGESTS and the
    /// signature.
    pub(crate) fn shares_sha512(signature: &Signature) -> bool {
        signature.config().is_some_and(|config| {
            config.hash_alg == pgp::crypto::hash::HashAlgorithm::Sha512
                && config.typ == SignatureType::Binary
                && matches!(
                    config.version_specific,
                    pgp::packet::SignatureVersionSpecific::V4
                )
        })
    }

    /// Finishes the check from a SHA-512 state that has hashed exactly the signed data.
    /// Only for signatures where `shares_sha512` holds.
    pub(crate) fn check_sha512_state(
        &self,
        signature: &Signature,
        data_state: sha2::Sha512,
        name: &str,
    ) -> Result<(), VerifyError> {
        use sha2::digest::DynDigest;
        let malformed = |why: String| VerifyError::Malformed(name.into(), why);
        let config = signature
            .config()
            .filter(|_| Self::shares_sha512(signature))
            .ok_or_else(|| malformed("not a v4 binary SHA-512 signature".into()))?;
        let mut hasher: Box<dyn DynDigest + Send> = Box::new(data_state);
        let length = config
            .hash_signature_data(&mut hasher)
            .map_err(|e| malformed(e.to_string()))?;
        hasher.update(
            &config
                .trailer(length)
                .map_err(|e| malformed(e.to_string()))?,
        );
        let hash = hasher.finalize();
        let bad = || VerifyError::Bad(name.into(), self.info.signer_fingerprint.clone());
        if signature.signed_hash_value() != Some([hash[0], hash[1]]) {
            return Err(bad());
        }
        let bytes = signature
            .signature()
            .ok_or_else(|| malformed("no signature value".into()))?;
        let verified = match self.key {
            SignerKey::Primary(key) => key.primary_key.verify(config.hash_alg, &hash, bytes),
            SignerKey::Subkey(subkey) => subkey.key.verify(config.hash_alg, &hash, bytes),
        };
        verified.map_err(|_| bad())
    }

    /// Hashes everything `data` yields and checks the signature over it.
    pub fn check(
        &self,
        signature: &Signature,
        data: impl Read,
        name: &str,
    ) -> Result<(), VerifyError> {
        let result = match self.key {
            SignerKey::Primary(key) => signature.verify(&key.primary_key, data),
            SignerKey::Subkey(subkey) => signature.verify(&subkey.key, data),
        };
        result.map_err(|e| match e {
            pgp::errors::Error::IO { source, .. } => VerifyError::Read(name.into(), source),
            _ => VerifyError::Bad(name.into(), self.info.signer_fingerprint.clone()),
        })
    }
}

fn untrusted(name: &str, info: &SignatureInfo, why: String) -> VerifyError {
    VerifyError::Untrusted(
        name.into(),
        info.signer_fingerprint.clone(),
        format_time(info.created),
        why,
    )
}

fn issued_by(signature: &Signature, key: &impl KeyDetails) -> bool {
    let fingerprint = key.fingerprint();
    let key_id = key.legacy_key_id();
    signature
        .issuer_fingerprint()
        .iter()
        .any(|f| **f == fingerprint)
        || signature.issuer_key_id().iter().any(|k| **k == key_id)
}

fn is_soft_revocation(signature: &Signature) -> bool {
    matches!(
        signature.revocation_reason_code(),
        Some(
            RevocationCode::KeySuperseded
                | RevocationCode::KeyRetired
                | RevocationCode::CertUserIdInvalid
        )
    )
}

/// A revocation's reason, as a person says it.
fn revocation_reason(revocation: &Signature) -> &'static str {
    match revocation.revocation_reason_code() {
        Some(RevocationCode::KeyCompromised) => "the key was compromised",
        Some(RevocationCode::KeySuperseded) => "the key was superseded",
        Some(RevocationCode::KeyRetired) => "the key was retired",
        Some(RevocationCode::CertUserIdInvalid) => "its user ID is no longer valid",
        Some(RevocationCode::NoReason) | None => "no reason given",
        Some(_) => "for a reason this tool does not know",
    }
}

/// Whether a revocation applies to a signature made at `t`.
fn revokes_at(revocation: &Signature, t: Timestamp) -> bool {
    !is_soft_revocation(revocation) || revocation.created().is_some_and(|r| r <= t)
}

fn expired_at(created: Timestamp, expiration: Option<pgp::types::Duration>, t: Timestamp) -> bool {
    match expiration.map(|d| u64::from(d.as_secs())) {
        Some(seconds) if seconds != 0 => {
            u64::from(t.as_secs()) >= u64::from(created.as_secs()) + seconds
        }
        _ => false,
    }
}

/// Checks the primary key at `t`; returns whether its newest self-signature lets it sign.
fn primary_state_at(key: &SignedPublicKey, t: Timestamp) -> Result<bool, String> {
    let primary = &key.primary_key;
    if primary.created_at() > t {
        return Err("the primary key was created after the signature".into());
    }
    for revocation in &key.details.revocation_signatures {
        if revocation.verify_key(primary).is_ok() && revokes_at(revocation, t) {
            return Err(format!(
                "the primary key is revoked ({})",
                revocation_reason(revocation)
            ));
        }
    }
    let self_signature = key
        .details
        .users
        .iter()
        .flat_map(|user| {
            user.signatures.iter().filter(move |s| {
                s.created().is_some_and(|c| c <= t)
                    && matches!(
                        s.typ(),
                        Some(
                            SignatureType::CertGeneric
                                | SignatureType::CertPersona
                                | SignatureType::CertCasual
                                | SignatureType::CertPositive
                        )
                    )
                    && s.verify_certification(primary, Tag::UserId, &user.id)
                        .is_ok()
            })
        })
        .max_by_key(|s| s.created())
        .ok_or("the primary key has no valid self-signature made before the signature")?;
    if expired_at(
        primary.created_at(),
        self_signature.key_expiration_time(),
        t,
    ) {
        return Err("the primary key had expired".into());
    }
    Ok(self_signature.key_flags().sign())
}

fn subkey_valid_at(
    key: &SignedPublicKey,
    subkey: &pgp::composed::SignedPublicSubKey,
    t: Timestamp,
) -> Result<(), String> {
    if subkey.key.created_at() > t {
        return Err("the subkey was created after the signature".into());
    }
    let binding = subkey
        .signatures
        .iter()
        .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding))
        .filter(|s| s.created().is_some_and(|c| c <= t))
        .filter(|s| {
            s.verify_subkey_binding(&key.primary_key, &subkey.key)
                .is_ok()
        })
        .max_by_key(|s| s.created())
        .ok_or("the subkey has no valid binding signature made before the signature")?;
    if !binding.key_flags().sign() {
        return Err("the subkey is not flagged for signing".into());
    }
    binding
        .embedded_signature()
        .ok_or("the signing subkey has no back-signature")?
        .verify_primary_key_binding(&subkey.key, &key.primary_key)
        .map_err(|e| format!("the subkey's back-signature is invalid: {e}"))?;
    if expired_at(subkey.key.created_at(), binding.key_expiration_time(), t) {
        return Err("the subkey had expired".into());
    }
    for revocation in subkey
        .signatures
        .iter()
        .filter(|s| s.typ() == Some(SignatureType::SubkeyRevocation))
    {
        if revocation
            .verify_subkey_binding(&key.primary_key, &subkey.key)
            .is_ok()
            && revokes_at(revocation, t)
        {
            return Err(format!(
                "the subkey is revoked ({})",
                revocation_reason(revocation)
            ));
        }
    }
    Ok(())
}

/// `2025-03-07T12:00:00Z` from Unix seconds (UTC, proleptic Gregorian).
pub fn format_time(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_flatcar_key_is_the_one_design_names() {
        let keyring = Keyring::flatcar();
        assert_eq!(
            keyring.fingerprints(),
            ["F88CFEDEFF29A5B4D9523864E25D9AED0593B34A"]
        );
        let current = keyring.keys[0]
            .public_subkeys
            .iter()
            .find(|s| {
                format!("{:X}", s.key.fingerprint()) == "52F145DFD00BBDCD928CBB5A32DA80F91EF52974"
            })
            .expect("current signing subkey");
        // Valid in 2026, not after its expiry (2027-03-08), not before its creation (2025-03-07).
        let at = |s: u32| Timestamp::from_secs(s);
        assert!(subkey_valid_at(&keyring.keys[0], current, at(1_780_000_000)).is_ok());
        assert!(subkey_valid_at(&keyring.keys[0], current, at(1_830_000_000)).is_err());
        assert!(subkey_valid_at(&keyring.keys[0], current, at(1_700_000_000)).is_err());
    }

    #[test]
    fn compromised_subkeys_are_refused_even_before_revocation() {
        let keyring = Keyring::flatcar();
        let first = keyring.keys[0]
            .public_subkeys
            .iter()
            .find(|s| {
                format!("{:X}", s.key.fingerprint()) == "1E100DD7A677A6F9A532C9F9B51DE377064D542D"
            })
            .unwrap();
        // 2018-03-01: inside its validity, before the 2018-03-14 "compromised" revocation.
        let why = subkey_valid_at(&keyring.keys[0], first, Timestamp::from_secs(1_519_862_400))
            .unwrap_err();
        assert!(why.contains("revoked"), "{why}");
    }

    #[test]
    fn formats_times() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(1_741_305_600), "2025-03-07T00:00:00Z");
        assert_eq!(format_time(951_782_400), "2000-02-29T00:00:00Z");
    }
}
