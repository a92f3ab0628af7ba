//! An extension's `extension-release` file and the rule `systemd-sysext` applies to it before
//! it merges an image: the same `KEY=VALUE` format as os-release, compared with the host's
//! os-release (systemd's `extension_release_validate`, as in 257.13 and 262).
//!
//! Flatcar's os-release says `ID=flatcar`, `ID_LIKE=coreos`, `VERSION_ID=<the release>` and
//! `SYSEXT_LEVEL=1.0` (flatcar/scripts `build_library/set_lsb_release`). In systemd's order:
//! a `SYSEXT_SCOPE` must include `system` (unset means `system portable`); an `ARCHITECTURE`
//! other than `_any` must be the machine's; `ID` must be set, and `_any` merges anywhere;
//! otherwise it must be the host's `ID` or a word of its `ID_LIKE`; then, when both sides
//! set `SYSEXT_LEVEL`, the levels must be equal, and when the extension sets none, its
//! `VERSION_ID` must be the host's.

use std::collections::BTreeMap;

use serde::Serialize;

/// Larger than this is no extension-release file.
pub const RELEASE_MAX: u64 = 64 << 10;

/// The fields of an extension-release file, in the order they were written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtensionRelease {
    pub fields: BTreeMap<String, String>,
}

/// The host an extension is meant for: a Flatcar release on a board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host<'a> {
    pub version_id: &'a str,
    /// systemd's name for the board's architecture: `x86-64` or `arm64`.
    pub architecture: &'a str,
}

/// What every Flatcar release's os-release says besides its version.
const HOST_ID: &str = "flatcar";
const HOST_ID_LIKE: &[&str] = &["coreos"];
const HOST_SYSEXT_LEVEL: &str = "1.0";

impl ExtensionRelease {
    /// Parses os-release syntax: `KEY=VALUE` lines, `#` comments, values bare or quoted with
    /// `"` (backslash escapes `\"`, `\\`, `` \` ``, `\$`) or `'`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut fields = BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("line {}: expected KEY=VALUE", number + 1))?;
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!(
                    "line {}: expected a key of letters, digits and _",
                    number + 1
                ));
            }
            let value = unquote(value).ok_or_else(|| {
                format!("line {}: the quotes of {key} are not closed", number + 1)
            })?;
            fields.insert(key.to_string(), value);
        }
        Ok(ExtensionRelease { fields })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Why systemd-sysext would not merge this extension on `host`, if it would not.
    pub fn refusal(&self, host: &Host) -> Option<String> {
        let scope = self.get("SYSEXT_SCOPE").unwrap_or("system portable");
        if !scope.split_whitespace().any(|s| s == "system") {
            return Some(format!(
                "SYSEXT_SCOPE={scope}, without `system`: it is not for a booted machine"
            ));
        }
        if let Some(arch) = self.get("ARCHITECTURE")
            && arch != "_any"
            && arch != host.architecture
        {
            return Some(format!(
                "ARCHITECTURE={arch}, but the machine is {}",
                host.architecture
            ));
        }
        let id = match self.get("ID") {
            None => return Some("it sets no ID (systemd-sysext needs one)".into()),
            Some("_any") => return None,
            Some(id) => id,
        };
        if id != HOST_ID && !HOST_ID_LIKE.contains(&id) {
            return Some(format!(
                "ID={id}, where Flatcar merges only ID=flatcar, ID=coreos (its ID_LIKE) or ID=_any"
            ));
        }
        match self.get("SYSEXT_LEVEL") {
            Some(level) if level == HOST_SYSEXT_LEVEL => None,
            Some(level) => Some(format!(
                "SYSEXT_LEVEL={level}, but Flatcar's is {HOST_SYSEXT_LEVEL}"
            )),
            None if self.get("VERSION_ID") == Some(host.version_id) => None,
            None => Some(format!(
                "VERSION_ID={}, but the release is {} (without SYSEXT_LEVEL, systemd-sysext compares VERSION_ID)",
                self.get("VERSION_ID").unwrap_or("(none)"),
                host.version_id
            )),
        }
    }
}

