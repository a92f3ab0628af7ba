//! A registry's WWW-Authenticate challenge.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = kato_image::oci::auth::parse_challenge(text);
    }
});
