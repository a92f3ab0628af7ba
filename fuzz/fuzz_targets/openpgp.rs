//! Detached signatures and keyrings (a release's .sig files, --keyring files).
#![no_main]
use std::sync::OnceLock;

use kato_image::trust::Keyring;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(signature) = kato_image::trust::parse_detached(data, "fuzz.sig") {
        static FLATCAR: OnceLock<Keyring> = OnceLock::new();
        let keyring = FLATCAR.get_or_init(Keyring::flatcar);
        let _ = keyring.signer(&signature, "fuzz.sig");
    }
    let _ = Keyring::parse(data, "fuzz.asc");
});
