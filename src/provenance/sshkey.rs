//! SSH keys for signing: OpenSSH's private key file (`openssh-key-v1`, unencrypted Ed25519),
//! public key lines and `allowed_signers` files, and SSH signatures (`SSHSIG`), the format
//! `ssh-keygen -Y sign` writes and `ssh-keygen -Y verify` checks.
//!
//! Layouts (all integers big-endian; a "string" is a u32 length and that many bytes):
//! - private key file: PEM-like armor around `"openssh-key-v1\0"`, string cipher, string
//!   kdf, string kdf options, u32 key count (1), string public key blob, string private
//!   section = u32 check, u32 check (equal), string type, string public (32 bytes), string
//!   secret (64 bytes: seed then public), string comment, padding 1, 2, 3, ...;
//! - public key blob: string `ssh-ed25519`, string key (32 bytes);
//! - signature blob: `"SSHSIG"`, u32 version 1, string public key blob, string namespace,
//!   string reserved (empty), string hash algorithm (`sha512`), string signature (string
//!   `ssh-ed25519`, string 64 bytes); what is signed is `"SSHSIG"`, string namespace, string
//!   reserved, string hash algorithm, string SHA-512 of the message.

use base64::Engine;
use ed25519_dalek::{Signer as _, Verifier as _};
use sha2::{Digest, Sha256, Sha512};

const PRIVATE_BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";
const PRIVATE_END: &str = "-----END OPENSSH PRIVATE KEY-----";
const SIG_BEGIN: &str = "-----BEGIN SSH SIGNATURE-----";
const SIG_END: &str = "-----END SSH SIGNATURE-----";
const ED25519: &str = "ssh-ed25519";
/// The namespace kato-image's SSH signatures are made in (`ssh-keygen -Y verify -n`).
pub(crate) const NAMESPACE: &str = "kato-image";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SshKeyError {
    #[error("not an OpenSSH private key ({PRIVATE_BEGIN} ... {PRIVATE_END})")]
    NotPrivateKey,
    #[error(
        "the key is encrypted (cipher {0}); kato-image reads unencrypted SSH keys only: give it an OpenPGP key with --sign-passphrase-file, or a key kept in your CI's secret store"
    )]
    Encrypted(String),
    #[error("a {0} key; kato-image signs with ssh-ed25519 keys")]
    KeyType(String),
    #[error("malformed at byte {0}: {1}")]
    Malformed(usize, &'static str),
    #[error("not an SSH signature ({SIG_BEGIN} ... {SIG_END})")]
    NotSignature,
    #[error("the signature is for namespace {0:?}, not {NAMESPACE:?}")]
    Namespace(String),
    #[error("BAD signature: the data is not what was signed")]
    Bad,
}

/// Reads SSH wire-format values from a byte slice, refusing any length past its end.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], SshKeyError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(SshKeyError::Malformed(self.at, what))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, SshKeyError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self, what: &'static str) -> Result<&'a [u8], SshKeyError> {
        let len = self.u32(what)? as usize;
        self.take(len, what)
    }
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn unarmor(text: &str, begin: &str, end: &str) -> Option<Vec<u8>> {
    let start = text.find(begin)? + begin.len();
    let stop = start + text[start..].find(end)?;
    let body: String = text[start..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// An Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub key: [u8; 32],
}

impl PublicKey {
    /// The wire-format blob (`string "ssh-ed25519", string key`).
    pub fn blob(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_string(&mut out, ED25519.as_bytes());
        put_string(&mut out, &self.key);
        out
    }

    fn from_blob(blob: &[u8]) -> Result<PublicKey, SshKeyError> {
        let mut r = Reader::new(blob);
        let kind = r.string("key type")?;
        if kind != ED25519.as_bytes() {
            return Err(SshKeyError::KeyType(String::from_utf8_lossy(kind).into()));
        }
        let key = r.string("public key")?;
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| SshKeyError::Malformed(r.at, "an Ed25519 key has 32 bytes"))?;
        Ok(PublicKey { key })
    }

    /// `SHA256:` and the unpadded base64 of the blob's SHA-256, as `ssh-keygen -l` prints.
    pub(crate) fn fingerprint(&self) -> String {
        let hash = Sha256::digest(self.blob());
        format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(hash)
        )
    }

    /// The key of an `authorized_keys`-style line (`ssh-ed25519 BASE64 [comment]`), found
    /// after any principals or options before it.
    pub(crate) fn from_line(line: &str) -> Option<PublicKey> {
        let mut words = line.split_whitespace();
        while let Some(word) = words.next() {
            if word == ED25519 {
                let blob = base64::engine::general_purpose::STANDARD
                    .decode(words.next()?)
                    .ok()?;
                return PublicKey::from_blob(&blob).ok();
            }
        }
        None
    }

    /// Checks a raw Ed25519 signature over `data`.
    pub(crate) fn verify_raw(&self, data: &[u8], signature: &[u8]) -> Result<(), SshKeyError> {
        let key =
            ed25519_dalek::VerifyingKey::from_bytes(&self.key).map_err(|_| SshKeyError::Bad)?;
        let signature =
            ed25519_dalek::Signature::from_slice(signature).map_err(|_| SshKeyError::Bad)?;
        key.verify(data, &signature).map_err(|_| SshKeyError::Bad)
    }
}

