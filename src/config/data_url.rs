//! RFC 2397 `data:` URLs, the way Ignition embeds file contents.

/// Percent-encodes everything but RFC 3986 unreserved characters, so the URL is valid whatever
/// the bytes are and stays readable for text.
pub fn encode(contents: &[u8]) -> String {
    format!("data:,{}", crate::url::percent_encode(contents))
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
