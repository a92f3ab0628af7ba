use std::io;
use std::path::PathBuf;

use crate::origin::Origin;

/// Everything that can be wrong with a profile folder. Each message is one line that names
/// the file (and line, column) at fault.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{}: cannot read profile folder: {source}", dir.display())]
    ReadDir { dir: PathBuf, source: io::Error },
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{origin}: {message}")]
    Parse { origin: Origin, message: String },
    #[error("unknown role `{role}` (known roles: {known})")]
    UnknownRole { role: String, known: String },
    #[error("{origin}: `extends: {name}` names no profile (known profiles: {known})")]
    UnknownParent {
        origin: Origin,
        name: String,
        known: String,
    },
    #[error("{origin}: `extends` cycle: {chain}")]
    Cycle { origin: Origin, chain: String },
    #[error("{origin}: {message}")]
    Invalid { origin: Origin, message: String },
    /// A file the profile names (or the profile file itself) that may not be read.
    #[error("{0}")]
    Input(#[from] crate::input::InputError),
}

impl ProfileError {
    pub(crate) fn invalid(origin: Origin, message: impl Into<String>) -> Self {
        ProfileError::Invalid {
            origin,
            message: message.into(),
        }
    }
}
