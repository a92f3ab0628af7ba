//! Folding an `extends` chain into one profile: maps merge key by key, lists append,
//! scalars override. Values keep the file and position they were written at.

use std::path::Path;

use serde_saphyr::Spanned;

use super::load::Layer;
use super::schema::{FileDoc, ImageDoc, MachineDoc, OutputsDoc, Scalar, UnitEntryDoc};
use super::{
    AmiOutput, FileSpec, ImageSource, Instances, IpxeOutput, Located, Outputs, Profile,
    ProfileError, Release, UnitSpec, User,
};
use crate::input::Confinement;
use crate::origin::Origin;
use std::sync::Arc;

/// The largest file a profile's `files:` entry reads (`source:`): it goes into the config.
pub(crate) const MAX_FILE_SOURCE: u64 = crate::profile::fragment::MAX_LOCAL_FILE;

pub(super) fn merge(
    role: &str,
    chain: &[Arc<Layer>],
    confinement: &Confinement,
) -> Result<Profile, ProfileError> {
    let mut profile = Profile {
        role: role.to_string(),
        description: None,
        release: Release::default(),
        users: Vec::new(),
        files: Vec::new(),
        units: Vec::new(),
        kernel_args: Vec::new(),
        images: Vec::new(),
        data: Default::default(),
        outputs: Outputs::default(),
        metadata: Default::default(),
        machines: Vec::new(),
        fragments: Default::default(),
        sources: Vec::new(),
    };
    let mut fragment_sources = Vec::new();
    let mut outputs = OutputsDoc::default();
    for layer in chain {
        let at = |spanned_location| Origin::from_location(&layer.path, spanned_location);
        let doc = &layer.doc;
        profile.sources.push(super::SourceFile {
            path: layer.path.clone(),
            sha256: layer.sha256.clone(),
        });
        if let Some(description) = &doc.description {
            profile.description = Some(description.clone());
        }
        if let Some(release) = &doc.release {
            let r = &mut profile.release;
            r.channel = release.channel.unwrap_or(r.channel);
            if let Some(board) = &release.board {
                r.board = board.value;
                r.board_origin = Some(at(board.referenced));
            }
            if let Some(version) = &release.version {
                r.version = version.value.clone();
            }
            if let Some(url) = &release.url {
                r.url = Some(url.value.clone());
            }
        }
        for user in doc.users.iter().flatten() {
            for name in std::iter::once(&user.name.value).chain(&user.groups) {
                if !is_account_name(name) {
                    return Err(ProfileError::invalid(
                        at(user.name.referenced),
                        format!(
                            "users: {} is not a user or group name (lower-case letters, digits, `_` and `-`, starting with a letter or `_`, at most 32)",
                            crate::origin::quoted(name)
                        ),
                    ));
                }
            }
            let keys = user
                .ssh_authorized_keys
                .iter()
                .map(|key| {
                    crate::ssh::check_entry(&key.value, user.ssh_key_options).map_err(|e| {
                        ProfileError::invalid(
                            at(key.referenced),
                            format!("ssh_authorized_keys: {e}"),
                        )
                    })
                })
                .collect::<Result<Vec<String>, ProfileError>>()?;
            profile.users.push(User {
                name: user.name.value.clone(),
                groups: user.groups.clone(),
                ssh_authorized_keys: keys,
                origin: at(user.name.referenced),
            });
        }
        for file in doc.files.iter().flatten() {
            profile
                .files
                .push(file_spec(file, &layer.path, confinement)?);
        }
        for unit in doc.units.iter().flatten() {
            profile.units.push(unit_spec(unit, &layer.path)?);
        }
        for arg in doc.kernel_args.iter().flatten() {
            profile.kernel_args.push(Located {
                value: arg.value.clone(),
                origin: at(arg.referenced),
            });
        }
        for image in doc.images.iter().flatten() {
            let origin = at(image.referenced);
            profile.images.push(Located {
                value: image_source(&image.value, &layer.path, &origin, confinement)?,
                origin,
            });
        }
        if let Some(data) = &doc.data {
            for (field, slot, value) in [
                ("size", &mut profile.data.size, &data.size),
                ("headroom", &mut profile.data.headroom, &data.headroom),
            ] {
                if let Some(value) = value {
                    let origin = at(value.referenced);
                    let bytes = parse_size(&value.value).ok_or_else(|| {
                        ProfileError::invalid(
                            origin.clone(),
                            format!(
                                "data: {field} `{}` is not a size such as 512MiB, 4GiB or a byte count",
                                value.value
                            ),
                        )
                    })?;
                    *slot = Some(Located {
                        value: bytes,
                        origin,
                    });
                }
            }
        }
        for (key, value) in doc.metadata.iter().flatten() {
            profile.metadata.insert(
                key.clone(),
                Located {
                    value: value.value.to_string(),
                    origin: at(value.referenced),
                },
            );
        }
        for machine in doc.machines.iter().flatten() {
            let origin = at(machine.referenced);
            let value = resolve_machine(&machine.value).map_err(|message| {
                ProfileError::invalid(origin.clone(), format!("machines: {message}"))
            })?;
            profile.machines.push(Located { value, origin });
        }
        if let Some(doc_outputs) = &doc.outputs {
            merge_outputs(&mut outputs, doc_outputs);
        }
        for entry in doc.ignition.iter().flatten() {
            let fragment =
                super::fragment::load(entry, &layer.path, confinement, &mut fragment_sources)?;
            profile.fragments.merge(fragment)?;
        }
    }
    profile.outputs = resolve_outputs(outputs);
    profile.sources.extend(fragment_sources);
    bake_fragment_kernel_args(&mut profile)?;
    Ok(profile)
}

