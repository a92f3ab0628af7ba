//! Flatcar's `.DIGESTS` files: sections headed `# MD5 HASH`, `# SHA1 HASH`, `# SHA512 HASH`,
//! each followed by `<hex>  <file name>` lines.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestsError {
    #[error("{name}: line {line}: expected `<hex digest>  <file name>`, found {text:?}")]
    Syntax {
        name: String,
        line: usize,
        text: String,
    },
    #[error("{name}: no SHA512 digest for {file}")]
    Missing { name: String, file: String },
    #[error("{name}: two different SHA512 digests for {file}")]
    Conflict { name: String, file: String },
}

/// The lower-case hex SHA-512 of `file` in a DIGESTS text called `name`.
pub fn sha512_for(text: &str, file: &str, name: &str) -> Result<String, DigestsError> {
    let mut section = String::new();
    let mut found: Option<String> = None;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix('#') {
            section = header.trim().to_ascii_uppercase();
            continue;
        }
        let syntax = || DigestsError::Syntax {
            name: name.to_string(),
            line: index + 1,
            text: line.to_string(),
        };
        let (digest, entry) = line.split_once(char::is_whitespace).ok_or_else(syntax)?;
        let entry = entry.trim().trim_start_matches('*');
        if digest.is_empty() || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(syntax());
        }
        if section == "SHA512 HASH" && entry.rsplit('/').next() == Some(file) {
            if digest.len() != 128 {
                return Err(syntax());
            }
            let digest = digest.to_ascii_lowercase();
            if found.as_ref().is_some_and(|f| *f != digest) {
                return Err(DigestsError::Conflict {
                    name: name.to_string(),
                    file: file.to_string(),
                });
            }
            found = Some(digest);
        }
    }
    found.ok_or_else(|| DigestsError::Missing {
        name: name.to_string(),
        file: file.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_sha512_line_among_other_sections() {
        let sha512 = "ab".repeat(64);
        let text = format!(
            "# MD5 HASH\n0123456789abcdef0123456789abcdef  img.bin.bz2\n# SHA1 HASH\n{}  img.bin.bz2\n# SHA512 HASH\n{}  img.bin.bz2\n{}  other\n",
            "cd".repeat(20),
            sha512.to_uppercase(),
            "ef".repeat(64)
        );
        assert_eq!(sha512_for(&text, "img.bin.bz2", "D"), Ok(sha512));
        assert!(matches!(
            sha512_for(&text, "nope", "D"),
            Err(DigestsError::Missing { .. })
        ));
        assert!(matches!(
            sha512_for("# SHA512 HASH\nzz  img\n", "img", "D"),
            Err(DigestsError::Syntax { line: 2, .. })
        ));
    }
}
