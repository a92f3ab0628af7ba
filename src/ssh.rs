//! SSH public key checks: a key is one line, `TYPE BASE64 [COMMENT]`, whose decoded blob
//! starts with the same key type, so that private keys, mangled keys and text smuggled in on
//! a second line are refused. `authorized_keys` options in front of a key (`command=...`,
//! `from=...`) give whoever holds the key a different machine than the profile shows, so
//! they are refused unless the profile allows them for that user.

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
    #[error("this entry holds {0} lines; give one key per entry")]
    Lines(usize),
    #[error("the key holds a control character")]
    Control,
    #[error(
        "the key starts with options (`{0}`); they change what the key may do, so they need `ssh_key_options: true` on the user"
    )]
    Options(String),
    #[error("`{0}` is not an authorized_keys option")]
    UnknownOption(String),
    #[error("the options in front of the key are not closed (an unmatched `\"`)")]
    Unclosed,
}

/// The options OpenSSH's `authorized_keys` knows (sshd(8), AUTHORIZED_KEYS FILE FORMAT).
const OPTIONS: &[&str] = &[
    "agent-forwarding",
    "cert-authority",
    "command",
    "environment",
    "expiry-time",
    "from",
    "no-agent-forwarding",
    "no-port-forwarding",
    "no-pty",
    "no-touch-required",
    "no-user-rc",
    "no-x11-forwarding",
    "permitlisten",
    "permitopen",
    "port-forwarding",
    "principals",
    "pty",
    "restrict",
    "tunnel",
    "user-rc",
    "verify-required",
    "x11-forwarding",
];

/// Checks one `ssh_authorized_keys` entry: one line (a final newline, as a YAML block
/// leaves, is dropped), no control characters, options in front only if `allow_options`.
/// Returns the line as it goes to the machine.
pub(crate) fn check_entry(entry: &str, allow_options: bool) -> Result<String, SshKeyError> {
    let line = entry.strip_suffix('\n').unwrap_or(entry);
    let lines = line.split('\n').count();
    if lines > 1 {
        return Err(SshKeyError::Lines(lines));
    }
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err(SshKeyError::Control);
    }
    let trimmed = line.trim();
    let first = trimmed.split_whitespace().next().unwrap_or("");
    if !first.is_empty() && !KEY_TYPES.contains(&first) && !trimmed.contains("PRIVATE KEY") {
        let (options, key) = split_options(trimmed)?;
        if !allow_options {
            return Err(SshKeyError::Options(options.to_string()));
        }
        check_public_key(key)?;
        return Ok(trimmed.to_string());
    }
    check_public_key(trimmed)?;
    Ok(trimmed.to_string())
}

/// `options key`: the options field (up to the first space outside quotes), each option
/// known, and the rest.
fn split_options(line: &str) -> Result<(&str, &str), SshKeyError> {
    let mut quoted = false;
    let mut escaped = false;
    let mut end = None;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ' ' | '\t' if !quoted => {
                end = Some(i);
                break;
            }
            _ => {}
        }
    }
    if quoted {
        return Err(SshKeyError::Unclosed);
    }
    let end = end.ok_or(SshKeyError::Empty)?;
    let (options, key) = (&line[..end], line[end..].trim_start());
    let mut rest = options;
    while !rest.is_empty() {
        let name_end = rest.find(['=', ',']).unwrap_or(rest.len());
        let name = &rest[..name_end];
        if !OPTIONS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(SshKeyError::UnknownOption(name.to_string()));
        }
        rest = &rest[name_end..];
        if let Some(value) = rest.strip_prefix('=') {
            // A quoted value, which may hold commas.
            let value = value.strip_prefix('"').ok_or(SshKeyError::Unclosed)?;
            let mut close = None;
            let mut escaped = false;
            for (i, c) in value.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => {
                        close = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            rest = &value[close.ok_or(SshKeyError::Unclosed)? + 1..];
        }
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Ok((options, key))
}

pub(crate) fn check_public_key(line: &str) -> Result<(), SshKeyError> {
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
    fn one_line_per_entry_and_options_only_when_allowed() {
        assert_eq!(
            check_entry(&format!("{GOOD}\n"), false),
            Ok(GOOD.to_string())
        );
        let smuggled = format!("{GOOD}\ncommand=\"rm -rf /\" not a key at all\n");
        assert_eq!(check_entry(&smuggled, false), Err(SshKeyError::Lines(2)));
        let restricted = format!("command=\"/usr/bin/backup, --quiet\",no-pty {GOOD}");
        assert!(matches!(
            check_entry(&restricted, false),
            Err(SshKeyError::Options(_))
        ));
        assert_eq!(check_entry(&restricted, true), Ok(restricted.clone()));
        assert!(matches!(
            check_entry(&format!("bogus-option {GOOD}"), true),
            Err(SshKeyError::UnknownOption(_))
        ));
        assert_eq!(
            check_entry(&format!("command=\"x {GOOD}"), true),
            Err(SshKeyError::Unclosed)
        );
        assert_eq!(
            check_entry(&format!("{GOOD}\u{1b}]0;owned\u{7}"), false),
            Err(SshKeyError::Control)
        );
        // Options in front of something that is not a key are still refused.
        assert!(check_entry("no-pty ssh-ed25519 AAAA", true).is_err());
    }

    #[test]
    fn base64_matches_known_vectors() {
        assert_eq!(decode_base64("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(decode_base64("Zm9vYg==").unwrap(), b"foob");
        assert_eq!(decode_base64("Zm9vYmE=").unwrap(), b"fooba");
        assert_eq!(decode_base64("Zm=vYmE="), None);
    }
}
