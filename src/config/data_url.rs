//! RFC 2397 `data:` URLs, the way Ignition embeds file contents.

/// Percent-encodes everything but RFC 3986 unreserved characters, so the URL is valid whatever
/// the bytes are and stays readable for text.
pub fn encode(contents: &[u8]) -> String {
    let mut url = String::with_capacity(6 + contents.len() * 3 / 2);
    url.push_str("data:,");
    for &byte in contents {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            url.push(byte as char);
        } else {
            url.push_str(&format!("%{byte:02X}"));
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn encodes_reserved_and_binary_bytes() {
        assert_eq!(encode(b"a b\n"), "data:,a%20b%0A");
        assert_eq!(encode(&[0, 255]), "data:,%00%FF");
        assert_eq!(encode(b""), "data:,");
    }
}
