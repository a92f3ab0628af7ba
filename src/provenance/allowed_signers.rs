//! OpenSSH's `allowed_signers` file, read as `ssh-keygen -Y verify` reads it (ssh-keygen(1),
//! ALLOWED SIGNERS; sshsig.c), so that a key this file allows only for another purpose is
//! never trusted for kato-image's signatures.
//!
//! A line is `PRINCIPALS [OPTIONS] KEYTYPE BASE64 [COMMENT]`, fields separated by spaces or
//! tabs; blank lines and lines whose first non-blank character is `#` are comments.
//! - PRINCIPALS: a comma-separated pattern list (`*`, `?`, `!` to veto; case-sensitive),
//!   optionally in double quotes (then it may hold spaces).
//! - OPTIONS: comma-separated, no spaces outside quotes, keywords in any case:
//!   `cert-authority`, `namespaces="LIST"`, `valid-after="TIME"`, `valid-before="TIME"`; a
//!   TIME is `YYYYMMDD`, `YYYYMMDDHHMM` or `YYYYMMDDHHMMSS`, in UTC with a `Z` (or `UTC`)
//!   suffix, else in local time; both bounds are inclusive and judged at the current time.
//! - A `cert-authority` line trusts certificates that key issued, never the key's own
//!   signatures; kato-image signs with plain keys, so such a line never matches.
//!
//! Where ssh-keygen logs a line it cannot read and goes on, this reader refuses the file,
//! naming the line: a trust file with a line nobody can read is not one to guess about.

use base64::Engine;

use super::sshkey::PublicKey;

/// The largest file read (a trust list, not a key server).
pub const MAX_FILE: u64 = 1 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}:{line}: {why}")]
pub struct AllowedSignersError {
    pub file: String,
    pub line: usize,
    pub why: String,
}

/// One line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub line: usize,
    principals: String,
    cert_authority: bool,
    namespaces: Option<String>,
    valid_after: Option<i64>,
    valid_before: Option<i64>,
    /// The key, when it is a plain Ed25519 key (the only kind kato-image signs with); other
    /// key types are read and checked, and never match.
    key: Option<PublicKey>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedSigners {
    pub signers: Vec<Signer>,
}

/// Why no line trusted a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No line names the key (as a plain key).
    Unknown,
    /// A line names the key, for principals that do not match the one asked for (patterns
    /// and letter case as `ssh-keygen` matches them).
    Principal {
        line: usize,
        principal: String,
    },
    /// A line names it, but only for other namespaces.
    Namespace {
        line: usize,
    },
    /// A line names it, but not at this time.
    Expired {
        line: usize,
    },
    NotYetValid {
        line: usize,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Unknown => f.write_str("no line of the allowed signers file names this key"),
            Refusal::Principal { line, principal } => write!(
                f,
                "line {line} names this key, but for other principals than {}",
                crate::origin::quoted(principal)
            ),
            Refusal::Namespace { line } => write!(
                f,
                "line {line} allows this key only for other namespaces, not \"{}\"",
                super::sshkey::NAMESPACE
            ),
            Refusal::Expired { line } => {
                write!(
                    f,
                    "line {line} allows this key only until its valid-before time"
                )
            }
            Refusal::NotYetValid { line } => {
                write!(
                    f,
                    "line {line} allows this key only from its valid-after time"
                )
            }
        }
    }
}

const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "sk-ssh-ed25519@openssh.com",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "webauthn-sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-rsa",
    "rsa-sha2-256",
    "rsa-sha2-512",
    "ssh-dss",
];

/// The blob's own type name for a line's key type (RSA signature names are aliases).
fn blob_type(name: &str) -> &str {
    match name {
        "rsa-sha2-256" | "rsa-sha2-512" => "ssh-rsa",
        "rsa-sha2-256-cert-v01@openssh.com" | "rsa-sha2-512-cert-v01@openssh.com" => {
            "ssh-rsa-cert-v01@openssh.com"
        }
        other => other,
    }
}

fn is_key_type(name: &str) -> bool {
    KEY_TYPES.contains(&name) || CERT_TYPES.contains(&name)
}

const CERT_TYPES: &[&str] = &[
    "ssh-ed25519-cert-v01@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ssh-rsa-cert-v01@openssh.com",
    "rsa-sha2-256-cert-v01@openssh.com",
    "rsa-sha2-512-cert-v01@openssh.com",
    "ssh-dss-cert-v01@openssh.com",
];

