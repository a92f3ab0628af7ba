//! Signing a build's provenance offline, with a key its users already have: an OpenPGP
//! secret key (as `gpg --export-secret-keys --armor` writes it, unlocked with a passphrase
//! from a file or an environment variable) or an unencrypted OpenSSH Ed25519 key.
//!
//! Each role gets two signatures: one in the DSSE envelope over the statement, and a
//! detached one over the manifest (`<role>.manifest.json.sig`), so that `gpg --verify` and
//! `ssh-keygen -Y verify` check the manifest unchanged. OpenPGP signatures carry the build's
//! timestamp as their creation time (or the key's, if the key is newer), so that an Ed25519
//! key signs the same inputs with the same bytes.

use std::path::{Path, PathBuf};

use pgp::composed::{Deserializable, DetachedSignature, SignedSecretKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{Subpacket, SubpacketData};
use pgp::ser::Serialize;
use pgp::types::{KeyDetails, KeyVersion, Password, Timestamp};

use super::sshkey::PrivateKey;

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("{what}: {source}")]
    Read {
        what: &'static str,
        source: crate::input::InputError,
    },
    #[error("{}: {why}", path.display())]
    Key { path: PathBuf, why: String },
    #[error("cannot sign with the OpenPGP key {fingerprint}: {why}")]
    Sign { fingerprint: String, why: String },
}

/// The largest signing key file read (an armored RSA-4096 key with its subkeys is ~15 KiB).
pub(crate) const MAX_KEY_FILE: u64 = 1 << 20;
/// The largest passphrase file read.
pub(crate) const MAX_PASSPHRASE_FILE: u64 = 64 << 10;

/// Where an OpenPGP key's passphrase comes from; never from the command line itself, where
/// other users and shell histories would see it.
#[derive(Debug, Clone)]
pub enum Passphrase {
    None,
    File(PathBuf),
    /// The name of an environment variable.
    Env(String),
}

pub enum Signer {
    OpenPgp {
        key: Box<SignedSecretKey>,
        password: Password,
        fingerprint: String,
    },
    Ssh(PrivateKey),
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", self.keyid())
    }
}

