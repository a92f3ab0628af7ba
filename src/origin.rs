//! Where a value came from, so that errors can point at the file, line and column.

use std::fmt;
use std::path::{Path, PathBuf};

/// A position in a source file. Line and column are 1-based; 0 means unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: u64,
    pub(crate) column: u64,
}

impl Origin {
    pub fn new(file: impl Into<PathBuf>, line: u64, column: u64) -> Self {
        Origin {
            file: file.into(),
            line,
            column,
        }
    }

    /// The whole file, when no finer position is known.
    pub fn file(file: &Path) -> Self {
        Origin::new(file, 0, 0)
    }

    pub(crate) fn from_location(file: &Path, location: serde_saphyr::Location) -> Self {
        Origin::new(file, location.line(), location.column())
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (0, _) => write!(f, "{}", self.file.display()),
            (line, 0) => write!(f, "{}:{line}", self.file.display()),
            (line, column) => write!(f, "{}:{line}:{column}", self.file.display()),
        }
    }
}

/// An error and its sources on one line, each said once: a library's layers often repeat
/// the one below them, and its `Debug` form is no message for a user.
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text.replace('\n', " ")
}

/// Text from an input, quoted for a message: control characters (NUL, escape sequences that
/// would clear a terminal or set its title) are shown escaped, never sent raw.
pub fn quoted(text: &str) -> String {
    format!("{text:?}")
}

/// Text from an input shown unquoted in a message, its control characters escaped.
pub fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            super::quoted("a\u{1b}]0;x\u{7}\0"),
            r#""a\u{1b}]0;x\u{7}\0""#
        );
        assert_eq!(super::printable("ró\u{1b}[2J"), r"ró\u{1b}[2J");
    }
}
