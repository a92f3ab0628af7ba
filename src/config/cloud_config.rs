//! Legacy `#cloud-config` for coreos-cloudinit on CoreOS Container Linux era hosts: units
//! under `coreos.units`, files under `write_files`, and the role as fleet metadata so that
//! `fleetctl` schedules the same units Káto's `[X-Fleet]` sections ask for.

use serde::Serialize;
use serde_saphyr::LitString;

use super::RenderError;
use crate::role::RolePlan;

#[derive(Serialize)]
struct CloudConfig {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ssh_authorized_keys: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    users: Vec<CloudUser>,
    write_files: Vec<WriteFile>,
    coreos: Coreos,
}

#[derive(Serialize)]
struct CloudUser {
    name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    groups: Vec<String>,
    #[serde(rename = "ssh-authorized-keys", skip_serializing_if = "Vec::is_empty")]
    ssh_authorized_keys: Vec<String>,
}

#[derive(Serialize)]
struct WriteFile {
    path: String,
    permissions: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'static str>,
    content: LitString,
}

#[derive(Serialize)]
struct Coreos {
    fleet: Fleet,
    units: Vec<CloudUnit>,
}

#[derive(Serialize)]
struct Fleet {
    metadata: String,
}

#[derive(Serialize)]
struct CloudUnit {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    enable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<LitString>,
    #[serde(rename = "drop-ins", skip_serializing_if = "Vec::is_empty")]
    drop_ins: Vec<CloudDropIn>,
}

#[derive(Serialize)]
struct CloudDropIn {
    name: String,
    content: LitString,
}

pub fn render(plan: &RolePlan) -> Result<Vec<u8>, RenderError> {
    if let Some(origin) = plan.fragments.first_origin() {
        return Err(RenderError::Unsupported(format!(
            "cloud-config cannot carry what the role's Butane and Ignition fragments add (the first at {origin}); render or build with Ignition, the default"
        )));
    }
    // The `core` user exists on every CoreOS host; its keys go to the top-level list.
    let ssh_authorized_keys = plan
        .users
        .iter()
        .filter(|u| u.name == "core")
        .flat_map(|u| u.ssh_authorized_keys.clone())
        .collect();
    let users = plan
        .users
        .iter()
        .filter(|u| u.name != "core")
        .map(|u| CloudUser {
            name: u.name.clone(),
            groups: u.groups.clone(),
            ssh_authorized_keys: u.ssh_authorized_keys.clone(),
        })
        .collect();
    let write_files = plan
        .files
        .iter()
        .map(|f| {
            let owner = match (&f.user, &f.group) {
                (None, None) => None,
                (user, group) => Some(format!(
                    "{}:{}",
                    user.as_deref().unwrap_or("root"),
                    group.as_deref().unwrap_or("root")
                )),
            };
            let (encoding, content) = match String::from_utf8(f.contents.clone()) {
                Ok(text) if !text.contains('\r') => (None, text),
                _ => (Some("b64"), base64(&f.contents)),
            };
            WriteFile {
                path: f.path.clone(),
                permissions: format!("0{:o}", f.mode),
                owner,
                encoding,
                content: LitString(content),
            }
        })
        .collect();
    let units = plan
        .units
        .iter()
        .map(|u| CloudUnit {
            name: u.name.clone(),
            enable: u.enabled.then_some(true),
            command: u.enabled.then_some("start"),
            content: u.contents.clone().map(LitString),
            drop_ins: u
                .dropins
                .iter()
                .map(|(name, content)| CloudDropIn {
                    name: name.clone(),
                    content: LitString(content.clone()),
                })
                .collect(),
        })
        .collect();
    let config = CloudConfig {
        ssh_authorized_keys,
        users,
        write_files,
        coreos: Coreos {
            fleet: Fleet {
                metadata: format!("role={}", plan.role),
            },
            units,
        },
    };
    // Plain scalars for one-line values: folding an SSH key over lines is valid YAML but
    // reads as two words to a person and to some parsers.
    let options = serde_saphyr::ser_options! { prefer_block_scalars: false };
    let yaml = serde_saphyr::to_string_with_options(&config, options).map_err(|e| {
        RenderError::Serialise {
            format: "cloud-config",
            message: e.to_string(),
        }
    })?;
    Ok(format!("#cloud-config\n{yaml}").into_bytes())
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let word = chunk
            .iter()
            .enumerate()
            .fold(0u32, |w, (i, &b)| w | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(word >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_known_vectors() {
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(super::base64(b"foob"), "Zm9vYg==");
        assert_eq!(super::base64(b"fooba"), "Zm9vYmE=");
    }
}
