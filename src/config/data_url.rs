//! RFC 2397 `data:` URLs, the way Ignition embeds file contents.

use base64::Engine;

/// Text as percent-encoding (everything but RFC 3986 unreserved characters), which keeps it
/// readable in the config; base64 (`data:;base64,`) when that is shorter, as it is for binary
/// files, whose bytes percent-encoding triples. Ignition reads both.
pub fn encode(contents: &[u8]) -> String {
    let percent = crate::url::percent_encode(contents);
    let base64_len = contents.len().div_ceil(3) * 4 + ";base64".len();
    if base64_len < percent.len() {
        format!(
            "data:;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(contents)
        )
    } else {
        format!("data:,{percent}")
    }
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

    #[test]
    fn binary_is_base64_when_that_is_shorter() {
        let binary: Vec<u8> = (0..=255).collect();
        let url = encode(&binary);
        assert!(url.starts_with("data:;base64,"), "{url}");
        assert_eq!(url.len(), "data:;base64,".len() + 344);
        // Text stays readable, with a few escapes.
        assert_eq!(
            encode(b"[Unit]\nA=b c\n"),
            "data:,%5BUnit%5D%0AA%3Db%20c%0A"
        );
    }
}