/// The arguments fragments want go on the image's command line with the profile's own (so
/// that they hold from the first boot, also over iPXE, without Ignition's kargs reboot);
/// one they want gone may not be one the profile adds.
fn bake_fragment_kernel_args(profile: &mut Profile) -> Result<(), ProfileError> {
    for absent in &profile.fragments.kernel_args_absent {
        if let Some(own) = profile.kernel_args.iter().find(|a| a.value == absent.value) {
            return Err(ProfileError::invalid(
                absent.origin.clone(),
                format!(
                    "kernel_arguments: `{}` must not exist, but the profile adds it at {}",
                    crate::origin::printable(&absent.value),
                    own.origin
                ),
            ));
        }
    }
    for arg in std::mem::take(&mut profile.fragments.kernel_args) {
        if !profile.kernel_args.iter().any(|a| a.value == arg.value) {
            profile.kernel_args.push(arg);
        }
    }
    Ok(())
}

fn image_source(
    doc: &ImageDoc,
    profile_path: &Path,
    origin: &Origin,
    confinement: &Confinement,
) -> Result<ImageSource, ProfileError> {
    let invalid = |why: String| ProfileError::invalid(origin.clone(), format!("images: {why}"));
    let (reference, archive, sha256) = match doc {
        ImageDoc::Reference(text) => (Some(text), None, None),
        ImageDoc::Full(spec) => (
            spec.reference.as_ref(),
            spec.archive.as_ref(),
            spec.sha256.as_ref(),
        ),
    };
    match (reference, archive) {
        (Some(text), None) => {
            if sha256.is_some() {
                return Err(invalid(
                    "`sha256` goes with `archive`; pin a registry image in its reference (`name:tag@sha256:...`)".into(),
                ));
            }
            crate::oci::Reference::parse(text)
                .map(ImageSource::Registry)
                .map_err(|e| invalid(e.to_string()))
        }
        (None, Some(path)) => {
            let sha256 = match sha256 {
                Some(digest) => {
                    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
                    crate::oci::reference::check_digest(&format!("sha256:{hex}"))
                        .map_err(&invalid)?;
                    Some(hex.to_string())
                }
                None => None,
            };
            let dir = profile_path.parent().unwrap_or(Path::new("."));
            let path = dir.join(path);
            // One that is missing is told when the build is planned.
            if path.symlink_metadata().is_ok() {
                confinement
                    .resolve(&path)
                    .map_err(|e| invalid(e.to_string()))?;
            }
            Ok(ImageSource::Archive { path, sha256 })
        }
        (Some(_), Some(_)) => Err(invalid(
            "an image has a `reference` or an `archive`, not both".into(),
        )),
        (None, None) => Err(invalid(
            "an image needs a `reference` or an `archive`".into(),
        )),
    }
}

