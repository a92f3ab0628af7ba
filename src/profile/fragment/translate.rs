//! What both languages translate the same way: the context of one fragment file (where
//! its local files are, what it has added so far) and the checks every entry gets.

use std::path::{Component, Path, PathBuf};

use ignition_config::v3_3 as ign;
use serde_saphyr::{Location, Spanned};

use super::doc::Refused;
use super::{Fragments, Language, Node};
use crate::input::Confinement;
use crate::origin::{Origin, printable};
use crate::profile::{Located, ProfileError, SourceFile};

/// Local files larger than this are refused: the config that carries them goes into the
/// OEM partition (128 MiB on LTS 4081) and is held in memory by Ignition.
pub const MAX_LOCAL_FILE: u64 = 64 << 20;

pub(crate) struct Cx<'a> {
    pub file: PathBuf,
    /// `local:` paths are relative to this folder (the fragment's, as `butane -d`).
    pub files_dir: PathBuf,
    /// Where they must lie once links are followed.
    pub confinement: &'a Confinement,
    pub language: Language,
    /// The Butane version, once read (what 1.0.0 lacks is refused).
    pub butane: Option<super::butane::Version>,
    pub sources: &'a mut Vec<SourceFile>,
    pub out: Fragments,
}

impl Cx<'_> {
    pub fn at(&self, location: Location) -> Origin {
        Origin::from_location(&self.file, location)
    }

    pub fn error(&self, location: Location, message: impl Into<String>) -> ProfileError {
        ProfileError::invalid(self.at(location), message)
    }

    /// Refuses a section by name, saying why, if the fragment has it.
    pub fn refuse<T>(
        &self,
        field: &str,
        value: &Option<Spanned<T>>,
        why: &str,
    ) -> Result<(), ProfileError> {
        match value {
            Some(v) => Err(self.error(
                v.referenced,
                format!("{field}: kato-image does not translate this section: {why}"),
            )),
            None => Ok(()),
        }
    }

    /// Refuses the `ignition` section's `config`, `timeouts`, `security` and `proxy`, which
    /// both languages have.
    pub(crate) fn refuse_ignition_section(
        &self,
        sections: [&Refused; 4],
    ) -> Result<(), ProfileError> {
        let [config, timeouts, security, proxy] = sections;
        self.refuse(
            "ignition.config",
            config,
            "list every fragment under the profile's `ignition:` instead of merging or replacing configs",
        )?;
        for (field, value) in [
            ("ignition.timeouts", timeouts),
            ("ignition.security", security),
            ("ignition.proxy", proxy),
        ] {
            self.refuse(
                field,
                value,
                "Ignition fetches nothing at boot from a kato-image config",
            )?;
        }
        Ok(())
    }

    /// The name of a field in this fragment's language (`contents_local`, `contentsLocal`).
    pub fn key(&self, snake: &str) -> String {
        match self.language {
            Language::Butane => snake.to_string(),
            Language::Ignition => {
                let mut out = String::new();
                let mut upper = false;
                for c in snake.chars() {
                    if c == '_' {
                        upper = true;
                    } else if upper {
                        out.push(c.to_ascii_uppercase());
                        upper = false;
                    } else {
                        out.push(c);
                    }
                }
                out
            }
        }
    }

    /// Reads the file that `key` (`local`, `contents_local`...) names from the files folder,
    /// which it may not leave.
    pub(crate) fn read_local(
        &mut self,
        key: &str,
        name: &Spanned<String>,
    ) -> Result<Vec<u8>, ProfileError> {
        let path = self.local_path(key, &name.value, name.referenced)?;
        self.read_file(key, &path, name.referenced)
    }

    /// Reads a file of the files folder (bounded, regular, inside the confinement); errors
    /// start with `key`, the setting that named it.
    pub(crate) fn read_file(
        &mut self,
        key: &str,
        path: &Path,
        location: Location,
    ) -> Result<Vec<u8>, ProfileError> {
        let bytes = self
            .confinement
            .read(path, MAX_LOCAL_FILE, "file in a config")
            .map_err(|e| self.error(location, format!("{key}: {e}")))?;
        self.sources.push(super::source_file(path, &bytes));
        Ok(bytes)
    }

    pub(crate) fn local_path(
        &self,
        key: &str,
        name: &str,
        location: Location,
    ) -> Result<PathBuf, ProfileError> {
        let relative = Path::new(name);
        let escapes = relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
        if name.is_empty() || escapes {
            return Err(self.error(
                location,
                format!(
                    "{key}: {} must be a path inside {} (the fragment's folder), without `..`",
                    crate::origin::quoted(name),
                    self.files_dir.display()
                ),
            ));
        }
        Ok(self.files_dir.join(relative))
    }

    /// An absolute path on the machine.
    pub(crate) fn machine_path(
        &self,
        section: &str,
        path: &Spanned<String>,
    ) -> Result<String, ProfileError> {
        let text = &path.value;
        let bad = !text.starts_with('/')
            || text.split('/').any(|part| part == "..")
            || text.chars().any(char::is_control);
        if bad {
            return Err(self.error(
                path.referenced,
                format!(
                    "{section}: path {} must be absolute, without `..` or control characters",
                    crate::origin::quoted(text)
                ),
            ));
        }
        Ok(text.clone())
    }

    /// A permission mode Ignition spec 3.3.0 writes as asked.
    pub fn mode(
        &self,
        section: &str,
        path: &str,
        mode: &Option<Spanned<u32>>,
    ) -> Result<Option<i64>, ProfileError> {
        let Some(mode) = mode else { return Ok(None) };
        if mode.value > 0o7777 {
            return Err(self.error(
                mode.referenced,
                format!(
                    "{section}: mode {} of `{}` is not a permission mode (at most 0o7777; in YAML write it as 0644 or 0o644, in JSON as a decimal number such as 420)",
                    mode.value,
                    printable(path)
                ),
            ));
        }
        if mode.value & 0o7000 != 0 {
            return Err(self.error(
                mode.referenced,
                format!(
                    "{section}: mode {:04o} of `{}` sets setuid, setgid or sticky bits; they need {}, and kato-image renders spec {} so that every channel applies its configs",
                    mode.value,
                    printable(path),
                    crate::config::ignition::NEWER_SPEC_ACCEPTED_BY,
                    crate::config::ignition::SPEC_VERSION
                ),
            ));
        }
        Ok(Some(i64::from(mode.value)))
    }

    pub(crate) fn account_name(
        &self,
        section: &str,
        name: &Spanned<String>,
    ) -> Result<(), ProfileError> {
        if crate::profile::merge::is_account_name(&name.value) {
            return Ok(());
        }
        Err(self.error(
            name.referenced,
            format!(
                "{section}: {} is not a user or group name (lower-case letters, digits, `_` and `-`, starting with a letter or `_`, at most 32)",
                crate::origin::quoted(&name.value)
            ),
        ))
    }

    /// Adds a storage entry; a second one at the same path in one fragment is an error,
    /// as Ignition and Butane make it.
    pub(crate) fn add_node(&mut self, location: Location, node: Node) -> Result<(), ProfileError> {
        if let Some(first) = self
            .out
            .nodes
            .iter()
            .find(|n| n.value.path() == node.path())
        {
            return Err(self.error(
                location,
                format!(
                    "storage: `{}` is given twice in this fragment (first as a {} at {})",
                    printable(node.path()),
                    first.value.kind(),
                    first.origin
                ),
            ));
        }
        let origin = self.at(location);
        self.out.nodes.push(Located {
            value: node,
            origin,
        });
        Ok(())
    }

    /// `Some(hash)` checked against the bytes it is for (`sha512-HEX` or `sha256-HEX`).
    pub fn verify(
        &self,
        location: Location,
        hash: Option<&str>,
        bytes: &[u8],
    ) -> Result<(), ProfileError> {
        use sha2::Digest;
        let Some(hash) = hash else { return Ok(()) };
        let (algorithm, expected) = hash.split_once('-').unwrap_or(("", hash));
        let (actual, digits) = match algorithm {
            "sha512" => (crate::cache::hex(&sha2::Sha512::digest(bytes)), 128),
            "sha256" => (crate::cache::hex(&sha2::Sha256::digest(bytes)), 64),
            _ => (String::new(), 0),
        };
        // Malformed is told as malformed: Ignition refuses the function and the length in
        // the config, and digits that are not hex when it fetches.
        if digits == 0
            || expected.len() != digits
            || !expected.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(self.error(
                location,
                format!(
                    "verification: hash {} is not `sha512-` and 128 hex digits or `sha256-` and 64",
                    crate::origin::quoted(hash)
                ),
            ));
        }
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(self.error(
                location,
                format!(
                    "verification: the contents have {algorithm} {actual}, not the {expected} the fragment gives"
                ),
            ));
        }
        Ok(())
    }
}

