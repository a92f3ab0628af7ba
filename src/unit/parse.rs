//! systemd unit file syntax: `[Section]` headers, `Key=Value` lines, `#`/`;` comments, and
//! lines continued with a trailing backslash.

/// One `Key=Value` assignment, with the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub line: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub line: u64,
    pub entries: Vec<Entry>,
}

/// A syntax error at a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: u64,
    pub message: String,
}

/// A NUL byte in unit text: systemd reads each line only up to it, so what follows would be
/// in the file but not in effect.
pub(crate) fn nul_byte(text: &str) -> Option<SyntaxError> {
    let at = text.find('\0')?;
    Some(SyntaxError {
        line: text[..at].matches('\n').count() as u64 + 1,
        message:
            "a NUL byte: systemd reads the line only up to it, and what follows it would hide there"
                .into(),
    })
}

pub fn parse(text: &str) -> Result<Vec<Section>, SyntaxError> {
    if let Some(error) = nul_byte(text) {
        return Err(error);
    }
    let mut sections: Vec<Section> = Vec::new();
    let mut lines = text.lines().enumerate().map(|(i, l)| (i as u64 + 1, l));
    while let Some((number, raw)) = lines.next() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest.strip_suffix(']').ok_or_else(|| SyntaxError {
                line: number,
                message: format!("section header {line:?} does not end with `]`"),
            })?;
            if name.is_empty() || name.contains(['[', ']']) || name.chars().any(char::is_control) {
                return Err(SyntaxError {
                    line: number,
                    message: format!("invalid section name {name:?}"),
                });
            }
            sections.push(Section {
                name: name.to_string(),
                line: number,
                entries: Vec::new(),
            });
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(SyntaxError {
                line: number,
                message: format!("expected `Key=Value`, `[Section]` or a comment, found {line:?}"),
            });
        };
        let key = key.trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(SyntaxError {
                line: number,
                message: format!("invalid key {key:?}"),
            });
        }
        let mut value = value.trim().to_string();
        while value.ends_with('\\') {
            value.pop();
            // Comment lines inside a continuation are skipped, as systemd does.
            let next =
                lines.find(|(_, l)| !matches!(l.trim_start().chars().next(), Some('#' | ';')));
            match next {
                Some((_, continued)) => {
                    value.push(' ');
                    value.push_str(continued.trim());
                }
                None => {
                    return Err(SyntaxError {
                        line: number,
                        message: format!("`{key}=` ends with `\\` but no line follows"),
                    });
                }
            }
        }
        let section = sections.last_mut().ok_or_else(|| SyntaxError {
            line: number,
            message: format!("`{key}=` comes before any [Section] header"),
        })?;
        section.entries.push(Entry {
            key: key.to_string(),
            value: value.trim().to_string(),
            line: number,
        });
    }
    if sections.is_empty() {
        return Err(SyntaxError {
            line: 1,
            message: "no [Section] in the file".into(),
        });
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_continuations_and_skips_comments() {
        let sections =
            parse("# c\n[Service]\nExecStart=/bin/a \\\n  # note\n  -b\nUser=x\n").unwrap();
        assert_eq!(sections.len(), 1);
        assert_eq!(sections[0].entries[0].value, "/bin/a  -b");
        assert_eq!(sections[0].entries[1].line, 6);
    }

    #[test]
    fn refuses_what_systemd_refuses() {
        assert_eq!(parse("Foo=bar\n").unwrap_err().line, 1);
        assert_eq!(parse("[Unit]\nnot an assignment\n").unwrap_err().line, 2);
        assert!(parse("[Unit\n").is_err());
        assert!(parse("[Unit]\nExecStart=a \\\n").is_err());
        assert!(parse("").is_err());
    }
}
