//! A container image archive named under `images:` (docker-archive or OCI layout tar).
//! The cache is made afresh after any import that succeeded, so that no input sees
//! another's blobs and every finding replays on its own.
#![no_main]
use std::path::Path;
use std::sync::Mutex;

use kato_image::cache::Cache;
use kato_image_fuzz::scratch_dir;
use libfuzzer_sys::fuzz_target;

fn fresh_cache(root: &Path) -> Cache {
    let _ = std::fs::remove_dir_all(root);
    Cache::open(root).unwrap()
}

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let archive = scratch_dir().join("image.tar");
    let cache_root = scratch_dir().join("cache");
    let mut cache = CACHE.lock().unwrap();
    let cache = cache.get_or_insert_with(|| fresh_cache(&cache_root));
    std::fs::write(&archive, data).unwrap();
    if kato_image::oci::local::import(&archive, None, cache).is_ok() {
        *cache = fresh_cache(&cache_root);
    }
});