impl Cx<'_> {
    /// A `data:` URL source kept as written, once it decodes, its compression is one
    /// Ignition knows, and its bytes match `hash` (which Ignition checks before
    /// decompressing).
    pub(crate) fn data_source(
        &self,
        source: &Spanned<String>,
        compression: Option<&Spanned<String>>,
        hash: Option<&str>,
    ) -> Result<ign::Resource, ProfileError> {
        let url = &source.value;
        if !url.starts_with("data:") {
            let scheme = url.split_once(':').map_or("", |(s, _)| s);
            return Err(self.error(
                source.referenced,
                format!(
                    "contents.source: {} URLs are not taken: {REMOTE}",
                    if scheme.is_empty() {
                        "relative"
                    } else {
                        scheme
                    }
                ),
            ));
        }
        let bytes = crate::config::data_url::decode(url)
            .map_err(|why| self.error(source.referenced, format!("contents.source: {why}")))?;
        self.verify(source.referenced, hash, &bytes)?;
        let compression = match compression {
            None => None,
            Some(c) if c.value.is_empty() => None,
            Some(c) if c.value == "gzip" => {
                if !bytes.starts_with(&[0x1f, 0x8b]) {
                    return Err(self.error(
                        c.referenced,
                        "contents: `compression: gzip`, but the data URL's bytes are not gzip",
                    ));
                }
                Some(c.value.clone())
            }
            Some(c) => {
                return Err(self.error(
                    c.referenced,
                    format!(
                        "contents.compression: {} is not one Ignition knows (gzip, or none)",
                        crate::origin::quoted(&c.value)
                    ),
                ));
            }
        };
        Ok(ign::Resource {
            source: Some(url.clone()),
            compression,
            verification: hash.map(|h| ign::Verification {
                hash: Some(h.to_string()),
            }),
            ..Default::default()
        })
    }
}

