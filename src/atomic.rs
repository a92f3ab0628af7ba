//! File helpers shared by every writer: nothing appears under its final name until complete.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A temporary name in the same folder as `path`, unique to this process and call.
pub fn temp_path(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, synced, then
/// renamed into place.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temp = temp_path(path);
    let result = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Renames a complete file into place, syncing it first so a crash cannot leave a short file
/// under the final name.
pub fn commit(temp: &Path, path: &Path) -> io::Result<()> {
    File::open(temp)?.sync_all()?;
    fs::rename(temp, path)
}

/// Asks the kernel to start writing `length` bytes from `offset` to disk now, without
/// waiting. A large download that only syncs at the end would otherwise pay the whole disk
/// write after the last byte arrives; started early, the writing overlaps the transfer.
pub(crate) fn start_writeback(file: &File, offset: u64, length: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: sync_file_range only reads its integer arguments; a bad range or an fd
        // that does not support it returns an error, which is harmless here.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off64_t,
                length as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, length);
}

/// The process ID in a name `temp_path` made (`.NAME.PID.N.tmp`).
fn temp_owner(name: &str) -> Option<u32> {
    let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let mut parts = inner.rsplitn(3, '.');
    let _counter: u64 = parts.next()?.parse().ok()?;
    let pid: u32 = parts.next()?.parse().ok()?;
    parts.next().filter(|rest| !rest.is_empty())?;
    Some(pid)
}

/// Removes the temporary files and folders of processes that no longer run (a killed build
/// leaves its half-written image under its temporary name; nothing would ever use or remove
/// it).
pub fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_owner) else {
            continue;
        };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let _ = if is_dir {
                fs::remove_dir_all(entry.path())
            } else {
                fs::remove_file(entry.path())
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temps_of_ended_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mine = temp_path(&dir.path().join("master.raw"));
        fs::write(&mine, b"in progress").unwrap();
        // PID 0 is never a process of ours; a huge one is not running either.
        let dead = dir.path().join(".master.raw.4000000000.3.tmp");
        fs::write(&dead, b"left by kill -9").unwrap();
        let dead_folder = dir.path().join(".scratch.4000000000.0.tmp");
        fs::create_dir(&dead_folder).unwrap();
        fs::write(dead_folder.join("inside"), b"left by kill -9").unwrap();
        let other = dir.path().join(".notes.tmp");
        fs::write(&other, b"not ours").unwrap();
        remove_stale_temps(dir.path());
        assert!(mine.exists() && other.exists());
        assert!(!dead.exists() && !dead_folder.exists());
        assert_eq!(temp_owner(".a.b.raw.12.0.tmp"), Some(12));
        assert_eq!(temp_owner(".12.0.tmp"), None);
    }
}
