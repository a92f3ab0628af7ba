//! Percent-encoding as URLs and forms need it: every byte but RFC 3986's unreserved
//! characters (letters, digits, `-`, `.`, `_`, `~`) becomes `%XX`.

pub(crate) fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3 / 2);
    for &byte in bytes {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::percent_encode;

    #[test]
    fn keeps_only_unreserved_characters() {
        assert_eq!(percent_encode(b"a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(percent_encode(b"a b/c:d"), "a%20b%2Fc%3Ad");
        assert_eq!(percent_encode(&[0, 255]), "%00%FF");
    }
}
