//! Parser messages in the words of whoever wrote the input. serde describes values in its own
//! data model ("a sequence", "struct Entry", "u32") and the YAML parser in its events ("expected
//! sequence start"); a profile writer thinks in lists, maps, text and numbers, and a JSON
//! writer in arrays' and objects' terms. Every message that quotes a parser goes through here.

use std::fmt;

/// The notation an input was written in, which decides what a map is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Notation {
    Yaml,
    Json,
}

impl Notation {
    fn map(self) -> &'static str {
        match self {
            Notation::Yaml => "a map",
            Notation::Json => "an object",
        }
    }

    fn list(self) -> &'static str {
        match self {
            Notation::Yaml => "a list",
            Notation::Json => "an array",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Notation::Yaml => "text",
            Notation::Json => "a string",
        }
    }
}

/// A parser's message (without its position) in the input writer's words, with control
/// characters from the input escaped.
pub(crate) fn in_words(message: &str, notation: Notation) -> String {
    crate::origin::printable(&reworded(message.trim(), notation))
}

fn reworded(message: &str, notation: Notation) -> String {
    let shape = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "));
    // The found part may quote input that holds ", expected "; the expected part (a type's
    // name or our own words) never does, so the last one is the split.
    if let Some((found, expected)) = shape.and_then(|rest| rest.rsplit_once(", expected ")) {
        return format!(
            "expected {}, found {}",
            expected_words(expected, notation),
            found_words(found, notation)
        );
    }
    if let Some(rest) = message.strip_prefix("invalid length ")
        && let Some((count, expected)) = rest.split_once(", expected ")
    {
        let items = if count == "1" { "item" } else { "items" };
        return format!(
            "expected {}, found {count} {items}",
            expected_words(expected, notation)
        );
    }
    if message.starts_with("data did not match any variant of untagged enum") {
        return "this is none of the forms accepted here".into();
    }
    if message.starts_with("invalid boolean") {
        return "expected true or false".into();
    }
    if let Some(kind) = message.strip_prefix("invalid ")
        && let Some(number) = number_words(kind)
    {
        return format!("expected {number}");
    }
    if let Some(inside) = message.strip_prefix("EOF while parsing ") {
        return match inside {
            "a value" => "the document ends where a value was expected".into(),
            "a list" => format!("the document ends inside {}", notation.list()),
            inside => format!("the document ends inside {inside}"),
        };
    }
    match message {
        "expected string scalar" => format!(
            "expected {}, not {} or {}",
            notation.text(),
            notation.list(),
            notation.map()
        ),
        "expected sequence start" => format!("expected {}", notation.list()),
        "expected mapping start" => format!("expected {}", notation.map()),
        "expected ident" => "expected true, false or null".into(),
        "expected value" => "expected a value (a string, number, array or object)".into(),
        "trailing characters" => "more follows the end of the document".into(),
        "recursion limit exceeded" => "arrays or objects are nested too deeply".into(),
        other => other.to_string(),
    }
}

/// What serde says it expected, which is either a type of its data model or, from our own
/// `expecting`, already in words.
fn expected_words(expected: &str, notation: Notation) -> String {
    if let Some(number) = number_words(expected) {
        return number;
    }
    if expected.starts_with("struct ") || expected == "a map" {
        return notation.map().into();
    }
    if let Some(size) = expected.strip_prefix("a tuple of size ") {
        return format!("{} of {size}", notation.list());
    }
    match expected {
        "a sequence" => notation.list().into(),
        "a string" | "a borrowed string" => notation.text().into(),
        "a boolean" => "true or false".into(),
        "a character" => "one character".into(),
        "unit" => "null".into(),
        "option" => "a value".into(),
        other => other.into(),
    }
}

/// What serde says it found: `serde::de::Unexpected`'s wording.
fn found_words(found: &str, notation: Notation) -> String {
    let quoted = |prefix: &str| {
        found
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('`'))
            .and_then(|rest| rest.strip_suffix('`'))
            .map(str::to_string)
    };
    if let Some(value) = quoted("integer ")
        .or_else(|| quoted("floating point "))
        .or_else(|| quoted("boolean "))
    {
        return value;
    }
    if let Some(value) = quoted("character ") {
        return format!("{value:?}");
    }
    if let Some(text) = found.strip_prefix("string ") {
        return text.to_string();
    }
    match found {
        "sequence" => notation.list().into(),
        "map" => notation.map().into(),
        "unit value" => "null".into(),
        "Option value" => "a value".into(),
        "byte array" => "bytes".into(),
        other => other.into(),
    }
}

