//! The one way a file's name is attached to an I/O error: `result.at(path)`. Every message
//! about a file then starts the same way, `PATH: what went wrong`, whichever module failed.

use std::io;
use std::path::{Path, PathBuf};

/// An I/O error and the file it happened to.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct PathError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl PathError {
    /// The error's kind, for callers that treat a missing file differently.
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}

/// Adds the file's name to an I/O result.
pub trait At<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T, PathError>;
}

impl<T> At<T> for io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T, PathError> {
        self.map_err(|source| PathError {
            path: path.as_ref().to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_file_then_the_failure() {
        let missing = Path::new("/nonexistent/kato-image/file");
        let error = std::fs::read(missing).at(missing).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert!(
            error
                .to_string()
                .starts_with("/nonexistent/kato-image/file: No such file"),
            "{error}"
        );
    }
}
