//! A release's DIGESTS file.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let file = "flatcar_production_image.bin.bz2";
        if let Ok(hex) = kato_image::release::digests::sha512_for(text, file, "DIGESTS") {
            assert_eq!(hex.len(), 128);
        }
    }
});