/// `4GiB`, `512MiB`, `100MB`, `4096`: bytes.
fn parse_size(value: &Scalar) -> Option<u64> {
    let text = value.to_string();
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "TiB" | "T" => 1 << 40,
        "kB" | "KB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    number.checked_mul(factor)
}

fn file_spec(
    file: &FileDoc,
    profile_path: &Path,
    confinement: &Confinement,
) -> Result<FileSpec, ProfileError> {
    let origin = Origin::from_location(profile_path, file.path.referenced);
    let mode = match &file.mode {
        None => 0o644,
        Some(mode) => parse_mode(&mode.value).ok_or_else(|| {
            ProfileError::invalid(
                Origin::from_location(profile_path, mode.referenced),
                format!(
                    "files: mode `{}` is not an octal permission such as \"0644\"",
                    mode.value
                ),
            )
        })?,
    };
    // Spec 3.3.0 has no setuid, setgid or sticky bits: Ignition would drop them with only a
    // warning in the journal, so the file would exist without the bit the profile asked for.
    if mode & 0o7000 != 0 {
        let at = file
            .mode
            .as_ref()
            .map_or(file.path.referenced, |m| m.referenced);
        return Err(ProfileError::invalid(
            Origin::from_location(profile_path, at),
            format!(
                "files: mode {mode:04o} of `{}` sets setuid, setgid or sticky bits; they need {}, and kato-image renders spec {} so that every channel applies its configs",
                file.path.value,
                crate::config::ignition::NEWER_SPEC_ACCEPTED_BY,
                crate::config::ignition::SPEC_VERSION
            ),
        ));
    }
    let contents = match (&file.contents, &file.source) {
        (Some(text), None) => text.clone().into_bytes(),
        (None, Some(source)) => {
            let folder = profile_path.parent().unwrap_or(Path::new("."));
            let path = folder.join(&source.value);
            confinement
                .read(&path, MAX_FILE_SOURCE, "file in a config")
                .map_err(|e| {
                    ProfileError::invalid(
                        Origin::from_location(profile_path, source.referenced),
                        format!("files: source: {e}"),
                    )
                })?
        }
        (Some(_), Some(_)) => {
            return Err(ProfileError::invalid(
                origin,
                format!(
                    "files: `{}` has both `contents` and `source`; give one",
                    file.path.value
                ),
            ));
        }
        (None, None) => Vec::new(),
    };
    for (field, name) in [("user", &file.user), ("group", &file.group)] {
        if let Some(name) = name
            && !is_account_name(name)
        {
            return Err(ProfileError::invalid(
                origin,
                format!(
                    "files: {field} {} of `{}` is not a user or group name (lower-case letters, digits, `_` and `-`, starting with a letter or `_`, at most 32)",
                    crate::origin::quoted(name),
                    file.path.value
                ),
            ));
        }
    }
    Ok(FileSpec {
        path: file.path.value.clone(),
        mode,
        user: file.user.clone(),
        group: file.group.clone(),
        contents,
        origin,
    })
}

/// A user or group name as `useradd` takes it (and a file's owner can name).
pub(super) fn is_account_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && name.len() <= 32
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

fn parse_mode(text: &str) -> Option<u32> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || digits.len() > 4 {
        return None;
    }
    u32::from_str_radix(digits, 8).ok()
}

fn unit_spec(
    entry: &Spanned<UnitEntryDoc>,
    profile_path: &Path,
) -> Result<Located<UnitSpec>, ProfileError> {
    let origin = Origin::from_location(profile_path, entry.referenced);
    let spec = match &entry.value {
        UnitEntryDoc::Name(name) => UnitSpec {
            name: name.clone(),
            contents: None,
            enabled: None,
            instances: Instances::Unspecified,
        },
        UnitEntryDoc::Full(unit) => {
            let instances = match (&unit.instances, unit.instance_from) {
                (Some(_), Some(_)) => {
                    return Err(ProfileError::invalid(
                        origin,
                        format!(
                            "units: `{}` has both `instances` and `instance_from`; give one",
                            unit.name
                        ),
                    ));
                }
                (Some(list), None) => Instances::Fixed(list.clone()),
                (None, Some(source)) => Instances::FromNode(source),
                (None, None) => Instances::Unspecified,
            };
            UnitSpec {
                name: unit.name.clone(),
                contents: unit.contents.clone(),
                enabled: unit.enabled,
                instances,
            }
        }
    };
    crate::unit::check_name(&spec.name)
        .map_err(|e| ProfileError::invalid(origin.clone(), format!("units: {e}")))?;
    Ok(Located {
        value: spec,
        origin,
    })
}

