//! An extension's `extension-release` file and the rule `systemd-sysext` applies to it before
//! it merges an image: the same `KEY=VALUE` format as os-release, compared with the host's
//! os-release (systemd's `extension_release_validate`).
//!
//! On Flatcar the host is `ID=flatcar`, `VERSION_ID=<the release>` and no `SYSEXT_LEVEL`, so
//! an extension merges when its `ID` is `_any`, or when it is `flatcar` and its `VERSION_ID`
//! is the release's; an `ARCHITECTURE` other than `_any` must be the board's, and a
//! `SYSEXT_SCOPE` must include `system`.

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
        let value = |key: &str| self.get(key).unwrap_or("(none)").to_string();
        if let Some(arch) = self.get("ARCHITECTURE")
            && arch != "_any"
            && arch != host.architecture
        {
            return Some(format!(
                "ARCHITECTURE={arch}, but the machine is {}",
                host.architecture
            ));
        }
        if let Some(scope) = self.get("SYSEXT_SCOPE")
            && !scope.split_whitespace().any(|s| s == "system")
        {
            return Some(format!(
                "SYSEXT_SCOPE={scope}, without `system`: it is not for a booted machine"
            ));
        }
        match self.get("ID") {
            Some("_any") => None,
            Some("flatcar") if self.get("VERSION_ID") == Some(host.version_id) => None,
            Some("flatcar") => Some(format!(
                "ID=flatcar with VERSION_ID={}, but the release is {} (Flatcar sets no SYSEXT_LEVEL, so systemd-sysext compares VERSION_ID)",
                value("VERSION_ID"),
                host.version_id
            )),
            _ => Some(format!(
                "ID={}, where Flatcar merges only ID=flatcar or ID=_any",
                value("ID")
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
        let refused = |text: &str, why: &str| {
            let reason = release(text).refusal(&HOST).expect(text);
            assert!(reason.contains(why), "{text}: {reason}");
        };
        refused(
            "ID=flatcar\nVERSION_ID=4593.2.4\n",
            "VERSION_ID=4593.2.4, but the release is 4593.2.5",
        );
        refused("ID=flatcar\nSYSEXT_LEVEL=1.0\n", "VERSION_ID=(none)");
        refused(
            "ID=debian\nVERSION_ID=4593.2.5\n",
            "ID=debian, where Flatcar merges only",
        );
        refused("VERSION_ID=4593.2.5\n", "ID=(none)");
        refused(
            "ID=_any\nARCHITECTURE=arm64\n",
            "ARCHITECTURE=arm64, but the machine is x86-64",
        );
        refused(
            "ID=_any\nSYSEXT_SCOPE=initrd portable\n",
            "without `system`",
        );
        assert_eq!(
            release("ID=_any\nSYSEXT_SCOPE=initrd system\n").refusal(&HOST),
            None
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