/// serde's and the YAML parser's names of Rust's number types, as the range a user may write.
fn number_words(kind: &str) -> Option<String> {
    let range = |max: u64| format!("a whole number from 0 to {max}");
    Some(match kind {
        "u8" => range(u8::MAX.into()),
        "u16" => range(u16::MAX.into()),
        "u32" => range(u32::MAX.into()),
        "u64" | "usize" => range(u64::MAX),
        "i8" | "i16" | "i32" | "i64" | "isize" | "integer" => "a whole number".into(),
        "f32" | "f64" | "floating point" => "a number".into(),
        _ => return None,
    })
}

/// A JSON document that did not parse, or did not have the shape we read: where (1-based; 0
/// when the fault is in the shape of a value read as a whole) and what, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonFault {
    pub line: usize,
    pub(crate) column: usize,
    pub what: String,
}

impl From<serde_json::Error> for JsonFault {
    fn from(error: serde_json::Error) -> Self {
        let text = error.to_string();
        // serde_json appends the position it also gives as numbers.
        let message = match text.rfind(" at line ") {
            Some(cut) if error.line() > 0 => &text[..cut],
            _ => &text,
        };
        JsonFault {
            line: error.line(),
            column: error.column(),
            what: in_words(message, Notation::Json),
        }
    }
}

impl fmt::Display for JsonFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (0, _) => f.write_str(&self.what),
            (line, 0) => write!(f, "line {line}: {}", self.what),
            (line, column) => write!(f, "line {line}, column {column}: {}", self.what),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Entry {
        #[serde(rename = "Config")]
        config: String,
        count: Option<u32>,
        tags: Option<Vec<String>>,
        flag: Option<bool>,
    }

    fn json_fault(text: &str) -> String {
        serde_json::from_str::<Vec<Entry>>(text)
            .map(|_| ())
            .map_err(|e| JsonFault::from(e).to_string())
            .unwrap_err()
    }

    /// Every message a user could see for a JSON document of the wrong shape, with the words
    /// of serde's data model and of Rust's types gone.
    #[test]
    fn json_faults_speak_of_arrays_objects_and_numbers() {
        for (text, expected) in [
            (
                r#"{"Config":"x"}"#,
                "line 1: expected an array, found an object",
            ),
            ("[5]", "line 1, column 2: expected an object, found 5"),
            (
                r#"[{"Config":5}]"#,
                "line 1, column 12: expected a string, found 5",
            ),
            (
                r#"[{"Config":"x","count":-1}]"#,
                "expected a whole number from 0 to 4294967295, found -1",
            ),
            (r#"[{"Config":"x","count":"7"}]"#, "found \"7\""),
            (
                r#"[{"Config":"x","tags":"a"}]"#,
                "expected an array, found \"a\"",
            ),
            (
                r#"[{"Config":"x","flag":1}]"#,
                "expected true or false, found 1",
            ),
            (r#"[{"Config":null}]"#, "expected a string, found null"),
            (r#"[{"Confg":"x"}]"#, "missing field `Config`"),
            ("[", "the document ends inside an array"),
            ("[{", "the document ends inside an object"),
            ("xyz", "expected a value"),
            ("[] x", "more follows the end of the document"),
            ("[tru]", "expected true, false or null"),
        ] {
            let fault = json_fault(text);
            assert!(fault.contains(expected), "{text}: {fault}");
            for word in ["sequence", "struct", "u32", "map", "EOF", "ident"] {
                assert!(!fault.contains(word), "{text}: {fault}");
            }
        }
    }

    #[test]
    fn control_characters_in_quoted_input_are_escaped() {
        let fault = json_fault("[{\"\u{1b}[2J\":1,\"Config\":\"x\"}]");
        assert!(!fault.contains('\u{1b}'), "{fault}");
    }

    #[test]
    fn our_own_expectations_pass_unchanged() {
        assert_eq!(
            in_words(
                "invalid type: sequence, expected a unit name such as a.service",
                Notation::Yaml
            ),
            "expected a unit name such as a.service, found a list"
        );
        assert_eq!(
            in_words("invalid u32", Notation::Yaml),
            "expected a whole number from 0 to 4294967295"
        );
        assert_eq!(
            in_words("unknown field `x`, expected one of a, b", Notation::Yaml),
            "unknown field `x`, expected one of a, b"
        );
    }
}
