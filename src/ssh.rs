//! SSH public key checks: a key line must be `TYPE BASE64 [COMMENT]` whose decoded blob
//! starts with the same key type, so that private keys and mangled keys are refused.

const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SshKeyError {
    #[error("this is a private key; give the public key (the .pub file)")]
    PrivateKey,
    #[error(
        "`{0}` is not an SSH public key type (expected one of ssh-ed25519, ssh-rsa, ecdsa-sha2-*, sk-*)"
    )]
    UnknownType(String),
    #[error("the key data of this {0} key is not valid base64")]
    BadBase64(String),
    #[error("the key data says `{found}` but the line says `{declared}`")]
    TypeMismatch { declared: String, found: String },
    #[error("the key line is empty")]
    Empty,
}

pub fn check_public_key(line: &str) -> Result<(), SshKeyError> {
    let line = line.trim();
    if line.contains("PRIVATE KEY") {
        return Err(SshKeyError::PrivateKey);
    }
    let mut parts = line.split_whitespace();
    let declared = parts.next().ok_or(SshKeyError::Empty)?;
    if !KEY_TYPES.contains(&declared) {
        return Err(SshKeyError::UnknownType(declared.to_string()));
    }
    let data = parts
        .next()
        .ok_or_else(|| SshKeyError::BadBase64(declared.to_string()))?;
    let blob = decode_base64(data).ok_or_else(|| SshKeyError::BadBase64(declared.to_string()))?;
    let found = blob
        .get(..4)
        .map(|len| u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize)
        .and_then(|len| blob.get(4..4 + len))
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .ok_or_else(|| SshKeyError::BadBase64(declared.to_string()))?;
    if found != declared {
        return Err(SshKeyError::TypeMismatch {
            declared: declared.to_string(),
            found,
        });
    }
    Ok(())
}

/// Standard base64 with padding, as OpenSSH writes it.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes = text.as_bytes();
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (index, chunk) in bytes.chunks(4).enumerate() {
        let last = index == bytes.len() / 4 - 1;
        let padding = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if padding > 2 || (padding > 0 && !last) {
            return None;
        }
        let mut word = 0u32;
        for &c in &chunk[..4 - padding] {
            word = (word << 6) | value(c)?;
        }
        word <<= 6 * padding as u32;
        let decoded = word.to_be_bytes();
        out.extend_from_slice(&decoded[1..4 - padding]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICeqYq3o6EwZpjNghiYqZZUXR+tcJ8ybtPzLXmGECI7k me@host";

    #[test]
    fn accepts_a_real_key() {
        assert_eq!(check_public_key(GOOD), Ok(()));
    }

    #[test]
    fn refuses_mismatched_type_and_junk() {
        let swapped = GOOD.replacen("ssh-ed25519", "ssh-rsa", 1);
        assert!(matches!(
            check_public_key(&swapped),
            Err(SshKeyError::TypeMismatch { .. })
        ));
        assert!(matches!(
            check_public_key("ssh-ed25519 not*base64"),
            Err(SshKeyError::BadBase64(_))
        ));
        assert_eq!(
            check_public_key("-----BEGIN OPENSSH PRIVATE KEY-----"),
            Err(SshKeyError::PrivateKey)
        );
        assert!(matches!(
            check_public_key("hello world"),
            Err(SshKeyError::UnknownType(_))
        ));
    }

    #[test]
    fn base64_matches_known_vectors() {
        assert_eq!(decode_base64("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(decode_base64("Zm9vYg==").unwrap(), b"foob");
        assert_eq!(decode_base64("Zm9vYmE=").unwrap(), b"fooba");
        assert_eq!(decode_base64("Zm=vYmE="), None);
    }
}