impl AllowedSigners {
    /// Reads every line of `text` (`file` names it in errors).
    pub fn parse(text: &str, file: &str) -> Result<AllowedSigners, AllowedSignersError> {
        let mut signers = Vec::new();
        for (index, raw) in text.split('\n').enumerate() {
            let line = index + 1;
            let error = |why: String| AllowedSignersError {
                file: file.to_string(),
                line,
                why,
            };
            let rest = raw.trim_start_matches([' ', '\t', '\r']);
            if rest.is_empty() || rest.starts_with('#') {
                continue;
            }
            signers.push(parse_line(rest, line).map_err(error)?);
        }
        Ok(AllowedSigners { signers })
    }

    /// Whether `key` is trusted to sign in kato-image's namespace at `now` (seconds since
    /// the epoch): for `principal` exactly as `ssh-keygen -Y verify -I PRINCIPAL -n
    /// kato-image` decides; without one, as git decides for SSH signatures (the principals
    /// `ssh-keygen -Y find-principals` names for the key, each then verified that way).
    /// Returns the line that trusts it.
    pub fn trusts(
        &self,
        key: &PublicKey,
        principal: Option<&str>,
        now: i64,
    ) -> Result<usize, Refusal> {
        match principal {
            Some(principal) => self.verify(key, principal, now),
            None => {
                let found = self
                    .signers
                    .iter()
                    .find(|s| !s.cert_authority && s.key.as_ref() == Some(key) && s.in_time(now))
                    .ok_or_else(|| self.why_not(key, now))?;
                let mut first_refusal = None;
                for candidate in split_patterns(&found.principals) {
                    match self.verify(key, candidate, now) {
                        Ok(line) => return Ok(line),
                        Err(refusal) => {
                            first_refusal.get_or_insert(refusal);
                        }
                    }
                }
                Err(first_refusal.unwrap_or(Refusal::Unknown))
            }
        }
    }

    /// `ssh-keygen -Y verify`'s scan: the first line for `principal` that passes every check.
    fn verify(&self, key: &PublicKey, principal: &str, now: i64) -> Result<usize, Refusal> {
        let mut refusal = Refusal::Unknown;
        for signer in &self.signers {
            if signer.cert_authority || signer.key.as_ref() != Some(key) {
                continue;
            }
            if !pattern_list_matches(principal, &signer.principals) {
                if refusal == Refusal::Unknown {
                    refusal = Refusal::Principal {
                        line: signer.line,
                        principal: principal.to_string(),
                    };
                }
                continue;
            }
            if let Some(namespaces) = &signer.namespaces
                && !pattern_list_matches(super::sshkey::NAMESPACE, namespaces)
            {
                refusal = Refusal::Namespace { line: signer.line };
                continue;
            }
            if signer.valid_after.is_some_and(|t| now < t) {
                refusal = Refusal::NotYetValid { line: signer.line };
                continue;
            }
            if signer.valid_before.is_some_and(|t| now > t) {
                refusal = Refusal::Expired { line: signer.line };
                continue;
            }
            return Ok(signer.line);
        }
        Err(refusal)
    }

    /// Why no line trusts `key` at all, for a message.
    fn why_not(&self, key: &PublicKey, now: i64) -> Refusal {
        self.signers
            .iter()
            .filter(|s| !s.cert_authority && s.key.as_ref() == Some(key))
            .map(|s| {
                if s.valid_after.is_some_and(|t| now < t) {
                    Refusal::NotYetValid { line: s.line }
                } else {
                    Refusal::Expired { line: s.line }
                }
            })
            .next()
            .unwrap_or(Refusal::Unknown)
    }

    /// Whether any line names a plain Ed25519 key (otherwise nothing kato-image signs can
    /// ever be trusted by this file).
    pub fn has_ed25519(&self) -> bool {
        self.signers
            .iter()
            .any(|s| !s.cert_authority && s.key.is_some())
    }

    /// Every plain Ed25519 key named, for matching raw signatures to a key.
    pub fn keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.signers
            .iter()
            .filter(|s| !s.cert_authority)
            .filter_map(|s| s.key.as_ref())
    }
}

impl Signer {
    fn in_time(&self, now: i64) -> bool {
        self.valid_after.is_none_or(|t| now >= t) && self.valid_before.is_none_or(|t| now <= t)
    }
}