/// Which file a signature goes in: a detached signature beside the manifest.
pub(crate) fn manifest_signature_path(manifest: &Path) -> PathBuf {
    let mut name = manifest.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

impl Signer {
    /// Reads the key and proves it can sign (so a wrong passphrase stops the build before
    /// anything is written).
    pub fn load(path: &Path, passphrase: &Passphrase) -> Result<Signer, SignError> {
        let key_error = |why: String| SignError::Key {
            path: path.to_path_buf(),
            why,
        };
        let key_file = |source| SignError::Read {
            what: "the signing key (--sign-key)",
            source,
        };
        let text = crate::input::read_text(path, MAX_KEY_FILE, "signing key").map_err(key_file)?;
        let signer = if PrivateKey::is_armored(&text) {
            if !matches!(passphrase, Passphrase::None) {
                return Err(key_error(
                    "a passphrase was given, but SSH keys are read unencrypted only".into(),
                ));
            }
            Signer::Ssh(PrivateKey::parse(&text).map_err(|e| key_error(e.to_string()))?)
        } else if text.contains("-----BEGIN PGP PRIVATE KEY BLOCK-----") {
            let (key, _) = SignedSecretKey::from_string(&text)
                .map_err(|e| key_error(format!("not an OpenPGP secret key: {e}")))?;
            let password = match passphrase {
                Passphrase::None => Password::empty(),
                Passphrase::File(file) => {
                    let text =
                        crate::input::read_text(file, MAX_PASSPHRASE_FILE, "passphrase file")
                            .map_err(|source| SignError::Read {
                                what: "the passphrase file (--sign-passphrase-file)",
                                source,
                            })?;
                    // The first line is the passphrase; what follows is not part of it.
                    Password::from(text.lines().next().unwrap_or("").trim_end_matches('\r'))
                }
                Passphrase::Env(name) => Password::from(std::env::var(name).map_err(|_| {
                    key_error(format!("the passphrase variable {name} is not set"))
                })?),
            };
            let fingerprint = format!("{:X}", key.fingerprint());
            if key.primary_key.secret_params().is_encrypted()
                && matches!(passphrase, Passphrase::None)
            {
                return Err(key_error(format!(
                    "the OpenPGP key {fingerprint} is locked by a passphrase: give it with --sign-passphrase-file FILE or --sign-passphrase-env VAR"
                )));
            }
            Signer::OpenPgp {
                key: Box::new(key),
                password,
                fingerprint,
            }
        } else {
            return Err(key_error(
                "not a signing key: expected an OpenPGP secret key (-----BEGIN PGP PRIVATE KEY BLOCK-----) or an OpenSSH private key (-----BEGIN OPENSSH PRIVATE KEY-----)".into(),
            ));
        };
        signer.signature(b"kato-image: can this key sign?", 0)?;
        Ok(signer)
    }

    /// The key ID DSSE records: an OpenPGP fingerprint, or the SSH key's `SHA256:...`.
    pub fn keyid(&self) -> String {
        match self {
            Signer::OpenPgp { fingerprint, .. } => fingerprint.clone(),
            Signer::Ssh(key) => key.public.fingerprint(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Signer::OpenPgp { .. } => "OpenPGP",
            Signer::Ssh(_) => "SSH",
        }
    }

    /// The signature DSSE carries: an OpenPGP signature packet, or a raw Ed25519 signature.
    pub fn signature(&self, data: &[u8], created: i64) -> Result<Vec<u8>, SignError> {
        match self {
            Signer::Ssh(key) => Ok(key.sign_raw(data)),
            Signer::OpenPgp { .. } => {
                self.openpgp(data, created)?
                    .to_bytes()
                    .map_err(|e| SignError::Sign {
                        fingerprint: self.keyid(),
                        why: e.to_string(),
                    })
            }
        }
    }

    /// The detached signature of a file: binary OpenPGP (as Flatcar's `.sig` files), or an
    /// armored SSH signature in namespace `kato-image`.
    pub fn detached(&self, data: &[u8], created: i64) -> Result<Vec<u8>, SignError> {
        match self {
            Signer::Ssh(key) => Ok(key.sshsig(data).into_bytes()),
            Signer::OpenPgp { .. } => self.signature(data, created),
        }
    }

    fn openpgp(&self, data: &[u8], created: i64) -> Result<DetachedSignature, SignError> {
        let Signer::OpenPgp {
            key,
            password,
            fingerprint,
        } = self
        else {
            unreachable!("called for OpenPGP keys only")
        };
        let error = |e: pgp::errors::Error| SignError::Sign {
            fingerprint: fingerprint.clone(),
            why: in_words(&e.to_string()),
        };
        let primary = &key.primary_key;
        // A signature older than its key does not count (gpg: "Time conflict"): a key made
        // after the build's inputs signs at its own creation time, still the same each time.
        let created =
            (created.clamp(0, i64::from(u32::MAX)) as u32).max(primary.created_at().as_secs());
        let created = Timestamp::from_secs(created);
        let hashed = vec![
            Subpacket::regular(SubpacketData::IssuerFingerprint(primary.fingerprint()))
                .map_err(error)?,
            Subpacket::regular(SubpacketData::SignatureCreationTime(created)).map_err(error)?,
        ];
        let mut unhashed = Vec::new();
        if primary.version() <= KeyVersion::V4 {
            unhashed.push(
                Subpacket::regular(SubpacketData::IssuerKeyId(primary.legacy_key_id()))
                    .map_err(error)?,
            );
        }
        DetachedSignature::sign_binary_data_with_subpackets(
            rand::thread_rng(),
            primary,
            password,
            HashAlgorithm::Sha256,
            data,
            pgp::composed::SubpacketConfig::UserDefined { hashed, unhashed },
        )
        .map_err(error)
    }
}

/// rPGP's words for a locked key, in the user's.
fn in_words(message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    if ["password", "decrypt", "invalid input", "checksum"]
        .iter()
        .any(|w| lower.contains(w))
    {
        return "the key is locked and the passphrase does not open it (give the right one with --sign-passphrase-file or --sign-passphrase-env)".into();
    }
    message.to_string()
}
