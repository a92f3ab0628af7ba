//! A project is a profiles folder and a units folder: everything needed to plan any role.

use std::path::{Path, PathBuf};

use crate::config::{self, Format, RenderError};
use crate::profile::{Profile, ProfileError, ProfileSet};
use crate::role::{self, RoleError, RolePlan};
use crate::unit::{UnitError, UnitLibrary};

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Unit(#[from] UnitError),
    #[error(transparent)]
    Role(#[from] RoleError),
    #[error(transparent)]
    Render(#[from] RenderError),
}

pub struct Project {
    pub profiles: ProfileSet,
    pub units: UnitLibrary,
}

impl Project {
    /// Opens `profiles_dir` and `units_dir` (by default the `units` folder beside the
    /// profiles folder). Profiles may name files inside their folder, and inside
    /// `files_dir` if given.
    pub fn open(
        profiles_dir: &Path,
        units_dir: Option<&Path>,
        files_dir: Option<&Path>,
    ) -> Result<Self, ProjectError> {
        let units_dir = units_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| default_units_dir(profiles_dir));
        Ok(Project {
            profiles: ProfileSet::open_with(profiles_dir, files_dir)?,
            units: UnitLibrary::load(&units_dir)?,
        })
    }

    pub fn roles(&self) -> Result<Vec<String>, ProjectError> {
        Ok(self.profiles.roles()?)
    }

    pub fn profile(&self, role: &str) -> Result<Profile, ProjectError> {
        Ok(self.profiles.load(role)?)
    }

    pub fn plan(&self, role: &str) -> Result<RolePlan, ProjectError> {
        Ok(role::plan(&self.profile(role)?, &self.units)?)
    }

    pub fn render(&self, role: &str, format: Format) -> Result<Vec<u8>, ProjectError> {
        Ok(config::render(&self.plan(role)?, format)?)
    }
}

fn default_units_dir(profiles_dir: &Path) -> PathBuf {
    match profiles_dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.join("units"),
        _ => PathBuf::from("units"),
    }
}
