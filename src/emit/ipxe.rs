//! iPXE payloads: the PXE kernel and initramfs under content-addressed names shared by all
//! roles, one gzip'd cpio overlay per role holding its config where Flatcar's initrd reads it
//! (`usr/share/oem/config.ign`, and `oem/config.ign` for newer initrds), and a `<role>.ipxe`
//! script. URLs in scripts are relative (iPXE resolves them against the script's own URL)
//! unless a base URL is given.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::cpio;
use crate::build::plan::MachineMap;
use crate::cache::hex;
use crate::io::{At, PathError};
use crate::profile::{IpxeOutput, IpxePreset, UnknownMachine};
use crate::release::{FetchedArtifact, PxeFiles};

/// The files of a role's payload, each with its digest, taken from the bytes as they were
/// written (the script and overlay) or from the verified vendor file (the kernel and
/// initramfs, copied as they are): nothing is read back to describe them.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct IpxeRecord {
    pub script: String,
    #[serde(default)]
    pub(crate) script_sha256: String,
    pub kernel: String,
    #[serde(default)]
    pub(crate) kernel_sha512: String,
    pub initramfs: String,
    #[serde(default)]
    pub(crate) initramfs_sha512: String,
    pub overlay: String,
    pub(crate) overlay_sha256: String,
    pub kernel_args: Vec<String>,
}

