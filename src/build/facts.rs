//! What a role's outputs are stamped with before any is written: the build ID and the
//! time its files get.

use sha2::{Digest, Sha256};

use super::gather::RoleInputs;
use super::plan::PlannedRole;
use crate::cache::hex;

/// What a role's outputs are named and stamped with, known before any of them is written:
/// the time its files get and its build ID.
#[derive(Debug, Clone)]
pub(crate) struct RoleFacts {
    pub timestamp: i64,
    pub build_id: String,
}

impl RoleFacts {
    /// The time is `SOURCE_DATE_EPOCH`, else the first vendor file's signature time. The
    /// build ID is derived from everything that decides the outputs' bytes and how they are
    /// published: same ID, same build.
    pub fn new(role: &PlannedRole, inputs: &RoleInputs, source_date_epoch: Option<i64>) -> Self {
        let vendor = &inputs.vendor;
        let signed = vendor
            .iter()
            .find_map(|a| a.signature.as_ref())
            .map(|s| s.created as i64);
        let timestamp = source_date_epoch.or(signed).unwrap_or(0);
        let settings = serde_json::json!({
            "tool": env!("CARGO_PKG_VERSION"),
            "role": role.name(),
            "vendor": vendor.iter().map(|a| &a.sha512).collect::<Vec<_>>(),
            "profiles": role.profile.sources.iter().map(|s| &s.sha256).collect::<Vec<_>>(),
            "config": role.config.sha256,
            "kernel_args": role.plan.kernel_args,
            "timestamp": timestamp,
            "images": inputs.images.iter().map(|i| &i.sha256).collect::<Vec<_>>(),
            "disks": role.disks,
            "ipxe": role.ipxe.as_ref().map(|i| serde_json::json!({
                "preset": i.preset, "console": i.console, "base_url": i.base_url,
                "autologin": i.autologin, "unknown": i.unknown,
            })),
            "ami": role.ami.as_ref().map(|a| serde_json::json!({
                "regions": a.regions, "boot_mode": a.boot_mode, "imds_v2": a.imds_v2,
                "tpm": a.tpm, "public": a.public, "volume_type": a.volume_type,
                "volume_size_gib": a.volume_size_gib, "iops": a.iops, "throughput": a.throughput,
            })),
        });
        RoleFacts {
            timestamp,
            build_id: hex(&Sha256::digest(settings.to_string().as_bytes()))[..32].to_string(),
        }
    }
}
