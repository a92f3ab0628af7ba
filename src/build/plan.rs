//! The build plan: every role's config, release and outputs, and everything about them that
//! can be checked, decided before anything is fetched or written. Pure: the same profiles
//! and request give the same plan.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{self, Format, RenderedConfig};
use crate::origin::Origin;
use crate::platform::Platform;
use crate::profile::{AmiOutput, ImageSource, IpxeOutput, Profile, UnknownMachine};
use crate::project::{Project, ProjectError};
use crate::release::{Board, ReleaseSpec};
use crate::role::RolePlan;

/// What a build can emit for a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OutputKind {
    /// `OUT/<role>.raw` from Flatcar's generic image.
    Raw,
    /// `OUT/ipxe/`: the PXE kernel and initramfs, the role's overlay and script.
    Ipxe,
    /// An AMI, uploaded from `OUT/<role>-ami.raw`, made from Flatcar's EC2 image.
    Ami,
    /// `OUT/<role>-<platform>.<format>` from Flatcar's generic image with the platform's OEM.
    Platform(Platform),
}

/// A disk image a role gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DiskKind {
    Raw,
    Ami,
    Platform(Platform),
}

/// As in build IDs: `raw`, `ami`, or the platform's name.
impl serde::Serialize for DiskKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            DiskKind::Raw => "raw",
            DiskKind::Ami => "ami",
            DiskKind::Platform(p) => p.name(),
        })
    }
}

/// The vendor disk images roles are made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VendorDisk {
    /// `flatcar_production_image.bin.bz2`: raw and every platform disk.
    Generic,
    /// `flatcar_production_ami_image.bin.bz2`.
    Ami,
}

impl VendorDisk {
    pub fn file(self) -> &'static str {
        match self {
            VendorDisk::Generic => crate::release::IMAGE_FILE,
            VendorDisk::Ami => crate::release::AMI_IMAGE_FILE,
        }
    }
}

impl DiskKind {
    /// The vendor image it is made from: one decompression serves raw and all platforms.
    pub fn vendor(self) -> VendorDisk {
        match self {
            DiskKind::Ami => VendorDisk::Ami,
            DiskKind::Raw | DiskKind::Platform(_) => VendorDisk::Generic,
        }
    }

    /// Its name in the output folder.
    pub fn file_name(self, role: &str) -> String {
        match self {
            DiskKind::Raw => format!("{role}.raw"),
            DiskKind::Ami => format!("{role}-ami.raw"),
            DiskKind::Platform(p) => format!("{role}-{p}.{}", p.container().extension()),
        }
    }

    pub fn platform(self) -> Option<Platform> {
        match self {
            DiskKind::Platform(p) => Some(p),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error("{origin}: {message}")]
    Invalid { origin: Origin, message: String },
    #[error("no roles to build")]
    NoRoles,
    /// What the command line asks for cannot be made (the profiles are not at fault).
    #[error("{0}")]
    Request(String),
}

fn invalid(origin: &Origin, message: String) -> PlanError {
    PlanError::Invalid {
        origin: origin.clone(),
        message,
    }
}

/// What the plan is made from.
pub struct PlanRequest<'a> {
    pub project: &'a Project,
    pub roles: &'a [String],
    /// What to emit for every role; `None`: what each profile's `outputs:` lists (a raw image
    /// if it lists nothing).
    pub outputs: Option<&'a [OutputKind]>,
    /// The release a role is built from, given its profile (command-line flags applied).
    pub release: &'a dyn Fn(&Profile) -> ReleaseSpec,
    /// URL prefix for the files iPXE scripts name, over the profile's `outputs.ipxe.base_url`.
    pub ipxe_base_url: Option<&'a str>,
    /// Bake registry images named by tag alone.
    pub allow_unpinned: bool,
    /// What the machines are configured by: Ignition, or cloud-config written by Ignition
    /// for coreos-cloudinit.
    pub config_format: Format,
}

