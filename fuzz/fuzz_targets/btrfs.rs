//! A btrfs filesystem written by anyone: superblock, chunk map, trees, inodes and extents.
#![no_main]
use kato_image::fs::btrfs::Filesystem;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut fs) = Filesystem::open(std::io::Cursor::new(data)) {
        let _ = fs.read_tree();
    }
});
