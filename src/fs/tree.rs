//! A filesystem-independent file tree: what the btrfs writer takes and the reader returns.
//! Names are bytes (Linux file names need not be UTF-8); children are kept sorted, so every
//! walk is in one order and writers are deterministic.

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use super::btrfs::format::Timespec;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Meta {
    /// Permission bits (0o7777); the type comes from the entry's kind.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub(crate) atime: Timespec,
    pub(crate) ctime: Timespec,
    pub(crate) mtime: Timespec,
    pub(crate) otime: Timespec,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Meta {
    /// Owned by root, all four times `time`.
    pub fn new(mode: u32, time: Timespec) -> Self {
        Meta {
            mode,
            uid: 0,
            gid: 0,
            atime: time,
            ctime: time,
            mtime: time,
            otime: time,
            xattrs: BTreeMap::new(),
        }
    }
}

/// File contents: in memory, or read from a host file when written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    Bytes(Vec<u8>),
    Host { path: PathBuf, len: u64 },
}

impl Contents {
    pub fn len(&self) -> u64 {
        match self {
            Contents::Bytes(b) => b.len() as u64,
            Contents::Host { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File(Contents),
    Dir(BTreeMap<Vec<u8>, Entry>),
    Symlink(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub meta: Meta,
    pub kind: Kind,
}

impl Entry {
    pub fn dir(meta: Meta) -> Self {
        Entry {
            meta,
            kind: Kind::Dir(BTreeMap::new()),
        }
    }

    pub fn file(meta: Meta, contents: Vec<u8>) -> Self {
        Entry {
            meta,
            kind: Kind::File(Contents::Bytes(contents)),
        }
    }

    pub fn symlink(meta: Meta, target: &[u8]) -> Self {
        Entry {
            meta,
            kind: Kind::Symlink(target.to_vec()),
        }
    }

    pub fn children(&self) -> Option<&BTreeMap<Vec<u8>, Entry>> {
        match &self.kind {
            Kind::Dir(children) => Some(children),
            _ => None,
        }
    }
}

/// A whole tree: the root directory and everything under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTree {
    pub root: Entry,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TreeError {
    #[error("{0:?}: a path must be relative, with no empty, `.` or `..` components")]
    BadPath(String),
    #[error("{0:?}: a parent is not a directory")]
    NotADirectory(String),
}

impl FileTree {
    pub fn new(root_meta: Meta) -> Self {
        FileTree {
            root: Entry::dir(root_meta),
        }
    }

    fn components(path: &str) -> Result<Vec<&str>, TreeError> {
        let parts: Vec<&str> = path.split('/').collect();
        if path.is_empty()
            || parts
                .iter()
                .any(|p| p.is_empty() || *p == "." || *p == "..")
        {
            return Err(TreeError::BadPath(path.to_string()));
        }
        Ok(parts)
    }

    /// The entry at `path` (`a/b/c`).
    pub fn get(&self, path: &str) -> Option<&Entry> {
        let mut entry = &self.root;
        for part in Self::components(path).ok()? {
            entry = entry.children()?.get(part.as_bytes())?;
        }
        Some(entry)
    }

    /// The entry at `path`, to change in place.
    pub fn get_mut(&mut self, path: &str) -> Option<&mut Entry> {
        let mut entry = &mut self.root;
        for part in Self::components(path).ok()? {
            let Kind::Dir(children) = &mut entry.kind else {
                return None;
            };
            entry = children.get_mut(part.as_bytes())?;
        }
        Some(entry)
    }

    /// Puts `entry` at `path`, replacing what was there and creating missing parent
    /// directories with `dir_meta`.
    pub fn insert(
        &mut self,
        path: &str,
        entry: Entry,
        dir_meta: &Meta,
    ) -> Result<Option<Entry>, TreeError> {
        let parts = Self::components(path)?;
        let (last, parents) = parts.split_last().expect("at least one component");
        let mut dir = &mut self.root;
        for part in parents {
            let Kind::Dir(children) = &mut dir.kind else {
                return Err(TreeError::NotADirectory(path.to_string()));
            };
            dir = children
                .entry(part.as_bytes().to_vec())
                .or_insert_with(|| Entry::dir(dir_meta.clone()));
        }
        let Kind::Dir(children) = &mut dir.kind else {
            return Err(TreeError::NotADirectory(path.to_string()));
        };
        Ok(children.insert(last.as_bytes().to_vec(), entry))
    }

    /// Every entry with its path, parents before children, siblings by name.
    pub fn walk(&self) -> Vec<(Vec<u8>, &Entry)> {
        fn go<'a>(prefix: &[u8], entry: &'a Entry, out: &mut Vec<(Vec<u8>, &'a Entry)>) {
            if let Kind::Dir(children) = &entry.kind {
                for (name, child) in children {
                    let mut path = prefix.to_vec();
                    if !path.is_empty() {
                        path.push(b'/');
                    }
                    path.extend_from_slice(name);
                    out.push((path.clone(), child));
                    go(&path, child, out);
                }
            }
        }
        let mut out = Vec::new();
        go(b"", &self.root, &mut out);
        out
    }
}

impl FileTree {
    /// A host folder as a tree: file contents are read when written, modes, owners and
    /// times come from the host. (Host xattrs are not imported.)
    pub fn from_host(dir: &std::path::Path) -> std::io::Result<FileTree> {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::MetadataExt;
        fn meta_of(m: &std::fs::Metadata) -> Meta {
            let time = |sec: i64, nsec: i64| Timespec {
                sec,
                nsec: nsec as u32,
            };
            Meta {
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                atime: time(m.atime(), m.atime_nsec()),
                ctime: time(m.ctime(), m.ctime_nsec()),
                mtime: time(m.mtime(), m.mtime_nsec()),
                otime: time(m.mtime(), m.mtime_nsec()),
                xattrs: BTreeMap::new(),
            }
        }
        fn load(path: &std::path::Path) -> std::io::Result<Entry> {
            let m = std::fs::symlink_metadata(path)?;
            let meta = meta_of(&m);
            let kind = if m.file_type().is_symlink() {
                Kind::Symlink(std::fs::read_link(path)?.as_os_str().as_bytes().to_vec())
            } else if m.is_dir() {
                let mut children = BTreeMap::new();
                for entry in std::fs::read_dir(path)? {
                    let entry = entry?;
                    children.insert(entry.file_name().as_bytes().to_vec(), load(&entry.path())?);
                }
                Kind::Dir(children)
            } else if m.is_file() {
                Kind::File(Contents::Host {
                    path: path.to_path_buf(),
                    len: m.len(),
                })
            } else {
                return Err(std::io::Error::other(format!(
                    "{}: not a file, folder or symlink",
                    path.display()
                )));
            };
            Ok(Entry { meta, kind })
        }
        Ok(FileTree { root: load(dir)? })
    }
}