/// One role, planned.
#[derive(Debug, Clone)]
pub struct PlannedRole {
    pub profile: Profile,
    pub plan: RolePlan,
    /// The Ignition config baked in (see `config::baked`), rendered once.
    pub config: RenderedConfig,
    pub release: ReleaseSpec,
    /// Disk images to make, in this order.
    pub disks: Vec<DiskKind>,
    /// With an iPXE output: its settings (the command line's base URL applied).
    pub ipxe: Option<IpxeOutput>,
    /// With an AMI output: how it is registered.
    pub ami: Option<AmiOutput>,
}

impl PlannedRole {
    pub fn name(&self) -> &str {
        &self.profile.role
    }

    pub fn board(&self) -> Board {
        self.release.board
    }
}

/// A machine in the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedMachine {
    pub role: String,
    pub instance: Option<u32>,
    pub hostname: Option<String>,
}

/// `boot.ipxe`'s map: which role each listed machine boots, and its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineMap {
    /// By MAC address (lower case).
    pub machines: BTreeMap<String, MappedMachine>,
    /// The roles, for the menu offered to unknown machines.
    pub roles: Vec<String>,
    pub unknown: UnknownMachine,
}

#[derive(Debug, Clone)]
pub struct BuildPlan {
    pub roles: Vec<PlannedRole>,
    /// The machine map of the roles planned (written only with an iPXE output).
    pub machines: MachineMap,
}

impl BuildPlan {
    /// Plans every role and checks what can be checked without the network: profiles, units,
    /// configs, pinned images, the machine map, AMI settings against the board.
    pub fn make(request: &PlanRequest) -> Result<BuildPlan, PlanError> {
        if request.roles.is_empty() {
            return Err(PlanError::NoRoles);
        }
        check_unit_roles(request.project)?;
        let mut roles = Vec::new();
        for name in request.roles {
            let profile = request.project.profile(name)?;
            roles.push(plan_role(request, profile)?);
        }
        let machines = machine_map(&roles)?;
        Ok(BuildPlan { roles, machines })
    }

    /// Each vendor disk image needed, once.
    pub(crate) fn bases(&self) -> BTreeSet<(ReleaseSpec, VendorDisk)> {
        self.roles
            .iter()
            .flat_map(|r| r.disks.iter().map(|&d| (r.release.clone(), d.vendor())))
            .collect()
    }

    /// Each OEM sysext needed, once per release and platform.
    pub(crate) fn oems(&self) -> BTreeSet<(ReleaseSpec, Platform)> {
        self.roles
            .iter()
            .flat_map(|r| {
                r.disks
                    .iter()
                    .filter_map(|d| d.platform())
                    .map(|p| (r.release.clone(), p))
            })
            .collect()
    }

    /// Each release whose PXE kernel and initramfs are needed, once.
    pub(crate) fn pxe_releases(&self) -> BTreeSet<ReleaseSpec> {
        self.roles
            .iter()
            .filter(|r| r.ipxe.is_some())
            .map(|r| r.release.clone())
            .collect()
    }

    pub(crate) fn has_ipxe(&self) -> bool {
        self.roles.iter().any(|r| r.ipxe.is_some())
    }

    pub(crate) fn has_ami(&self) -> bool {
        self.roles.iter().any(|r| r.ami.is_some())
    }
}