fn parse_line(text: &str, line: usize) -> Result<Signer, String> {
    let (principals, rest) = principals_field(text)?;
    let rest = rest.trim_start_matches([' ', '\t']);
    let first = rest.split([' ', '\t']).next().unwrap_or("");
    let (options, key_text) = if is_key_type(first) || first.is_empty() {
        ("", rest)
    } else {
        let end = options_end(rest)?;
        (&rest[..end], rest[end..].trim_start_matches([' ', '\t']))
    };
    let mut signer = Signer {
        line,
        principals,
        cert_authority: false,
        namespaces: None,
        valid_after: None,
        valid_before: None,
        key: None,
    };
    parse_options(options, &mut signer)?;
    signer.key = parse_key(key_text.trim_end_matches(['\r', ' ', '\t']))?;
    Ok(signer)
}

/// The principals field and what follows it.
fn principals_field(text: &str) -> Result<(String, &str), String> {
    if let Some(quoted) = text.strip_prefix('"') {
        let end = quoted
            .find('"')
            .ok_or("the principals field opens a quote it does not close")?;
        return Ok((quoted[..end].to_string(), &quoted[end + 1..]));
    }
    let end = text.find([' ', '\t']).unwrap_or(text.len());
    let field = &text[..end];
    if field.contains('"') {
        return Err(format!(
            "the principals field {} has a quote inside it; quote the whole field",
            crate::origin::quoted(field)
        ));
    }
    if end == text.len() {
        return Err(format!(
            "only principals ({}), no key",
            crate::origin::quoted(field)
        ));
    }
    Ok((field.to_string(), &text[end..]))
}

/// Where the options field ends: at the first space or tab outside double quotes.
fn options_end(text: &str) -> Result<usize, String> {
    let bytes = text.as_bytes();
    let mut quoted = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted && bytes.get(i + 1) == Some(&b'"') => i += 1,
            b'"' => quoted = !quoted,
            b' ' | b'\t' if !quoted => return Ok(i),
            _ => {}
        }
        i += 1;
    }
    if quoted {
        return Err("the options open a quote they do not close".into());
    }
    Err("no key after the options".into())
}

fn parse_options(text: &str, signer: &mut Signer) -> Result<(), String> {
    let mut rest = text;
    while !rest.is_empty() {
        let lower = rest.to_ascii_lowercase();
        if lower.starts_with("cert-authority")
            && matches!(rest.as_bytes().get(14), None | Some(b','))
        {
            signer.cert_authority = true;
            rest = &rest[14..];
        } else if let Some(keyword) = ["namespaces", "valid-after", "valid-before"]
            .into_iter()
            .find(|k| lower.starts_with(&format!("{k}=")))
        {
            let (value, after) = quoted_value(&rest[keyword.len() + 1..], keyword)?;
            rest = after;
            let duplicate = || format!("the option {keyword} is given twice");
            match keyword {
                "namespaces" => {
                    if signer.namespaces.replace(value).is_some() {
                        return Err(duplicate());
                    }
                }
                _ => {
                    let time = parse_time(&value).ok_or_else(|| {
                        format!(
                            "{keyword}={} is not a time (YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS, with Z for UTC)",
                            crate::origin::quoted(&value)
                        )
                    })?;
                    let slot = if keyword == "valid-after" {
                        &mut signer.valid_after
                    } else {
                        &mut signer.valid_before
                    };
                    if slot.replace(time).is_some() {
                        return Err(duplicate());
                    }
                }
            }
        } else {
            let name = rest.split([',', '=']).next().unwrap_or(rest);
            return Err(format!(
                "{} is not an option of allowed signers files (cert-authority, namespaces, valid-after, valid-before)",
                crate::origin::quoted(name)
            ));
        }
        match rest.strip_prefix(',') {
            Some("") => return Err("the options end with a comma".into()),
            Some(after) => rest = after,
            None if rest.is_empty() => {}
            None => {
                return Err(format!(
                    "the options continue with {} after a value; separate options with commas",
                    crate::origin::quoted(rest)
                ));
            }
        }
    }
    if let (Some(after), Some(before)) = (signer.valid_after, signer.valid_before)
        && before <= after
    {
        return Err("valid-before is not after valid-after".into());
    }
    Ok(())
}

/// A double-quoted option value (`\"` stands for a quote) and what follows it.
fn quoted_value<'a>(text: &'a str, keyword: &str) -> Result<(String, &'a str), String> {
    let body = text
        .strip_prefix('"')
        .ok_or_else(|| format!("the value of {keyword} must be in double quotes"))?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if body[i + 1..].starts_with('"') => {
                value.push('"');
                chars.next();
            }
            '"' => return Ok((value, &body[i + 1..])),
            c => value.push(c),
        }
    }
    Err(format!("the value of {keyword} has no closing quote"))
}

