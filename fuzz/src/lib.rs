//! What the fuzz targets share.
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const PREFIX: &str = "kato-image-fuzz.";

/// One scratch folder for the whole run, on tmpfs where there is one. A fresh folder on
/// disk for every input made the filesystem, not the code under test, the cost: the
/// profile, fragment and archive targets ran 2 to 40 times slower with one.
///
/// libFuzzer ends a run with `exit`, so nothing is dropped: the folder is named for the
/// process, and the folders of processes no longer running are removed when a run starts.
pub fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        remove_dead(&base);
        let dir = base.join(format!("{PREFIX}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("a scratch folder");
        dir
    })
}

fn remove_dead(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