fn plan_role(request: &PlanRequest, profile: Profile) -> Result<PlannedRole, PlanError> {
    let plan = crate::role::plan(&profile, &request.project.units).map_err(ProjectError::from)?;
    let config = config::baked(&plan, request.config_format).map_err(ProjectError::from)?;
    check_images(&profile, request.allow_unpinned)?;
    let release = (request.release)(&profile);
    let wanted: BTreeSet<OutputKind> = match request.outputs {
        Some(outputs) => outputs.iter().copied().collect(),
        None => {
            let listed = &profile.outputs;
            let mut from_profile = BTreeSet::new();
            if listed.raw {
                from_profile.insert(OutputKind::Raw);
            }
            if listed.ipxe.is_some() {
                from_profile.insert(OutputKind::Ipxe);
            }
            if listed.ami.is_some() {
                from_profile.insert(OutputKind::Ami);
            }
            from_profile.extend(listed.platforms.iter().map(|&p| OutputKind::Platform(p)));
            if from_profile.is_empty() {
                from_profile.insert(OutputKind::Raw);
            }
            from_profile
        }
    };
    let mut disks = Vec::new();
    if wanted.contains(&OutputKind::Raw) {
        disks.push(DiskKind::Raw);
    }
    let ami = wanted
        .contains(&OutputKind::Ami)
        .then(|| profile.outputs.ami.clone().unwrap_or_default());
    if let Some(settings) = &ami {
        check_ami(&profile, settings, release.board)?;
        disks.push(DiskKind::Ami);
    }
    for &kind in &wanted {
        if let OutputKind::Platform(platform) = kind {
            if let Some(why) = platform.unavailable(release.board) {
                // Blamed on whoever asked: the command line, or the profile's line.
                let board_from_profile = release.board == profile.release.board;
                let platform_from_profile = request.outputs.is_none();
                return Err(match (board_from_profile, &profile.release.board_origin) {
                    (true, Some(origin)) if platform_from_profile => invalid(
                        origin,
                        format!("release.board with outputs.platforms {platform}: {why}"),
                    ),
                    (true, _) if platform_from_profile => invalid(
                        &profile.origin(),
                        format!("outputs.platforms {platform}: {why}"),
                    ),
                    _ => PlanError::Request(format!(
                        "{} for role {}: {why}",
                        if board_from_profile {
                            format!("--output {platform}")
                        } else {
                            format!("--board {} with {platform}", release.board)
                        },
                        profile.role
                    )),
                });
            }
            disks.push(DiskKind::Platform(platform));
        }
    }
    let ipxe = wanted.contains(&OutputKind::Ipxe).then(|| {
        let mut settings = profile.outputs.ipxe.clone().unwrap_or_default();
        if let Some(url) = request.ipxe_base_url {
            settings.base_url = Some(url.to_string());
        }
        settings
    });
    Ok(PlannedRole {
        profile,
        plan,
        config,
        release,
        disks,
        ipxe,
        ami,
    })
}