/// `KEYTYPE BASE64 [COMMENT]`: the type must be one OpenSSH knows and the blob must say the
/// same type. Only a plain Ed25519 key is kept.
fn parse_key(text: &str) -> Result<Option<PublicKey>, String> {
    if text.is_empty() {
        return Err("no key".into());
    }
    let mut words = text.split([' ', '\t']).filter(|w| !w.is_empty());
    let kind = words.next().unwrap_or("");
    if !is_key_type(kind) {
        return Err(format!(
            "{} is not an SSH key type",
            crate::origin::quoted(kind)
        ));
    }
    let encoded = words.next().ok_or("a key type without its key")?;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| format!("the {kind} key is not base64"))?;
    let named = blob
        .get(..4)
        .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize)
        .and_then(|n| blob.get(4..4 + n))
        .ok_or_else(|| format!("the {kind} key is truncated"))?;
    if named != blob_type(kind).as_bytes() {
        return Err(format!(
            "the key is a {}, not a {kind}",
            crate::origin::quoted(&String::from_utf8_lossy(named))
        ));
    }
    if kind != "ssh-ed25519" {
        return Ok(None);
    }
    PublicKey::from_line(&format!("{kind} {encoded}"))
        .map(Some)
        .ok_or_else(|| "the ssh-ed25519 key is malformed".into())
}

/// OpenSSH's pattern list: true when some pattern matches `text` and no negated one does.
pub(crate) fn pattern_list_matches(text: &str, list: &str) -> bool {
    let mut matched = false;
    for pattern in split_patterns(list) {
        match pattern.strip_prefix('!') {
            Some(negated) if wildcard(text.as_bytes(), negated.as_bytes()) => return false,
            Some(_) => {}
            None => matched |= wildcard(text.as_bytes(), pattern.as_bytes()),
        }
    }
    matched
}

fn split_patterns(list: &str) -> impl Iterator<Item = &str> {
    list.split(',')
}

