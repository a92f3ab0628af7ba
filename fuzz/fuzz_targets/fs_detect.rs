//! Recognising the filesystem at the start of a partition.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kato_image::fs::detect::detect(&mut std::io::Cursor::new(data));
});
