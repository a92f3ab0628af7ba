//! An LZO-compressed btrfs extent.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(out) = kato_image::fs::btrfs::lzo::decompress_extent(data, 1 << 20) {
        assert!(out.len() <= 1 << 20);
    }
});
