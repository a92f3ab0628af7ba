//! A release's version.txt.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(version) = kato_image::release::parse_version_txt(text)
    {
        assert!(kato_image::release::is_version(&version));
    }
});