/// An unencrypted Ed25519 private key from an OpenSSH key file.
pub struct PrivateKey {
    key: ed25519_dalek::SigningKey,
    pub public: PublicKey,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({})", self.public.fingerprint())
    }
}

impl PrivateKey {
    pub(crate) fn is_armored(text: &str) -> bool {
        text.contains(PRIVATE_BEGIN)
    }

    pub fn parse(text: &str) -> Result<PrivateKey, SshKeyError> {
        let bytes = unarmor(text, PRIVATE_BEGIN, PRIVATE_END).ok_or(SshKeyError::NotPrivateKey)?;
        let mut r = Reader::new(&bytes);
        if r.take(15, "magic")? != b"openssh-key-v1\0" {
            return Err(SshKeyError::NotPrivateKey);
        }
        let cipher = r.string("cipher name")?;
        if cipher != b"none" {
            return Err(SshKeyError::Encrypted(
                String::from_utf8_lossy(cipher).into(),
            ));
        }
        r.string("kdf name")?;
        r.string("kdf options")?;
        if r.u32("key count")? != 1 {
            return Err(SshKeyError::Malformed(r.at, "a key file with one key"));
        }
        let public = PublicKey::from_blob(r.string("public key")?)?;
        let mut private = Reader::new(r.string("private section")?);
        if private.u32("check")? != private.u32("check")? {
            return Err(SshKeyError::Malformed(r.at, "check numbers that agree"));
        }
        let kind = private.string("key type")?;
        if kind != ED25519.as_bytes() {
            return Err(SshKeyError::KeyType(String::from_utf8_lossy(kind).into()));
        }
        if private.string("public key")? != public.key {
            return Err(SshKeyError::Malformed(r.at, "the same public key twice"));
        }
        let secret = private.string("secret key")?;
        let seed: [u8; 32] = secret
            .get(..32)
            .and_then(|s| s.try_into().ok())
            .ok_or(SshKeyError::Malformed(r.at, "a 64-byte Ed25519 secret"))?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        if key.verifying_key().to_bytes() != public.key {
            return Err(SshKeyError::Malformed(
                r.at,
                "a secret that matches its public key",
            ));
        }
        Ok(PrivateKey { key, public })
    }

    /// A raw Ed25519 signature (64 bytes) over `data`.
    pub(crate) fn sign_raw(&self, data: &[u8]) -> Vec<u8> {
        self.key.sign(data).to_bytes().to_vec()
    }

