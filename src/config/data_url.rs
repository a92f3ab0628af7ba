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

/// The bytes of a `data:` URL (`data:[MEDIATYPE][;base64],DATA`), percent-escapes
/// decoded first, as Ignition reads them. The error says what is wrong, in a few words.
pub fn decode(url: &str) -> Result<Vec<u8>, String> {
    let rest = url
        .strip_prefix("data:")
        .ok_or("a data URL starts with `data:`")?;
    let (header, data) = rest
        .split_once(',')
        .ok_or("a data URL has a `,` before its data")?;
    let bytes = percent_decode(data)?;
    if header.ends_with(";base64") {
        let text: Vec<u8> = bytes
            .into_iter()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| "the data URL says base64, but its data is not base64".to_string())
    } else {
        Ok(bytes)
    }
}

fn percent_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes().enumerate();
    while let Some((at, b)) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hex = |x: Option<(usize, u8)>| x.and_then(|(_, c)| (c as char).to_digit(16));
        match (hex(bytes.next()), hex(bytes.next())) {
            (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
            _ => {
                return Err(format!(
                    "the data URL has a `%` not followed by two hex digits at character {at} of its data"
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{decode, encode};

    #[test]
    fn decodes_what_it_encodes_and_what_butane_writes() {
        for bytes in [
            &b"a b\n"[..],
            &[0, 255],
            b"",
            &(0..=255).collect::<Vec<u8>>(),
        ] {
            assert_eq!(decode(&encode(bytes)).unwrap(), bytes);
        }
        assert_eq!(
            decode("data:text/plain;charset=utf-8;base64,aGk=").unwrap(),
            b"hi"
        );
        assert_eq!(decode("data:,caf%C3%A9").unwrap(), "café".as_bytes());
        assert!(decode("data:,%4").unwrap_err().contains("hex digits"));
        assert!(
            decode("data:;base64,@@@")
                .unwrap_err()
                .contains("not base64")
        );
        assert!(decode("https://x").is_err());
    }

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