/// A machine entry, checked: a MAC address (lower case), a member number from 1 to 255 (what
/// ZooKeeper accepts as `myid`), a host name of RFC 1123 labels.
fn resolve_machine(doc: &MachineDoc) -> Result<super::Machine, String> {
    let (mac, instance, hostname) = match doc {
        MachineDoc::Mac(mac) => (mac, None, None),
        MachineDoc::Full(full) => (&full.mac, full.instance, full.hostname.clone()),
    };
    let normal = mac.to_ascii_lowercase();
    let valid = normal.len() == 17
        && normal.split(':').count() == 6
        && normal
            .split(':')
            .all(|b| b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit()));
    if !valid {
        return Err(format!(
            "{} is not a MAC address like 52:54:00:12:34:56",
            crate::origin::quoted(mac)
        ));
    }
    if let Some(n) = instance
        && !(1..=255).contains(&n)
    {
        return Err(format!(
            "instance {n} of {normal} is not a member number from 1 to 255"
        ));
    }
    if let Some(name) = &hostname
        && !is_hostname(name)
    {
        return Err(format!(
            "hostname {} of {normal} is not a host name (lower-case letters, digits and `-` in labels of up to 63, separated by `.`)",
            crate::origin::quoted(name)
        ));
    }
    Ok(super::Machine {
        mac: normal,
        instance,
        hostname,
    })
}

pub(super) fn is_hostname(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

fn merge_outputs(into: &mut OutputsDoc, from: &OutputsDoc) {
    if from.raw.is_some() {
        into.raw = from.raw.clone();
    }
    if from.platforms.is_some() {
        into.platforms = from.platforms.clone();
    }
    if let Some(ami) = &from.ami {
        let base = into.ami.get_or_insert_with(Default::default);
        macro_rules! take {
            ($($field:ident),*) => { $( if ami.$field.is_some() { base.$field = ami.$field.clone(); } )* };
        }
        take!(
            regions,
            boot_mode,
            imds_v2,
            tpm,
            public,
            volume_type,
            volume_size,
            iops,
            throughput
        );
    }
    if let Some(ipxe) = &from.ipxe {
        let base = into.ipxe.get_or_insert_with(Default::default);
        macro_rules! take {
            ($($field:ident),*) => { $( if ipxe.$field.is_some() { base.$field = ipxe.$field.clone(); } )* };
        }
        take!(preset, console, base_url, autologin, unknown);
    }
}

fn resolve_outputs(doc: OutputsDoc) -> Outputs {
    Outputs {
        raw: doc.raw.is_some(),
        platforms: doc.platforms.unwrap_or_default(),
        ami: doc.ami.map(|ami| {
            let default = AmiOutput::default();
            AmiOutput {
                regions: ami.regions.unwrap_or(default.regions),
                boot_mode: ami.boot_mode.unwrap_or(default.boot_mode),
                imds_v2: ami.imds_v2.unwrap_or(default.imds_v2),
                tpm: ami.tpm.unwrap_or(default.tpm),
                public: ami.public.unwrap_or(default.public),
                volume_type: ami.volume_type.unwrap_or(default.volume_type),
                volume_size_gib: ami.volume_size.unwrap_or(default.volume_size_gib),
                iops: ami.iops,
                throughput: ami.throughput,
            }
        }),
        ipxe: doc.ipxe.map(|ipxe| {
            let default = IpxeOutput::default();
            IpxeOutput {
                preset: ipxe.preset.unwrap_or(default.preset),
                console: ipxe.console.or(default.console),
                base_url: ipxe.base_url.or(default.base_url),
                autologin: ipxe.autologin.unwrap_or(default.autologin),
                unknown: ipxe.unknown.unwrap_or(default.unknown),
            }
        }),
    }
}
