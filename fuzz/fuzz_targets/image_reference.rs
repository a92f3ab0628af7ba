//! An image reference as a profile or `pull` names it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(reference) = kato_image::oci::Reference::parse(text)
    {
        let _ = reference.to_string();
    }
});