/// The overlay archive: the config at both paths Flatcar's initrds read, with folders.
pub fn overlay(config: &[u8], mtime: u32) -> Vec<u8> {
    let file = cpio::Node::File {
        mode: super::oem::CONFIG_MODE,
        data: config.to_vec(),
    };
    let entries = BTreeMap::from([
        ("oem/config.ign".to_string(), file.clone()),
        ("usr/share/oem/config.ign".to_string(), file),
    ]);
    let archive = cpio::archive(&entries, mtime);
    // gzip with no name and mtime 0: the same config gives the same bytes.
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    encoder.write_all(&archive).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

/// Kernel arguments for a role: first boot, the console of the preset, autologin
/// if asked, the profile's arguments, and `initrd=` for each initrd (UEFI iPXE needs them).
pub fn kernel_args(
    settings: &IpxeOutput,
    profile_args: &[String],
    initrds: &[&str],
) -> Vec<String> {
    let mut args = vec!["flatcar.first_boot=1".to_string()];
    // The last `console=` is /dev/console. Flatcar's GRUB keeps the screen primary
    // (`console=ttyS0,115200n8 console=tty0`), and so does `metal`. `packet` keeps the serial
    // port Equinix Metal's machines had, and no `flatcar.oem.id=packet`: that makes Flatcar's
    // initrd fetch its metadata service (gone since 2026-06-30) or drop to the emergency shell.
    match settings.console.as_deref() {
        Some(console) => args.push(format!("console={console}")),
        None => match settings.preset {
            IpxePreset::Metal => {
                args.extend(["console=ttyS0,115200n8".into(), "console=tty0".into()])
            }
            IpxePreset::Packet => args.push("console=ttyS1,115200n8".into()),
        },
    }
    if settings.autologin {
        args.push("flatcar.autologin".into());
    }
    args.extend(profile_args.iter().cloned());
    args.extend(initrds.iter().map(|name| format!("initrd={name}")));
    args
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PathError> {
    crate::atomic::write_atomic(path, bytes).at(path)
}

/// Copies a cached artifact to `dir/name` unless it is already there (names are content
/// addresses, so a present file is the right one).
fn place(from: &Path, dir: &Path, name: &str) -> Result<(), PathError> {
    let to = dir.join(name);
    if to.exists() {
        return Ok(());
    }
    let temp = crate::atomic::temp_path(&to);
    std::fs::copy(from, &temp).at(&to)?;
    crate::atomic::commit(&temp, &to).at(&to)
}

/// Content-addressed name: `stem-<first 16 hex of the digest>.ext`.
fn addressed(file: &str, digest: &str) -> String {
    match file.split_once('.') {
        Some((stem, ext)) => format!("{stem}-{}.{ext}", &digest[..16]),
        None => format!("{file}-{}", &digest[..16]),
    }
}

/// The iPXE setting `boot.ipxe` puts a machine's identity in (`kato.instance=N
/// kato.hostname=NAME`) for its role's script to pass to the kernel.
pub(crate) const IDENTITY_VAR: &str = "kato_identity";

/// What one role puts into its payload.
pub struct RolePayload<'a> {
    pub role: &'a str,
    pub config: &'a [u8],
    /// The profile's kernel arguments.
    pub kernel_args: &'a [String],
    /// mtime of the overlay's entries.
    pub(crate) mtime: u32,
    /// A comment line for the script.
    pub header: &'a str,
}

/// Writes `dir/<kernel>`, `dir/<initramfs>`, `dir/<role>-<hash>.cpio.gz` and
/// `dir/<role>.ipxe`.
pub fn emit(
    dir: &Path,
    payload: &RolePayload,
    settings: &IpxeOutput,
    pxe: &PxeFiles,
) -> Result<IpxeRecord, PathError> {
    let RolePayload {
        role,
        config,
        kernel_args: profile_args,
        mtime,
        header,
    } = *payload;
    std::fs::create_dir_all(dir).at(dir)?;
    let name = |a: &FetchedArtifact| addressed(&a.record.file, &a.record.sha512);
    let (kernel, initramfs) = (name(&pxe.kernel), name(&pxe.initramfs));
    place(&pxe.kernel.path, dir, &kernel)?;
    place(&pxe.initramfs.path, dir, &initramfs)?;
    let overlay_bytes = overlay(config, mtime);
    let overlay_sha256 = hex(&Sha256::digest(&overlay_bytes));
    let overlay_name = format!("{role}-{}.cpio.gz", &overlay_sha256[..16]);
    write_atomic(&dir.join(&overlay_name), &overlay_bytes)?;
    let args = kernel_args(settings, profile_args, &[&initramfs, &overlay_name]);
    let base = settings
        .base_url
        .as_deref()
        .map(|u| {
            if u.ends_with('/') {
                u.to_string()
            } else {
                format!("{u}/")
            }
        })
        .unwrap_or_default();
    // A machine chained from boot.ipxe has its identity set; one booted straight from this
    // script has none, and the setting expands to nothing.
    let script = format!(
        "#!ipxe\n# {header}\nkernel {base}{kernel} {} ${{{IDENTITY_VAR}}}\ninitrd {base}{initramfs}\ninitrd {base}{overlay_name}\nboot\n",
        args.join(" ")
    );
    let script_name = format!("{role}.ipxe");
    write_atomic(&dir.join(&script_name), script.as_bytes())?;
    Ok(IpxeRecord {
        script: script_name,
        script_sha256: hex(&Sha256::digest(script.as_bytes())),
        kernel,
        kernel_sha512: pxe.kernel.record.sha512.clone(),
        initramfs,
        initramfs_sha512: pxe.initramfs.record.sha512.clone(),
        overlay: overlay_name,
        overlay_sha256,
        kernel_args: args,
    })
}

/// `boot.ipxe`: chains each listed machine (by `${net0/mac}`) to its role's script; any
/// other machine gets `unknown`: an error on the console, or a menu of roles.
pub(crate) fn machine_map(dir: &Path, map: &MachineMap) -> Result<String, PathError> {
    let MachineMap {
        machines,
        roles,
        unknown,
    } = map;
    let mut script = String::from(
        "#!ipxe\n# kato-image machine map: each machine boots its role by MAC address.\n",
    );
    for (mac, machine) in machines {
        // What the role's script puts on the kernel command line for this machine.
        let mut identity = Vec::new();
        if let Some(n) = machine.instance {
            identity.push(format!("kato.instance={n}"));
        }
        if let Some(name) = &machine.hostname {
            identity.push(format!("kato.hostname={name}"));
        }
        let set = match identity.is_empty() {
            true => String::new(),
            false => format!("set {IDENTITY_VAR} {} && ", identity.join(" ")),
        };
        script.push_str(&format!(
            "iseq ${{net0/mac}} {mac} && {set}chain --autofree {}.ipxe ||\n",
            machine.role
        ));
    }
    match unknown {
        UnknownMachine::Error => {
            script
                .push_str("echo kato-image: no role for machine ${net0/mac} in the machine map\n");
            script.push_str(
                "echo Add its MAC address to the machines: list of a role profile and rebuild.\n",
            );
            script.push_str("sleep 60\nexit 1\n");
        }
        UnknownMachine::Menu => {
            script.push_str("menu kato-image: machine ${net0/mac} has no role. Boot as:\n");
            for role in roles {
                script.push_str(&format!("item {role} {role}\n"));
            }
            script.push_str("choose role && chain --autofree ${role}.ipxe || exit 1\n");
        }
    }
    let path = dir.join("boot.ipxe");
    write_atomic(&path, script.as_bytes())?;
    Ok(script)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_holds_both_paths_with_their_folders() {
        let bytes = overlay(b"{}", 5);
        let mut decoded = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut decoded)
            .unwrap();
        let names: Vec<String> = cpio::list(&decoded)
            .unwrap()
            .into_iter()
            .map(|(n, _, _)| n)
            .collect();
        assert_eq!(
            names,
            [
                "oem",
                "oem/config.ign",
                "usr",
                "usr/share",
                "usr/share/oem",
                "usr/share/oem/config.ign"
            ]
        );
        assert_eq!(overlay(b"{}", 5), bytes, "deterministic");
    }

    #[test]
    fn presets() {
        let packet = IpxeOutput {
            preset: IpxePreset::Packet,
            ..IpxeOutput::default()
        };
        let args = kernel_args(&packet, &["a=b".into()], &["x.cpio.gz"]);
        assert_eq!(
            args,
            [
                "flatcar.first_boot=1",
                "console=ttyS1,115200n8",
                "a=b",
                "initrd=x.cpio.gz"
            ]
        );
        let metal = IpxeOutput {
            autologin: true,
            ..IpxeOutput::default()
        };
        let args = kernel_args(&metal, &[], &[]);
        assert!(args.contains(&"flatcar.autologin".to_string()));
        let consoles: Vec<&str> = args
            .iter()
            .filter(|a| a.starts_with("console="))
            .map(String::as_str)
            .collect();
        assert_eq!(
            consoles,
            ["console=ttyS0,115200n8", "console=tty0"],
            "the screen last, as Flatcar's GRUB"
        );
    }

    #[test]
    fn scripts_use_relative_urls_unless_given_a_base() {
        let dir = tempfile_dir();
        let kernel = dir.join("k");
        std::fs::write(&kernel, b"kernel").unwrap();
        let artifact = |file: &str, sha512: String| FetchedArtifact {
            record: crate::cache::ArtifactRecord {
                file: file.into(),
                url: String::new(),
                sha512,
                size: 6,
                signature: None,
                digests_asc_verified: false,
            },
            path: kernel.clone(),
            from_cache: true,
        };
        let inputs = PxeFiles {
            kernel: artifact("flatcar_production_pxe.vmlinuz", "ab".repeat(64)),
            initramfs: artifact("flatcar_production_pxe_image.cpio.gz", "cd".repeat(64)),
        };
        let payload = RolePayload {
            role: "edge",
            config: b"{}",
            kernel_args: &[],
            mtime: 0,
            header: "test",
        };
        let mut settings = IpxeOutput::default();
        emit(&dir.join("out"), &payload, &settings, &inputs).unwrap();
        let script = std::fs::read_to_string(dir.join("out/edge.ipxe")).unwrap();
        assert!(
            script.contains(
                "\nkernel flatcar_production_pxe-abababababababab.vmlinuz flatcar.first_boot=1"
            ),
            "{script}"
        );
        settings.base_url = Some("http://boot.example/kato".into());
        emit(&dir.join("out"), &payload, &settings, &inputs).unwrap();
        let script = std::fs::read_to_string(dir.join("out/edge.ipxe")).unwrap();
        assert!(script.contains("\ninitrd http://boot.example/kato/flatcar_production_pxe_image-cdcdcdcdcdcdcdcd.cpio.gz\n"), "{script}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("kato-ipxe-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
