//! Detached signatures and keyrings (a release's .sig files, --keyring files).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(signature) = kato_image::verify::parse_detached(data, "fuzz.sig") {
        let keyring = kato_image::verify::Keyring::flatcar();
        let _ = keyring.signer(&signature, "fuzz.sig");
    }
    let _ = kato_image::verify::Keyring::parse(data, "fuzz.asc");
});