/// The value of an os-release assignment without its quotes; `None` if a quote is open.
fn unquote(value: &str) -> Option<String> {
    let mut chars = value.chars();
    match value.chars().next() {
        Some('\'') => value
            .strip_prefix('\'')?
            .strip_suffix('\'')
            .map(str::to_string),
        Some('"') => {
            chars.next();
            let mut out = String::new();
            loop {
                match chars.next()? {
                    '"' => return chars.as_str().is_empty().then_some(out),
                    '\\' => {
                        let next = chars.next()?;
                        if !matches!(next, '"' | '\\' | '`' | '$') {
                            out.push('\\');
                        }
                        out.push(next);
                    }
                    c => out.push(c),
                }
            }
        }
        _ => Some(value.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOST: Host = Host {
        version_id: "4593.2.5",
        architecture: "x86-64",
    };

    fn release(text: &str) -> ExtensionRelease {
        ExtensionRelease::parse(text).unwrap()
    }

    #[test]
    fn flatcar_writes_both_quoted_and_bare_values() {
        let bare = release("ID=flatcar\nVERSION_ID=4593.2.5\nARCHITECTURE=x86-64\n");
        let quoted = release(
            "ID='flatcar'\nVERSION_ID='4593.2.5'\nARCHITECTURE='x86-64'\nEXTENSION_RELOAD_MANAGER=1\n",
        );
        assert_eq!(bare.get("VERSION_ID"), quoted.get("VERSION_ID"));
        assert_eq!(bare.refusal(&HOST), None);
        assert_eq!(quoted.refusal(&HOST), None);
        let escaped = release("NAME=\"a \\\"b\\\" \\$c\"\n");
        assert_eq!(escaped.get("NAME"), Some("a \"b\" $c"));
        assert!(ExtensionRelease::parse("ID=\"flatcar\n").is_err());
        assert!(ExtensionRelease::parse("just words\n").is_err());
    }

    #[test]
    fn the_host_rule_is_systemd_sysexts() {
        assert_eq!(release("ID=_any\n").refusal(&HOST), None);
        assert_eq!(release("ID=_any\nARCHITECTURE=_any\n").refusal(&HOST), None);
        // Flatcar's os-release has SYSEXT_LEVEL=1.0: a matching level merges on any release.
        assert_eq!(
            release("ID=flatcar\nSYSEXT_LEVEL=1.0\n").refusal(&HOST),
            None
        );
        assert_eq!(
            release("ID=coreos\nSYSEXT_LEVEL=1.0\nVERSION_ID=1\n").refusal(&HOST),
            None
        );
        assert_eq!(
            release("ID=_any\nSYSEXT_SCOPE=initrd system\n").refusal(&HOST),
            None
        );
        let refused = |text: &str, why: &str| {
            let reason = release(text).refusal(&HOST).expect(text);
            assert!(reason.contains(why), "{text}: {reason}");
        };
        refused(
            "ID=flatcar\nVERSION_ID=4593.2.4\n",
            "VERSION_ID=4593.2.4, but the release is 4593.2.5",
        );
        refused(
            "ID=flatcar\nSYSEXT_LEVEL=2\nVERSION_ID=4593.2.5\n",
            "SYSEXT_LEVEL=2, but Flatcar's is 1.0",
        );
        refused("ID=flatcar\n", "VERSION_ID=(none)");
        refused(
            "ID=debian\nVERSION_ID=4593.2.5\n",
            "ID=debian, where Flatcar merges only",
        );
        refused("VERSION_ID=4593.2.5\n", "it sets no ID");
        // The architecture is checked before the ID, so _any does not escape it.
        refused(
            "ID=_any\nARCHITECTURE=arm64\n",
            "ARCHITECTURE=arm64, but the machine is x86-64",
        );
        refused(
            "ID=_any\nSYSEXT_SCOPE=initrd portable\n",
            "without `system`",
        );
    }

    proptest! {
        #[test]
        fn any_text_is_parsed_or_refused(text in ".{0,200}") {
            if let Ok(parsed) = ExtensionRelease::parse(&text) {
                let _ = parsed.refusal(&HOST);
            }
        }
    }
}
