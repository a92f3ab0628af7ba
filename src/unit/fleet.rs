//! fleet's `[X-Fleet]` scheduling section, which kato-image reads to decide which role gets a
//! unit. systemd ignores `X-` sections, so the units stay valid as they are.

use super::parse::Section;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetSpec {
    /// `key=value` pairs from `MachineMetadata=`; several values of one key mean "any of".
    pub(crate) machine_metadata: Vec<(String, String)>,
    /// `Global=true`: every machine that matches the metadata runs the unit.
    pub global: bool,
    /// Unit name globs that may not run on the same machine.
    pub conflicts: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleMatch {
    /// `MachineMetadata=role=...` names the role, or the unit is global with no role filter.
    Selected,
    /// `MachineMetadata=role=...` names other roles only.
    Excluded,
    /// Nothing about roles: fleet would place it on any one machine; a profile must ask for it.
    Unconstrained,
}

impl FleetSpec {
    pub fn from_sections(sections: &[Section]) -> Result<Self, (u64, String)> {
        let mut spec = FleetSpec::default();
        for section in sections.iter().filter(|s| s.name == "X-Fleet") {
            for entry in &section.entries {
                match entry.key.as_str() {
                    "MachineMetadata" => {
                        for word in split_words(&entry.value) {
                            let (key, value) = word.split_once('=').ok_or_else(|| {
                                (
                                    entry.line,
                                    format!("MachineMetadata {word:?} is not key=value"),
                                )
                            })?;
                            spec.machine_metadata
                                .push((key.to_string(), value.to_string()));
                        }
                    }
                    "Global" => {
                        spec.global = parse_bool(&entry.value).ok_or_else(|| {
                            (
                                entry.line,
                                format!("Global={} is not a boolean", entry.value),
                            )
                        })?;
                    }
                    "Conflicts" => spec.conflicts.extend(split_words(&entry.value)),
                    // Other fleet options (MachineOf, MachineID, Replaces) place units relative
                    // to machines or other units, which a per-role image cannot decide.
                    _ => {}
                }
            }
        }
        Ok(spec)
    }

    /// The roles named by `MachineMetadata=role=...`.
    pub fn roles(&self) -> Vec<&str> {
        self.machine_metadata
            .iter()
            .filter(|(key, _)| key == "role")
            .map(|(_, value)| value.as_str())
            .collect()
    }

    pub fn matches_role(&self, role: &str) -> RoleMatch {
        let roles = self.roles();
        if roles.is_empty() {
            if self.global {
                RoleMatch::Selected
            } else {
                RoleMatch::Unconstrained
            }
        } else if roles.contains(&role) {
            RoleMatch::Selected
        } else {
            RoleMatch::Excluded
        }
    }

    /// Whether this unit's `Conflicts=` globs name `unit`.
    pub fn conflicts_with(&self, unit: &str) -> Option<&str> {
        self.conflicts
            .iter()
            .find(|glob| glob_match(glob, unit))
            .map(String::as_str)
    }
}

/// Splits on white space, keeping double-quoted words together (`"role=a" "role=b"`).
fn split_words(value: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// Shell-style glob with `*` and `?`, as fleet matches unit names. Backtracks only to the
/// last `*`, so a glob of many stars costs length × length, not an exponent (the recursive
/// form took minutes on a 200-star `Conflicts=` the fuzzer wrote).
pub(crate) fn glob_match(glob: &str, name: &str) -> bool {
    let (g, n) = (glob.as_bytes(), name.as_bytes());
    let (mut gi, mut ni) = (0, 0);
    // Where the last `*` was, and the name position it is taken to match up to.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match g.get(gi) {
            Some(b'*') => {
                star = Some((gi, ni));
                gi += 1;
            }
            Some(&c) if c == b'?' || c == n[ni] => {
                gi += 1;
                ni += 1;
            }
            _ => match star {
                Some((star_g, star_n)) => {
                    gi = star_g + 1;
                    ni = star_n + 1;
                    star = Some((star_g, star_n + 1));
                }
                None => return false,
            },
        }
    }
    g[gi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::parse::parse;

    #[test]
    fn reads_quoted_metadata_and_globs() {
        let sections = parse(
            "[X-Fleet]\nMachineMetadata=\"role=master\" \"role=edge\"\nConflicts=zk@*.service\n",
        )
        .unwrap();
        let spec = FleetSpec::from_sections(&sections).unwrap();
        assert_eq!(spec.roles(), ["master", "edge"]);
        assert_eq!(spec.matches_role("edge"), RoleMatch::Selected);
        assert_eq!(spec.matches_role("worker"), RoleMatch::Excluded);
        assert!(spec.conflicts_with("zk@2.service").is_some());
        assert!(spec.conflicts_with("zookeeper@2.service").is_none());
    }

    #[test]
    fn globs_match_as_the_shell_does() {
        for (glob, name, expected) in [
            ("zk@*.service", "zk@2.service", true),
            ("zk@*.service", "zk@.service", true),
            ("zk@?.service", "zk@12.service", false),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("**a", "bba", true),
            ("*?", "", false),
        ] {
            assert_eq!(glob_match(glob, name), expected, "{glob} {name}");
        }
    }

    /// The fuzzer's case: a long run of stars against a name that does not match.
    #[test]
    fn many_stars_do_not_take_exponential_time() {
        let glob = format!("{}x", "*".repeat(300));
        assert!(!glob_match(&glob, &"a".repeat(300)));
        assert!(glob_match(&glob, &format!("{}x", "a".repeat(300))));
    }

    #[test]
    fn global_without_role_selects_every_role() {
        let spec = FleetSpec::from_sections(&parse("[X-Fleet]\nGlobal=true\n").unwrap()).unwrap();
        assert_eq!(spec.matches_role("anything"), RoleMatch::Selected);
        let none = FleetSpec::from_sections(&parse("[Unit]\nA=b\n").unwrap()).unwrap();
        assert_eq!(none.matches_role("master"), RoleMatch::Unconstrained);
    }
}
