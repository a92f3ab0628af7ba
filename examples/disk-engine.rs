//! Drives the disk engine's two costly steps on their own, for `scripts/bench disk`:
//!
//!   disk-engine decompress ARTIFACT CACHE_DIR   cold: decompress (and hash) into the raw cache
//!   disk-engine copy BASE.raw OUT.raw           warm: a role's working copy, committed

use std::path::Path;

use kato_image::cache::Cache;
use kato_image::disk::{self, WorkingCopy};
use kato_image::progress::Silent;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["decompress", artifact, cache] => {
            let cache = Cache::open(Path::new(cache))?;
            let path = Path::new(artifact);
            let source = kato_image::release::FetchedArtifact {
                record: kato_image::cache::ArtifactRecord {
                    file: artifact.to_string(),
                    url: format!("file://{artifact}"),
                    sha512: "bench".to_string(),
                    size: std::fs::metadata(path)?.len(),
                    signature: None,
                    digests_asc_verified: false,
                },
                path: path.to_path_buf(),
                from_cache: false,
            };
            let cached = disk::cached_raw(&cache, &source, &Silent)?;
            cache.save_zero_leaves();
            println!("{}", cached.path.display());
        }
        ["copy", base, out] => {
            let copy = WorkingCopy::create(Path::new(base), Path::new(out), &["OEM", "ROOT"])?;
            let method = copy.method;
            copy.commit()?;
            println!("{method:?}");
        }
        _ => anyhow::bail!("usage: disk-engine decompress ARTIFACT CACHE_DIR | copy BASE OUT"),
    }
    Ok(())
}