    /// An armored SSH signature of `message` in [`NAMESPACE`].
    pub(crate) fn sshsig(&self, message: &[u8]) -> String {
        let signed = signed_data(NAMESPACE, Hash::Sha512, message);
        let mut sig = Vec::new();
        put_string(&mut sig, ED25519.as_bytes());
        put_string(&mut sig, &self.sign_raw(&signed));
        let mut blob = b"SSHSIG".to_vec();
        blob.extend_from_slice(&1u32.to_be_bytes());
        put_string(&mut blob, &self.public.blob());
        put_string(&mut blob, NAMESPACE.as_bytes());
        put_string(&mut blob, b"");
        put_string(&mut blob, b"sha512");
        put_string(&mut blob, &sig);
        let text = base64::engine::general_purpose::STANDARD.encode(blob);
        let mut out = format!("{SIG_BEGIN}\n");
        for chunk in text.as_bytes().chunks(70) {
            out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str(SIG_END);
        out.push('\n');
        out
    }
}

/// The message digests an SSH signature may be made over.
#[derive(Clone, Copy)]
enum Hash {
    Sha256,
    Sha512,
}

fn signed_data(namespace: &str, hash: Hash, message: &[u8]) -> Vec<u8> {
    let mut out = b"SSHSIG".to_vec();
    put_string(&mut out, namespace.as_bytes());
    put_string(&mut out, b"");
    match hash {
        Hash::Sha256 => {
            put_string(&mut out, b"sha256");
            put_string(&mut out, &Sha256::digest(message));
        }
        Hash::Sha512 => {
            put_string(&mut out, b"sha512");
            put_string(&mut out, &Sha512::digest(message));
        }
    }
    out
}

pub(crate) fn is_sshsig(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|t| t.contains(SIG_BEGIN))
}

/// Checks an armored SSH signature of `message`; returns the key that made it (the caller
/// decides whether that key is allowed).
pub fn verify_sshsig(armored: &str, message: &[u8]) -> Result<PublicKey, SshKeyError> {
    let blob = unarmor(armored, SIG_BEGIN, SIG_END).ok_or(SshKeyError::NotSignature)?;
    let mut r = Reader::new(&blob);
    // Version 0 is read as 1 is, as ssh-keygen reads it: only a newer one is refused.
    if r.take(6, "magic")? != b"SSHSIG" || r.u32("version")? > 1 {
        return Err(SshKeyError::NotSignature);
    }
    let public = PublicKey::from_blob(r.string("public key")?)?;
    let namespace = String::from_utf8_lossy(r.string("namespace")?).into_owned();
    if namespace != NAMESPACE {
        return Err(SshKeyError::Namespace(namespace));
    }
    r.string("reserved")?;
    let hash = r.string("hash algorithm")?;
    let hash = match hash {
        b"sha512" => Hash::Sha512,
        b"sha256" => Hash::Sha256,
        _ => {
            return Err(SshKeyError::Malformed(
                r.at,
                "hash algorithm sha256 or sha512",
            ));
        }
    };
    let mut sig = Reader::new(r.string("signature")?);
    if r.at != blob.len() {
        return Err(SshKeyError::Malformed(r.at, "nothing after the signature"));
    }
    if sig.string("signature type")? != ED25519.as_bytes() {
        return Err(SshKeyError::Malformed(r.at, "an ssh-ed25519 signature"));
    }
    let raw = sig.string("signature")?;
    public.verify_raw(&signed_data(NAMESPACE, hash, message), raw)?;
    Ok(public)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PrivateKey {
        let seed = [7u8; 32];
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let public = PublicKey {
            key: key.verifying_key().to_bytes(),
        };
        PrivateKey { key, public }
    }

    #[test]
    fn signatures_verify_and_refuse_other_data() {
        let key = key();
        let sig = key.sshsig(b"manifest");
        assert_eq!(verify_sshsig(&sig, b"manifest").unwrap(), key.public);
        assert_eq!(verify_sshsig(&sig, b"manifesT"), Err(SshKeyError::Bad));
        assert!(sig.lines().all(|l| l.len() <= 70 || l.starts_with("-----")));
    }

    #[test]
    fn truncated_blobs_are_refused_not_read_past() {
        let key = key();
        let blob = key.public.blob();
        for n in 0..blob.len() {
            assert!(PublicKey::from_blob(&blob[..n]).is_err());
        }
    }
}
