//! The clouds and hypervisors a role's disk can be made for: each is Flatcar's generic image
//! with that platform's OEM installed (its signed `oem-<id>.raw` sysext, `oem-release` and a
//! `grub.cfg` naming the platform), at the platform's disk size, in its container format.
//!
//! The table follows Flatcar's own image builds (`build_library/vm_image_util.sh` and the
//! OEM `grub.cfg`s in flatcar/scripts). One difference on purpose: several of Flatcar's OEM
//! `grub.cfg`s turn on console autologin; here the profile decides (`kernel_args:
//! [flatcar.autologin]`, as `profiles/dev.yaml` does), so no platform adds it.

use crate::release::Board;

/// How the disk is packaged.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Container {
    /// The raw disk (`.raw`).
    Raw,
    /// qcow2 version 3 (`.qcow2`).
    Qcow2,
    /// A fixed VHD: the raw disk and a 512-byte footer (`.vhd`).
    VhdFixed,
    /// A gzip'd tar holding `disk.raw`, stored sparse (`.tar.gz`).
    GceTar,
}

impl Container {
    pub fn extension(self) -> &'static str {
        match self {
            Container::Raw => "raw",
            Container::Qcow2 => "qcow2",
            Container::VhdFixed => "vhd",
            Container::GceTar => "tar.gz",
        }
    }
}

/// How large the disk is made. What is added is left free after ROOT, the last partition:
/// Flatcar's first boot grows ROOT and then its filesystem into it (a ROOT entry grown at
/// build time would keep its ext4 at the image's size, since the first boot then sees
/// nothing to grow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// As the generic image is.
    Base,
    /// ROOT of at least this many 512-byte sectors (Flatcar's `vm` layout).
    RootAtLeast(u64),
    /// The whole disk at least this many sectors (Flatcar's `azure` layout).
    DiskAtLeast(u64),
    /// Exactly this many bytes (Exoscale takes 10 GiB disks only).
    Exactly(u64),
}

/// Flatcar's `vm` layout: ROOT 12943360 sectors (6.2 GiB).
const VM: Layout = Layout::RootAtLeast(12_943_360);
/// Flatcar's `azure` layout: a 63737856-sector (30.4 GiB) disk.
const AZURE: Layout = Layout::DiskAtLeast(63_737_856);
/// The first Flatcar release that published OEM sysexts (later platforms came later).
pub(crate) const FIRST_SYSEXT_RELEASE: u32 = 3760;

macro_rules! platforms {
    ($($variant:ident $name:literal),* $(,)?) => {
        /// A platform a role's disk is made for.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Platform { $($variant),* }

        impl Platform {
            pub(crate) const ALL: &'static [Platform] = &[$(Platform::$variant),*];

            /// The name in `--output`, profiles, file names and manifests.
            pub fn name(self) -> &'static str {
                match self { $(Platform::$variant => $name),* }
            }
        }
    };
}

platforms! {
    Qemu "qemu",
    Openstack "openstack",
    Proxmoxve "proxmoxve",
    Kubevirt "kubevirt",
    Scaleway "scaleway",
    Stackit "stackit",
    Nutanix "nutanix",
    Oraclecloud "oraclecloud",
    Cloudsigma "cloudsigma",
    Exoscale "exoscale",
    Azure "azure",
    Gce "gce",
    Hetzner "hetzner",
    Digitalocean "digitalocean",
    Akamai "akamai",
    Vmware "vmware",
}

impl Platform {
    pub fn parse(name: &str) -> Option<Platform> {
        Platform::ALL.iter().copied().find(|p| p.name() == name)
    }