/// A resource whose bytes are in the config: a data URL.
pub(crate) fn inline_resource(contents: &[u8]) -> ign::Resource {
    ign::Resource {
        source: Some(crate::config::data_url(contents)),
        ..Default::default()
    }
}

/// Why remote contents are refused, for both languages.
pub(crate) const REMOTE: &str = "remote contents would be fetched by each machine at boot, and kato-image bakes every byte into the image; give the contents inline or from a local file";

/// The conversions of the sections both languages share, written once for both
/// spellings of their keys; expanded after `doc::sections!` in each language's module,
/// whose `ResourceDoc` provides `to_ign(&self, cx, location)`.
macro_rules! conversions {
    () => {
        use ignition_config::v3_3 as ign;
        use serde_saphyr::Location;

        use $crate::profile::ProfileError;
        use $crate::profile::fragment::Node;
        use $crate::profile::fragment::translate::Cx;

        const DEVICES: &str = "the image's partitions and filesystems are Flatcar's (the KATO-DATA partition is the profile's `data:`), and kato-image does not repartition machines";

        fn node_user(doc: &Option<OwnerDoc>) -> Option<ign::NodeUser> {
            doc.clone().map(|o| ign::NodeUser {
                id: o.id,
                name: o.name,
            })
        }

        fn node_group(doc: &Option<OwnerDoc>) -> Option<ign::NodeGroup> {
            doc.clone().map(|o| ign::NodeGroup {
                id: o.id,
                name: o.name,
            })
        }

        /// What both languages' resources share: no `http_headers` (nothing is fetched), and
        /// the verification hash, if any.
        fn resource_hash<'a>(
            cx: &Cx,
            http_headers: &$crate::profile::fragment::doc::Refused,
            verification: &'a Option<VerificationDoc>,
        ) -> Result<Option<&'a str>, ProfileError> {
            let field = format!("contents.{}", cx.key("http_headers"));
            cx.refuse(&field, http_headers, $crate::profile::fragment::translate::REMOTE)?;
            Ok(verification.as_ref().and_then(|v| v.hash.as_deref()))
        }

        impl StorageDoc {
            pub fn add(&self, cx: &mut Cx) -> Result<(), ProfileError> {
                cx.refuse("storage.disks", &self.disks, DEVICES)?;
                cx.refuse("storage.raid", &self.raid, DEVICES)?;
                cx.refuse("storage.filesystems", &self.filesystems, DEVICES)?;
                cx.refuse("storage.luks", &self.luks, DEVICES)?;
                for file in self.files.iter().flatten() {
                    let node = file.value.to_ign(cx)?;
                    cx.add_node(file.referenced, Node::File(node))?;
                }
                for dir in self.directories.iter().flatten() {
                    let d = &dir.value;
                    let path = cx.machine_path("storage.directories", &d.path)?;
                    let mut out = ign::Directory::new(path.clone());
                    out.mode = cx.mode("storage.directories", &path, &d.mode)?;
                    out.overwrite = d.overwrite;
                    out.user = node_user(&d.user);
                    out.group = node_group(&d.group);
                    cx.add_node(dir.referenced, Node::Directory(out))?;
                }
                for link in self.links.iter().flatten() {
                    let l = &link.value;
                    let path = cx.machine_path("storage.links", &l.path)?;
                    let target = l.target.clone().filter(|t| !t.is_empty());
                    // Butane lets a link entry without a target give the owner of a link a
                    // tree makes (the tree fills the target in); Ignition does not.
                    if target.is_none() && cx.language != super::Language::Butane {
                        return Err(cx.error(
                            link.referenced,
                            format!(
                                "storage.links: `{}` has no `target`",
                                $crate::origin::printable(&path)
                            ),
                        ));
                    }
                    let mut out = ign::Link::new(path);
                    out.target = target;
                    out.hard = l.hard;
                    out.overwrite = l.overwrite;
                    out.user = node_user(&l.user);
                    out.group = node_group(&l.group);
                    cx.add_node(link.referenced, Node::Link(out))?;
                }
                Ok(())
            }
        }

        impl FileDoc {
            fn to_ign(&self, cx: &mut Cx) -> Result<ign::File, ProfileError> {
                cx.refuse(
                    "storage.files.append",
                    &self.append,
                    "a file is written whole; give all of its contents",
                )?;
                let path = cx.machine_path("storage.files", &self.path)?;
                let mut out = ign::File::new(path.clone());
                out.mode = cx.mode("storage.files", &path, &self.mode)?;
                out.overwrite = self.overwrite;
                out.user = node_user(&self.user);
                out.group = node_group(&self.group);
                out.contents = match &self.contents {
                    Some(resource) => resource.value.to_ign(cx, resource.referenced)?,
                    None => None,
                };
                Ok(out)
            }
        }

        impl SystemdDoc {
            pub fn add(&self, cx: &mut Cx) -> Result<(), ProfileError> {
                for unit in self.units.iter().flatten() {
                    let out = unit.value.to_ign(cx)?;
                    if let Some(first) = cx.out.units.iter().find(|u| u.value.name == out.name) {
                        return Err(cx.error(
                            unit.referenced,
                            format!(
                                "systemd.units: `{}` is given twice in this fragment (first at {})",
                                out.name, first.origin
                            ),
                        ));
                    }
                    let origin = cx.at(unit.referenced);
                    cx.out.units.push($crate::profile::Located { value: out, origin });
                }
                Ok(())
            }
        }

        /// Text from `contents` or (Butane 1.1.0) a local file, not both.
        fn text(
            cx: &mut Cx,
            what: &str,
            location: Location,
            inline: &Option<String>,
            local: &Option<serde_saphyr::Spanned<String>>,
        ) -> Result<Option<String>, ProfileError> {
            let local_key = cx.key("contents_local");
            let text = match (inline, local) {
                (Some(_), Some(_)) => {
                    return Err(cx.error(
                        location,
                        format!("{what}: give `contents` or `{local_key}`, not both"),
                    ))
                }
                (Some(text), None) => text.clone(),
                (None, Some(name)) => {
                    cx.local_allowed(&local_key, name.referenced)?;
                    let bytes = cx.read_local(&local_key, name)?;
                    String::from_utf8(bytes).map_err(|_| {
                        cx.error(
                            name.referenced,
                            format!("{what}: {} is not UTF-8 text", name.value),
                        )
                    })?
                }
                (None, None) => return Ok(None),
            };
            if let Some(error) = $crate::unit::parse::nul_byte(&text) {
                return Err(cx.error(
                    location,
                    format!("{what}: line {} of the contents has {}", error.line, error.message),
                ));
            }
            Ok(Some(text))
        }

        impl UnitDoc {
            fn to_ign(&self, cx: &mut Cx) -> Result<ign::Unit, ProfileError> {
                $crate::unit::check_name(&self.name.value)
                    .map_err(|e| cx.error(self.name.referenced, format!("systemd.units: {e}")))?;
                let mut out = ign::Unit::new(self.name.value.clone());
                out.enabled = self.enabled;
                out.mask = self.mask;
                out.contents = text(
                    cx,
                    "systemd.units",
                    self.name.referenced,
                    &self.contents,
                    &self.contents_local,
                )?;
                let mut dropins: Vec<ign::Dropin> = Vec::new();
                for dropin in self.dropins.iter().flatten() {
                    let d = &dropin.value;
                    let name = &d.name.value;
                    if !name.ends_with(".conf") || name.contains('/') || name.len() <= 5 {
                        return Err(cx.error(
                            d.name.referenced,
                            format!(
                                "systemd.units.dropins: {} must be a file name ending in .conf",
                                $crate::origin::quoted(name)
                            ),
                        ));
                    }
                    if dropins.iter().any(|x| &x.name == name) {
                        return Err(cx.error(
                            d.name.referenced,
                            format!("systemd.units.dropins: `{name}` is given twice for {}", out.name),
                        ));
                    }
                    let mut x = ign::Dropin::new(name.clone());
                    x.contents = text(
                        cx,
                        "systemd.units.dropins",
                        d.name.referenced,
                        &d.contents,
                        &d.contents_local,
                    )?;
                    dropins.push(x);
                }
                out.dropins = (!dropins.is_empty()).then_some(dropins);
                Ok(out)
            }
        }

        impl PasswdDoc {
            pub fn add(&self, cx: &mut Cx) -> Result<(), ProfileError> {
                for user in self.users.iter().flatten() {
                    let out = user.value.to_ign(cx)?;
                    if let Some(first) = cx.out.users.iter().find(|u| u.value.name == out.name) {
                        return Err(cx.error(
                            user.referenced,
                            format!(
                                "passwd.users: `{}` is given twice in this fragment (first at {})",
                                out.name, first.origin
                            ),
                        ));
                    }
                    let origin = cx.at(user.referenced);
                    cx.out.users.push($crate::profile::Located { value: out, origin });
                }
                for group in self.groups.iter().flatten() {
                    let g = &group.value;
                    cx.account_name("passwd.groups", &g.name)?;
                    if let Some(first) = cx.out.groups.iter().find(|x| x.value.name == g.name.value) {
                        return Err(cx.error(
                            group.referenced,
                            format!(
                                "passwd.groups: `{}` is given twice in this fragment (first at {})",
                                g.name.value, first.origin
                            ),
                        ));
                    }
                    let mut out = ign::Group::new(g.name.value.clone());
                    out.gid = g.gid;
                    out.password_hash = g.password_hash.clone();
                    out.system = g.system;
                    out.should_exist = g.should_exist;
                    let origin = cx.at(group.referenced);
                    cx.out.groups.push($crate::profile::Located { value: out, origin });
                }
                Ok(())
            }
        }

        impl UserDoc {
            fn to_ign(&self, cx: &mut Cx) -> Result<ign::User, ProfileError> {
                cx.account_name("passwd.users", &self.name)?;
                for group in self.groups.iter().flatten().chain(&self.primary_group) {
                    if !$crate::profile::merge::is_account_name(group) {
                        return Err(cx.error(
                            self.name.referenced,
                            format!(
                                "passwd.users: group {} of `{}` is not a group name",
                                $crate::origin::quoted(group),
                                self.name.value
                            ),
                        ));
                    }
                }
                let mut keys = Vec::new();
                for key in self.ssh_authorized_keys.iter().flatten() {
                    keys.push(cx.ssh_key(key.referenced, &key.value)?);
                }
                if let Some(files) = &self.ssh_authorized_keys_local {
                    let local_key = cx.key("ssh_authorized_keys_local");
                    for name in files {
                        cx.local_allowed(&local_key, name.referenced)?;
                        let bytes = cx.read_local(&local_key, name)?;
                        let text = String::from_utf8(bytes).map_err(|_| {
                            cx.error(name.referenced, format!("{local_key}: {} is not UTF-8 text", name.value))
                        })?;
                        // As sshd reads authorized_keys: blank lines and `#` comments are
                        // not keys.
                        let lines = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
                        for line in lines {
                            keys.push(cx.ssh_key(name.referenced, line)?);
                        }
                    }
                }
                let mut out = ign::User::new(self.name.value.clone());
                out.uid = self.uid;
                out.gecos = self.gecos.clone();
                out.home_dir = self.home_dir.clone();
                out.no_create_home = self.no_create_home;
                out.primary_group = self.primary_group.clone();
                out.groups = self.groups.clone();
                out.no_user_group = self.no_user_group;
                out.no_log_init = self.no_log_init;
                out.shell = self.shell.clone();
                out.system = self.system;
                out.should_exist = self.should_exist;
                out.password_hash = self.password_hash.clone();
                out.ssh_authorized_keys = (!keys.is_empty()).then_some(keys);
                Ok(out)
            }
        }

        impl KernelArgumentsDoc {
            pub fn add(&self, cx: &mut Cx, section: &str) -> Result<(), ProfileError> {
                for (list, present) in [(&self.should_exist, true), (&self.should_not_exist, false)] {
                    for arg in list.iter().flatten() {
                        $crate::profile::validate::check_kernel_arg(&arg.value).map_err(|why| {
                            cx.error(arg.referenced, format!("{section}: {:?} {why}", arg.value))
                        })?;
                        let located = $crate::profile::Located {
                            value: arg.value.clone(),
                            origin: cx.at(arg.referenced),
                        };
                        if present {
                            cx.out.kernel_args.push(located);
                        } else {
                            cx.out.kernel_args_absent.push(located);
                        }
                    }
                }
                Ok(())
            }
        }
    };
}

pub(super) use conversions;

impl Cx<'_> {
    /// Refuses a Butane 1.1.0 field in a 1.0.0 fragment (and in Ignition, which has none).
    pub(crate) fn local_allowed(
        &self,
        field: &str,
        location: Location,
    ) -> Result<(), ProfileError> {
        match self.language {
            Language::Butane if self.butane_1_1() => Ok(()),
            Language::Butane => Err(self.error(
                location,
                format!("{field} needs Butane `version: 1.1.0` (this fragment is 1.0.0)"),
            )),
            Language::Ignition => Err(self.error(
                location,
                format!("{field} is Butane's, not Ignition's; give the contents in the config"),
            )),
        }
    }

    fn butane_1_1(&self) -> bool {
        self.butane == Some(super::butane::Version::V1_1)
    }

    /// One `authorized_keys` line, checked like a profile's keys (options refused).
    pub fn ssh_key(&self, location: Location, key: &str) -> Result<String, ProfileError> {
        crate::ssh::check_entry(key, false)
            .map_err(|e| self.error(location, format!("ssh_authorized_keys: {e}")))
    }
}