/// A unit given by `[X-Fleet]` to a role no profile defines is a typo that would leave the
/// unit on no machine at all.
fn check_unit_roles(project: &Project) -> Result<(), PlanError> {
    let roles = project.roles()?;
    for unit in project.units.units.values() {
        if let Some(unknown) = unit
            .fleet
            .roles()
            .into_iter()
            .find(|r| !roles.iter().any(|k| k == r))
        {
            return Err(invalid(
                &unit.origin,
                format!(
                    "[X-Fleet] MachineMetadata gives `{}` to role {}, which no profile defines (roles: {})",
                    unit.name,
                    crate::origin::quoted(unknown),
                    roles.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Refuses registry images named by tag alone (unless allowed), and archives that are not
/// there, before anything is downloaded.
fn check_images(profile: &Profile, allow_unpinned: bool) -> Result<(), PlanError> {
    for image in &profile.images {
        match &image.value {
            ImageSource::Registry(reference) if reference.digest.is_none() && !allow_unpinned => {
                return Err(invalid(
                    &image.origin,
                    format!(
                        "images: `{reference}` is not pinned by digest; pin it (`{reference}@sha256:...`) or build with --allow-unpinned, which records the digest it resolves to"
                    ),
                ));
            }
            ImageSource::Archive { path, .. } => match std::fs::metadata(path) {
                Ok(m) if m.is_file() => {}
                Ok(_) => {
                    return Err(invalid(
                        &image.origin,
                        format!("images: archive {} is not a file", path.display()),
                    ));
                }
                Err(e) => {
                    return Err(invalid(
                        &image.origin,
                        format!("images: archive {}: {e}", path.display()),
                    ));
                }
            },
            ImageSource::Registry(_) => {}
        }
    }
    Ok(())
}

/// Settings EC2 cannot boot (legacy BIOS on arm64) are refused before anything is built.
fn check_ami(profile: &Profile, settings: &AmiOutput, board: Board) -> Result<(), PlanError> {
    if let Some(why) = settings.unbootable(board) {
        return Err(invalid(
            &profile.origin(),
            format!("outputs.ami.boot_mode: {why}"),
        ));
    }
    match settings.volume_problem() {
        Some((field, why)) => Err(invalid(
            &profile.origin(),
            format!("outputs.ami.{field}: {why}"),
        )),
        None => Ok(()),
    }
}

/// The machine map of `roles`. A MAC address listed twice, a member number given twice in
/// one role, or a host name given twice, is an error naming both places.
fn machine_map(roles: &[PlannedRole]) -> Result<MachineMap, PlanError> {
    let mut machines: BTreeMap<String, (MappedMachine, Origin)> = BTreeMap::new();
    let mut instances: BTreeMap<(String, u32), Origin> = BTreeMap::new();
    let mut hostnames: BTreeMap<String, Origin> = BTreeMap::new();
    for role in roles {
        for located in &role.profile.machines {
            let (machine, origin) = (&located.value, &located.origin);
            if let Some((other, first)) = machines.get(&machine.mac) {
                return Err(invalid(
                    origin,
                    format!(
                        "machine {} is listed for role {} and for role {} (at {first})",
                        machine.mac,
                        role.name(),
                        other.role
                    ),
                ));
            }
            if let Some(n) = machine.instance
                && let Some(first) = instances.insert((role.name().to_string(), n), origin.clone())
            {
                return Err(invalid(
                    origin,
                    format!(
                        "machine {}: role {} has member {n} already (at {first})",
                        machine.mac,
                        role.name()
                    ),
                ));
            }
            if let Some(name) = &machine.hostname
                && let Some(first) = hostnames.insert(name.clone(), origin.clone())
            {
                return Err(invalid(
                    origin,
                    format!(
                        "machine {}: hostname {name} is another machine's (at {first})",
                        machine.mac
                    ),
                ));
            }
            let mapped = MappedMachine {
                role: role.name().to_string(),
                instance: machine.instance,
                hostname: machine.hostname.clone(),
            };
            machines.insert(machine.mac.clone(), (mapped, origin.clone()));
        }
    }
    let unknown = roles
        .iter()
        .find_map(|r| r.profile.outputs.ipxe.as_ref().map(|i| i.unknown))
        .unwrap_or(UnknownMachine::Error);
    Ok(MachineMap {
        machines: machines
            .into_iter()
            .map(|(mac, (mapped, _))| (mac, mapped))
            .collect(),
        roles: roles.iter().map(|r| r.name().to_string()).collect(),
        unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::Channel;

    /// A project from profile texts: `(name, yaml)`, no units.
    fn project(profiles: &[(&str, &str)]) -> (tempfile::TempDir, Project) {
        let dir = tempfile::tempdir().unwrap();
        let (profiles_dir, units_dir) = (dir.path().join("profiles"), dir.path().join("units"));
        std::fs::create_dir_all(&profiles_dir).unwrap();
        std::fs::create_dir_all(&units_dir).unwrap();
        for (name, text) in profiles {
            std::fs::write(profiles_dir.join(format!("{name}.yaml")), text).unwrap();
        }
        let project = Project::open(&profiles_dir, Some(&units_dir), None).unwrap();
        (dir, project)
    }

    /// Plans `roles`, with `board` instead of the profile's if given.
    fn plan(
        project: &Project,
        roles: &[&str],
        outputs: Option<&[OutputKind]>,
        board: Option<Board>,
    ) -> Result<BuildPlan, PlanError> {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        let release = |profile: &Profile| ReleaseSpec {
            channel: Channel::Stable,
            version: "4593.1.0".into(),
            board: board.unwrap_or(profile.release.board),
            url_template: crate::release::DEFAULT_URL_TEMPLATE.into(),
        };
        BuildPlan::make(&PlanRequest {
            project,
            roles: &roles,
            outputs,
            release: &release,
            ipxe_base_url: None,
            allow_unpinned: false,
            config_format: Format::Ignition,
        })
    }

    fn error(result: Result<BuildPlan, PlanError>) -> String {
        result.map(|_| ()).unwrap_err().to_string()
    }

    #[test]
    fn outputs_come_from_the_profile_unless_the_command_line_names_them() {
        let (_dir, project) =
            project(&[("web", "outputs:\n  ipxe: {}\n  platforms: [qemu, azure]\n")]);
        let planned = plan(&project, &["web"], None, None).unwrap();
        let role = &planned.roles[0];
        // In the order platforms are declared, whatever order the profile lists them in.
        assert_eq!(
            role.disks,
            [
                DiskKind::Platform(Platform::Qemu),
                DiskKind::Platform(Platform::Azure)
            ]
        );
        assert!(role.ipxe.is_some() && role.ami.is_none());
        assert_eq!(planned.pxe_releases().len(), 1);
        let asked = plan(&project, &["web"], Some(&[OutputKind::Raw]), None).unwrap();
        assert_eq!(asked.roles[0].disks, [DiskKind::Raw]);
        assert!(asked.roles[0].ipxe.is_none() && !asked.has_ipxe());
    }

    #[test]
    fn a_profile_without_outputs_makes_a_raw_disk() {
        let (_dir, project) = project(&[("plain", "description: no outputs\n")]);
        let planned = plan(&project, &["plain"], None, None).unwrap();
        assert_eq!(planned.roles[0].disks, [DiskKind::Raw]);
        assert_eq!(planned.bases().len(), 1);
    }

    #[test]
    fn a_platform_flatcar_does_not_make_for_arm64_is_blamed_on_whoever_asked() {
        let profile = "release:\n  board: arm64-usr\noutputs:\n  platforms: [gce]\n";
        let (_dir, project) = project(&[("arm", profile)]);
        let from_profile = error(plan(&project, &["arm"], None, None));
        assert!(
            from_profile.contains("arm.yaml:2:")
                && from_profile.contains("release.board with outputs.platforms gce")
                && from_profile.contains("amd64-usr only"),
            "{from_profile}"
        );
        let gce = [OutputKind::Platform(Platform::Gce)];
        let (_dir2, amd) = self::project(&[("web", "outputs:\n  raw: {}\n")]);
        let from_flag = error(plan(&amd, &["web"], Some(&gce), Some(Board::Arm64)));
        assert!(
            from_flag.starts_with("--board arm64-usr with gce for role web:"),
            "{from_flag}"
        );
    }

    #[test]
    fn legacy_bios_amis_on_arm64_and_io1_without_iops_are_refused_at_plan_time() {
        let bios = "release:\n  board: arm64-usr\noutputs:\n  ami:\n    boot_mode: legacy-bios\n";
        let io1 = "outputs:\n  ami:\n    volume_type: io1\n";
        let (_dir, project) = project(&[("bios", bios), ("io1", io1)]);
        let text = error(plan(&project, &["bios"], None, None));
        assert!(text.contains("outputs.ami.boot_mode:"), "{text}");
        let text = error(plan(&project, &["io1"], None, None));
        assert!(text.contains("outputs.ami.iops"), "{text}");
    }

    #[test]
    fn a_machine_in_two_roles_or_a_member_number_given_twice_is_refused() {
        let (_dir, project) = project(&[
            (
                "a",
                "machines:\n  - {mac: \"52:54:00:00:00:01\", instance: 1}\n  - {mac: \"52:54:00:00:00:02\", instance: 1}\n",
            ),
            ("b", "machines:\n  - \"52:54:00:00:00:03\"\n"),
            ("c", "machines:\n  - \"52:54:00:00:00:03\"\n"),
        ]);
        let twice = error(plan(&project, &["a"], None, None));
        assert!(
            twice.contains("role a has member 1 already (at ") && twice.contains("a.yaml:3:"),
            "{twice}"
        );
        let shared = error(plan(&project, &["b", "c"], None, None));
        assert!(
            shared.contains("is listed for role c and for role b"),
            "{shared}"
        );
        let fine = plan(&project, &["b"], None, None).unwrap();
        assert_eq!(fine.machines.machines["52:54:00:00:00:03"].role, "b");
    }

    #[test]
    fn no_roles_is_refused() {
        let (_dir, project) = project(&[("web", "description: x\n")]);
        assert_eq!(error(plan(&project, &[], None, None)), "no roles to build");
    }
}
