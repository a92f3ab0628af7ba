//! What the fuzz targets share.
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kato_image::atomic;

/// One scratch folder for the whole run, on tmpfs where there is one. A fresh folder on
/// disk for every input made the filesystem, not the code under test, the cost: the
/// profile, fragment and archive targets ran 2 to 40 times slower with one.
///
/// libFuzzer ends a run with `exit`, so nothing is dropped: the folder has a temporary's
/// name, and the ones of processes no longer running are removed as the build's are.
pub fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        atomic::remove_stale_temps(&base);
        let dir = atomic::temp_path(&base.join("kato-image-fuzz"));
        std::fs::create_dir(&dir).expect("a scratch folder");
        dir
    })
}
