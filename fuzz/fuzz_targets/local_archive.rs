//! A container image archive named under `images:` (docker-archive or OCI layout tar).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.tar");
    std::fs::write(&archive, data).unwrap();
    let cache = kato_image::cache::Cache::open(&dir.path().join("cache")).unwrap();
    let _ = kato_image::oci::local::import(&archive, None, &cache);
});