/// `*` (any run) and `?` (one byte), iteratively, so no pattern costs more than
/// text × pattern steps.
fn wildcard(text: &[u8], pattern: &[u8]) -> bool {
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            t += 1;
            p += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Seconds since the epoch for `YYYYMMDD[HHMM[SS]]`, UTC with a `Z`/`z`/`UTC` suffix, else
/// local time (as OpenSSH's parse_absolute_time; 0 is no time).
fn parse_time(text: &str) -> Option<i64> {
    let (digits, utc) = match text.strip_suffix(['Z', 'z']).or_else(|| {
        text.len()
            .checked_sub(3)
            .filter(|&n| text.is_char_boundary(n) && text[n..].eq_ignore_ascii_case("utc"))
            .map(|n| &text[..n])
    }) {
        Some(d) => (d, true),
        None => (text, false),
    };
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let field = |at: usize, len: usize| -> i64 {
        digits
            .get(at..at + len)
            .map_or(0, |s| s.parse().unwrap_or(0))
    };
    let (year, month, day) = (field(0, 4), field(4, 2), field(6, 2));
    let (hour, minute, second) = (field(8, 2), field(10, 2), field(12, 2));
    let days_in_month = [
        31,
        28 + i64::from(is_leap(year)),
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 60
        || year < 1900
    {
        return None;
    }
    let time = if utc {
        days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    } else {
        local_time(year, month, day, hour, minute, second)?
    };
    (time != 0).then_some(time)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Days from 1970-01-01 to the date (proleptic Gregorian).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The C library's reading of a local time (its `TZ`), as `mktime` gives it to OpenSSH.
fn local_time(year: i64, month: i64, day: i64, hour: i64, minute: i64, second: i64) -> Option<i64> {
    // SAFETY: tm is plain data; mktime reads and normalises it and touches nothing else.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = i32::try_from(year - 1900).ok()?;
    tm.tm_mon = (month - 1) as i32;
    tm.tm_mday = day as i32;
    tm.tm_hour = hour as i32;
    tm.tm_min = minute as i32;
    tm.tm_sec = second as i32;
    tm.tm_isdst = -1;
    // SAFETY: a valid, initialised tm.
    let time = unsafe { libc::mktime(&mut tm) };
    (time != -1).then_some(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICeqYq3o6EwZpjNghiYqZZUXR+tcJ8ybtPzLXmGECI7k";

    fn key() -> PublicKey {
        PublicKey::from_line(KEY).unwrap()
    }

    fn trusts(file: &str, principal: Option<&str>) -> Result<usize, Refusal> {
        AllowedSigners::parse(file, "f")
            .unwrap()
            .trusts(&key(), principal, 1_800_000_000)
    }

    #[test]
    fn namespaces_principals_and_times_decide_as_ssh_keygen() {
        let ok = Ok(1);
        assert_eq!(trusts(&format!("ci@x {KEY}"), Some("ci@x")), ok);
        assert_eq!(
            trusts(&format!("ci@x namespaces=\"kato-image\" {KEY}"), None),
            ok
        );
        assert_eq!(
            trusts(&format!("ci@x namespaces=\"git\" {KEY}"), Some("ci@x")),
            Err(Refusal::Namespace { line: 1 })
        );
        assert_eq!(
            trusts(&format!("ci@x NAMESPACES=\"g*,kato-*\" {KEY}"), None),
            ok
        );
        assert_eq!(trusts(&format!("*@x {KEY}"), Some("ci@x")), ok);
        let other_principals = |principal: &str| {
            Err(Refusal::Principal {
                line: 1,
                principal: principal.into(),
            })
        };
        assert_eq!(
            trusts(&format!("!ci@x,*@x {KEY}"), Some("ci@x")),
            other_principals("ci@x")
        );
        assert_eq!(
            trusts(&format!("ci@x {KEY}"), Some("CI@x")),
            other_principals("CI@x")
        );
        assert_eq!(
            trusts(&format!("ci@x cert-authority {KEY}"), None),
            Err(Refusal::Unknown)
        );
        assert_eq!(
            trusts(&format!("ci@x valid-before=\"20200101Z\" {KEY}"), None),
            Err(Refusal::Expired { line: 1 })
        );
        assert_eq!(
            trusts(
                &format!("ci@x valid-after=\"20990101Z\" {KEY}"),
                Some("ci@x")
            ),
            Err(Refusal::NotYetValid { line: 1 })
        );
        // A restricted line first, then an open one: the open one trusts it.
        assert_eq!(
            trusts(
                &format!("ci@x namespaces=\"git\" {KEY}\n# c\n\n ci@x {KEY} comment"),
                None
            ),
            Ok(4)
        );
        // Options after the key are its comment, as for ssh-keygen.
        assert_eq!(trusts(&format!("ci@x {KEY} namespaces=\"git\""), None), ok);
    }

    #[test]
    fn unreadable_lines_are_errors_that_name_the_line() {
        for (line, why) in [
            ("ci@x foo=\"bar\" KEY", "not an option"),
            ("ci@x namespaces=git KEY", "double quotes"),
            ("ci@x namespaces=\"git\",namespaces=\"x\" KEY", "twice"),
            ("ci@x namespaces=\"git\", KEY", "comma"),
            ("ci@x valid-before=\"2020-01-01\" KEY", "not a time"),
            (
                "ci@x valid-after=\"20200102Z\",valid-before=\"20200101Z\" KEY",
                "not after",
            ),
            ("ci@x", "no key"),
            ("\"ci@x KEY", "quote"),
            ("ci@x ssh-ed25519 AAAAgarbage!", "base64"),
            (
                "ci@x ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAICeqYq3o6EwZpjNghiYqZZUXR+tcJ8ybtPzLXmGECI7k",
                "not a",
            ),
        ] {
            let text = format!("# ok\n{}", line.replace("KEY", KEY));
            let error = AllowedSigners::parse(&text, "f").unwrap_err();
            assert_eq!(error.line, 2, "{line}");
            assert!(error.why.contains(why), "{line}: {}", error.why);
        }
    }

    #[test]
    fn times_are_read_in_utc_or_local_time() {
        assert_eq!(parse_time("19700102Z"), Some(86400));
        assert_eq!(parse_time("20250101120000Z"), Some(1_735_732_800));
        assert_eq!(parse_time("202501011200UTC"), Some(1_735_732_800));
        for bad in [
            "2025010100",
            "20251301",
            "20250230Z",
            "19700101Z",
            "2025-01-01",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn wildcards_match_as_openssh_patterns() {
        assert!(wildcard(b"alice@x", b"a*@?"));
        assert!(wildcard(b"", b"*"));
        assert!(!wildcard(b"alice", b"a?"));
        assert!(pattern_list_matches("git", "file,g*t"));
        assert!(!pattern_list_matches("git", "!git,*"));
        assert!(!pattern_list_matches("x", ""));
    }
}
