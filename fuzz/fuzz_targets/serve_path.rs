//! A request path under `kato-image serve`: whatever it says, what it opens is inside the
//! served folder.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn root() -> &'static std::path::Path {
    static ROOT: OnceLock<(tempfile::TempDir, std::path::PathBuf)> = OnceLock::new();
    &ROOT
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let served = dir.path().join("served");
            std::fs::create_dir_all(served.join("sub")).unwrap();
            std::fs::write(served.join("boot.ipxe"), "#!ipxe\n").unwrap();
            std::fs::write(served.join("sub/a"), "a").unwrap();
            std::fs::write(dir.path().join("secret"), "outside").unwrap();
            std::os::unix::fs::symlink("../secret", served.join("out")).unwrap();
            let served = kato_image::serve::root(&served).unwrap();
            (dir, served)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(opened) = kato_image::serve::resolved_path(root(), text)
    {
        assert!(
            opened.starts_with(root()),
            "{text:?} opened {}",
            opened.display()
        );
    }
});
