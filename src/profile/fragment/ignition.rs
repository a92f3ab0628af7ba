//! Ignition JSON fragments, spec 3.0.0 to 3.4.0, read with the same YAML parser as
//! profiles (JSON is YAML's flow style), which gives every value its line and column.
//! Contents must be `data:` URLs; they are kept as written (with their `compression` and
//! `verification`), after checking that they decode and match their hash.

use super::doc;
use super::translate;

doc::sections!("camelCase");
translate::conversions!();

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ConfigDoc {
    ignition: IgnitionDoc,
    storage: Option<StorageDoc>,
    systemd: Option<SystemdDoc>,
    passwd: Option<PasswdDoc>,
    kernel_arguments: Option<Spanned<KernelArgumentsDoc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IgnitionDoc {
    version: Spanned<String>,
    config: Refused,
    timeouts: Refused,
    security: Refused,
    proxy: Refused,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ResourceDoc {
    source: Option<Spanned<String>>,
    compression: Option<Spanned<String>>,
    verification: Option<VerificationDoc>,
    http_headers: Refused,
}

/// Just the version, read first: a spec 2.x config has other keys altogether, and is told
/// as such rather than by its first key the 3.x sections lack.
#[derive(Debug, Deserialize)]
struct VersionOnly {
    ignition: Option<VersionOnlyIgnition>,
}

#[derive(Debug, Deserialize)]
struct VersionOnlyIgnition {
    version: Option<Spanned<String>>,
}

/// Keys only Butane has, which the parser would offer as expected for Ignition too (one
/// declaration serves both spellings).
const BUTANE_ONLY: [&str; 3] = ["contentsLocal", "sshAuthorizedKeysLocal", "trees"];

pub(super) fn translate(text: &str, cx: &mut Cx) -> Result<(), ProfileError> {
    if let Ok(VersionOnly {
        ignition: Some(VersionOnlyIgnition {
            version: Some(version),
        }),
    }) = serde_saphyr::from_str::<VersionOnly>(text)
        && !version.value.starts_with("3.")
    {
        return Err(cx.error(
            version.referenced,
            format!(
                "ignition.version: {} is not spec 3.x, the only one Flatcar's Ignition reads (kato-image reads 3.0.0 to 3.4.0; translate a spec 2 config with ign-converter first)",
                crate::origin::quoted(&version.value)
            ),
        ));
    }
    let config: ConfigDoc = serde_saphyr::from_str(text).map_err(|e| {
        match crate::profile::load::parse_error(&cx.file, &e) {
            ProfileError::Parse { origin, message } => ProfileError::Parse {
                origin,
                message: without_butane_keys(&message),
            },
            other => other,
        }
    })?;
    let version = &config.ignition.version;
    let minor = match version.value.as_str() {
        "3.0.0" => 0,
        "3.1.0" => 1,
        "3.2.0" => 2,
        "3.3.0" => 3,
        "3.4.0" => 4,
        other => {
            return Err(cx.error(
                version.referenced,
                format!(
                    "ignition.version: {} is not a spec kato-image reads (3.0.0 to 3.4.0; it renders {})",
                    crate::origin::quoted(other),
                    crate::config::ignition::SPEC_VERSION
                ),
            ));
        }
    };
    let i = &config.ignition;
    cx.refuse_ignition_section([&i.config, &i.timeouts, &i.security, &i.proxy])?;
    if let Some(storage) = &config.storage {
        if let Some(trees) = &storage.trees {
            let at = trees.first().map_or(Location::UNKNOWN, |t| t.referenced);
            return Err(cx.error(
                at,
                "storage.trees is Butane's, not Ignition's; list the files, or write the fragment in Butane",
            ));
        }
        storage.add(cx)?;
    }
    if let Some(systemd) = &config.systemd {
        systemd.add(cx)?;
    }
    if let Some(passwd) = &config.passwd {
        passwd.add(cx)?;
    }
    if let Some(args) = &config.kernel_arguments {
        if minor < 3 {
            return Err(cx.error(
                args.referenced,
                format!(
                    "kernelArguments needs spec 3.3.0 or later (this config is {})",
                    version.value
                ),
            ));
        }
        args.value.add(cx, "kernelArguments")?;
    }
    Ok(())
}

impl ResourceDoc {
    fn to_ign(
        &self,
        cx: &mut Cx,
        location: Location,
    ) -> Result<Option<ign::Resource>, ProfileError> {
        let hash = resource_hash(cx, &self.http_headers, &self.verification)?;
        match &self.source {
            Some(source) => cx
                .data_source(source, self.compression.as_ref(), hash)
                .map(Some),
            None if self.compression.is_some() || hash.is_some() => Err(cx.error(
                location,
                "contents: `compression` and `verification` need a `source`",
            )),
            None => Ok(None),
        }
    }
}

/// A parser message's list of expected keys without Butane's own.
fn without_butane_keys(message: &str) -> String {
    let Some((head, list)) = message.split_once("expected one of ") else {
        return message.to_string();
    };
    let kept: Vec<&str> = list
        .split(", ")
        .filter(|key| !BUTANE_ONLY.contains(&key.trim_matches('`')))
        .collect();
    format!("{head}expected one of {}", kept.join(", "))
}
