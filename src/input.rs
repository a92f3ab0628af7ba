//! Files a user's input names, read as untrusted: profiles and their fragments often come
//! from pull requests that CI builds with its secrets on the machine.
//!
//! - A file named by a profile or fragment must resolve, after following links, inside the
//!   folders it may come from (the profiles folder, and a folder given with `--files-dir`);
//!   as Butane's `--files-dir`, but judged on the resolved path, so that a link cannot lead
//!   to `/etc/shadow` or a runner's credentials.
//! - Only regular files are read: a FIFO would block forever and a device never ends. They
//!   are opened without blocking and checked on the open descriptor, so that what is read is
//!   what was checked.
//! - Every read is bounded by the limit its caller states, whatever the file's metadata
//!   says.
//!
//! Messages name the entry as it was written and never quote a refused file.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{} leads outside {} (after following links); only files inside it are read", .path.display(), .roots)]
    Outside { path: PathBuf, roots: String },
    #[error("{} is {kind}, not a regular file", .path.display())]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{} is larger than the {} a {what} may have", .path.display(), in_units(*.limit))]
    TooLarge {
        path: PathBuf,
        limit: u64,
        what: &'static str,
    },
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl InputError {
    /// What is wrong, without the path (for a caller that names the file itself).
    pub fn reason(&self) -> String {
        match self {
            InputError::Outside { roots, .. } => {
                format!("leads outside {roots} (after following links)")
            }
            InputError::NotRegular { kind, .. } => format!("{kind}, not a regular file"),
            InputError::TooLarge { limit, what, .. } => {
                format!("larger than the {} a {what} may have", in_units(*limit))
            }
            InputError::Io { source, .. } => source.to_string(),
        }
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InputError + '_ {
        move |source| InputError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A limit in the largest unit that shows it whole: `64 MiB`, `1 KiB`, `100 bytes`.
fn in_units(bytes: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

/// The folders named files may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    /// As given, for messages.
    shown: Vec<PathBuf>,
    /// Canonical (links resolved), for the check.
    roots: Vec<PathBuf>,
}

impl Confinement {
    /// Files from inside `dirs` (each must exist).
    pub fn new(dirs: &[&Path]) -> Result<Confinement, InputError> {
        let mut roots = Vec::new();
        for dir in dirs {
            roots.push(dir.canonicalize().map_err(InputError::io(dir))?);
        }
        Ok(Confinement {
            shown: dirs.iter().map(|d| d.to_path_buf()).collect(),
            roots,
        })
    }

    fn describe(&self) -> String {
        self.shown
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(" or ")
    }

    /// `path` with every link resolved, if that is inside one of the folders.
    pub fn resolve(&self, path: &Path) -> Result<PathBuf, InputError> {
        let real = path.canonicalize().map_err(InputError::io(path))?;
        if self.roots.iter().any(|root| real.starts_with(root)) {
            Ok(real)
        } else {
            Err(InputError::Outside {
                path: path.to_path_buf(),
                roots: self.describe(),
            })
        }
    }

    /// Reads the regular file at `path` (inside the folders), at most `limit` bytes.
    pub fn read(&self, path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>, InputError> {
        let real = self.resolve(path)?;
        read_regular_as(&real, path, limit, what)
    }

    /// Opens the regular file at `path` (inside the folders); returns it and its length.
    pub fn open(&self, path: &Path) -> Result<(File, u64), InputError> {
        let real = self.resolve(path)?;
        open_regular_as(&real, path)
    }
}

/// What a file that is not a regular one is, in words.
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let kind = meta.file_type();
    if kind.is_dir() {
        "a folder"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// Opens `path` if it is a regular file (following links), without blocking on a FIFO;
/// returns the file and its length.
pub(crate) fn open_regular(path: &Path) -> Result<(File, u64), InputError> {
    open_regular_as(path, path)
}

fn open_regular_as(path: &Path, shown: &Path) -> Result<(File, u64), InputError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(InputError::io(shown))?;
    let meta = file.metadata().map_err(InputError::io(shown))?;
    if !meta.is_file() {
        return Err(InputError::NotRegular {
            path: shown.to_path_buf(),
            kind: kind_of(&meta),
        });
    }
    Ok((file, meta.len()))
}

/// Reads the regular file at `path`, at most `limit` bytes (a `what` larger than that is
/// refused, whatever its metadata says).
pub fn read_regular(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>, InputError> {
    read_regular_as(path, path, limit, what)
}

fn read_regular_as(
    path: &Path,
    shown: &Path,
    limit: u64,
    what: &'static str,
) -> Result<Vec<u8>, InputError> {
    let (file, len) = open_regular_as(path, shown)?;
    let too_large = || InputError::TooLarge {
        path: shown.to_path_buf(),
        limit,
        what,
    };
    if len > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(InputError::io(shown))?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

/// As [`read_regular`], as UTF-8 text.
pub(crate) fn read_text(path: &Path, limit: u64, what: &'static str) -> Result<String, InputError> {
    text(read_regular(path, limit, what)?, path)
}

/// `bytes` as UTF-8, or where they stop being.
pub fn text(bytes: Vec<u8>, path: &Path) -> Result<String, InputError> {
    String::from_utf8(bytes).map_err(|e| InputError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "not UTF-8 text (byte {} is not part of a character)",
                e.utf8_error().valid_up_to()
            ),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_out_of_the_folder_are_refused_and_links_inside_followed() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("profiles");
        std::fs::create_dir(&inside).unwrap();
        std::fs::write(inside.join("a.txt"), "a").unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink("a.txt", inside.join("ok")).unwrap();
        std::os::unix::fs::symlink("../secret", inside.join("out")).unwrap();
        std::os::unix::fs::symlink(dir.path(), inside.join("up")).unwrap();
        let confined = Confinement::new(&[&inside]).unwrap();
        assert_eq!(confined.read(&inside.join("ok"), 10, "file").unwrap(), b"a");
        for bad in ["out", "up/secret", "../secret"] {
            let error = confined.read(&inside.join(bad), 10, "file").unwrap_err();
            assert!(
                matches!(error, InputError::Outside { .. }),
                "{bad}: {error}"
            );
            assert!(!error.to_string().contains(" s"), "{error}");
        }
        assert!(
            confined
                .read(Path::new("/etc/hostname"), 10, "file")
                .is_err()
        );
    }

    #[test]
    fn only_regular_files_are_read_and_never_past_the_limit() {
        for (path, kind) in [("/dev/zero", "a device"), ("/tmp", "a folder")] {
            let error = read_regular(Path::new(path), 1 << 20, "file").unwrap_err();
            assert!(
                matches!(error, InputError::NotRegular { kind: k, .. } if k == kind),
                "{path}: {error}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string naming a new file.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let error = read_regular(&fifo, 1 << 20, "file").unwrap_err();
        assert!(
            matches!(error, InputError::NotRegular { kind: "a FIFO", .. }),
            "{error}"
        );
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 11]).unwrap();
        assert!(matches!(
            read_regular(&big, 10, "file"),
            Err(InputError::TooLarge { limit: 10, .. })
        ));
        assert_eq!(read_regular(&big, 11, "file").unwrap().len(), 11);
    }
}