    /// The OEM's ID: the sysext is `oem-<id>.raw`, and `oem-release` says `ID=<id>`.
    pub fn oem(self) -> &'static str {
        self.name()
    }

    /// What GRUB's `oem_id` is set to (the kernel's `flatcar.oem.id`, which Ignition and
    /// Afterburn read to find the platform's metadata): STACKIT speaks OpenStack's.
    pub fn oem_id(self) -> &'static str {
        match self {
            Platform::Stackit => "openstack",
            p => p.name(),
        }
    }

    /// A human name, for `oem-release` and messages.
    pub fn title(self) -> &'static str {
        match self {
            Platform::Qemu => "QEMU",
            Platform::Openstack => "OpenStack",
            Platform::Proxmoxve => "Proxmox VE",
            Platform::Kubevirt => "KubeVirt",
            Platform::Scaleway => "Scaleway",
            Platform::Stackit => "STACKIT",
            Platform::Nutanix => "Nutanix",
            Platform::Oraclecloud => "Oracle Cloud Infrastructure",
            Platform::Cloudsigma => "CloudSigma",
            Platform::Exoscale => "Exoscale",
            Platform::Azure => "Microsoft Azure",
            Platform::Gce => "Google Compute Engine",
            Platform::Hetzner => "Hetzner Cloud",
            Platform::Digitalocean => "DigitalOcean",
            Platform::Akamai => "Akamai (Linode)",
            Platform::Vmware => "VMware (raw disk)",
        }
    }

    pub fn container(self) -> Container {
        match self {
            Platform::Azure => Container::VhdFixed,
            Platform::Gce => Container::GceTar,
            Platform::Hetzner | Platform::Digitalocean | Platform::Akamai | Platform::Vmware => {
                Container::Raw
            }
            _ => Container::Qcow2,
        }
    }

    pub fn layout(self) -> Layout {
        match self {
            Platform::Azure => AZURE,
            Platform::Exoscale => Layout::Exactly(10 << 30),
            Platform::Digitalocean | Platform::Vmware | Platform::Cloudsigma => Layout::Base,
            _ => VM,
        }
    }

    /// Flatcar builds these for amd64 only.
    pub(crate) fn amd64_only(self) -> bool {
        matches!(
            self,
            Platform::Gce
                | Platform::Digitalocean
                | Platform::Vmware
                | Platform::Nutanix
                | Platform::Exoscale
                | Platform::Cloudsigma
        )
    }

    /// Why a role for `board` cannot be made for this platform, if it cannot. (Whether a
    /// release has the OEM is known only from its folder: see `sysext_file`.)
    pub(crate) fn unavailable(self, board: Board) -> Option<String> {
        (self.amd64_only() && board != Board::Amd64).then(|| {
            format!(
                "Flatcar makes {} images for amd64-usr only, not {board}",
                self.title()
            )
        })
    }

    /// The OEM partition's `grub.cfg`: the platform's `oem_id` and, for clouds that only
    /// have a serial console, the console (kato-image appends the role's arguments after).
    pub(crate) fn grub_cfg(self) -> String {
        let mut text = format!(
            "# Flatcar GRUB settings for {} (written by kato-image)\n\nset oem_id=\"{}\"\n",
            self.title(),
            self.oem_id()
        );
        match self {
            Platform::Gce => text.push_str(
                "\n# GCE has a serial console only.\nset linux_console=\"console=ttyS0,115200n8\"\nserial com0 --speed=115200 --word=8 --parity=no\nterminal_input serial_com0\nterminal_output serial_com0\n",
            ),
            Platform::Azure => text.push_str(
                "\n# Azure has a serial console only.\nserial --unit=0 --speed=115200 --word=8 --parity=no\nterminal_input serial\nterminal_output serial\nif [ \"$grub_cpu\" = arm64 ]; then\n  set linux_console=\"console=tty1 console=ttyAMA0,115200n8 earlycon=pl011,0xeffec000\"\nelse\n  set linux_console=\"console=tty1 console=ttyS0,115200n8 earlyprintk=ttyS0,115200\"\nfi\n",
            ),
            Platform::Scaleway => text.push_str(
                "set linux_console=\"console=ttyS0,115200n8 earlycon=ttyS0,115200\"\n",
            ),
            _ => {}
        }
        text
    }

    /// `/oem/oem-release`: Flatcar's initrd reads `ID` to find the sysext.
    pub fn oem_release(self, version: &str) -> String {
        format!(
            "ID={}\nVERSION_ID={version}\nNAME=\"{}\"\nBUG_REPORT_URL=\"https://issues.flatcar.org\"\n",
            self.oem(),
            self.title()
        )
    }

    /// The sysext's file name in the release folder.
    pub(crate) fn sysext_file(self) -> String {
        format!("oem-{}.raw", self.oem())
    }

    /// Where the sysext goes in the OEM filesystem, for Flatcar `version`'s initrd to find.
    pub(crate) fn sysext_path(self, version: &str) -> String {
        format!("sysext/oem-{}-{version}.raw", self.oem())
    }

    /// The empty file that marks the OEM active.
    pub(crate) fn active_path(self) -> String {
        format!("sysext/active-oem-{}", self.oem())
    }

    /// The names `--output` takes, for messages.
    pub fn names() -> String {
        Platform::ALL
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Platform {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Platform::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{} is not a platform kato-image makes images for (platforms: {})",
                crate::origin::quoted(&name),
                Platform::names()
            ))
        })
    }
}

impl serde::Serialize for Platform {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back() {
        for &p in Platform::ALL {
            assert_eq!(Platform::parse(p.name()), Some(p));
        }
        assert_eq!(Platform::parse("aws"), None);
    }

    #[test]
    fn no_platform_turns_on_autologin() {
        for &p in Platform::ALL {
            assert!(!p.grub_cfg().contains("autologin"), "{p}");
        }
    }

    #[test]
    fn boards_without_the_platform_are_named() {
        assert!(Platform::Gce.unavailable(Board::Arm64).is_some());
        assert!(Platform::Gce.unavailable(Board::Amd64).is_none());
        assert!(Platform::Azure.unavailable(Board::Arm64).is_none());
    }
}
