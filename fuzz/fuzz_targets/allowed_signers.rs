//! An `allowed_signers` file: every line is read or refused with its number, and a file
//! that reads is asked about a key without panicking.
#![no_main]
use kato_image::provenance::allowed_signers::AllowedSigners;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match AllowedSigners::parse(text, "allowed_signers") {
        Ok(signers) => {
            let key = kato_image::provenance::sshkey::PublicKey { key: [7; 32] };
            let _ = signers.trusts(&key, None, 1_800_000_000);
            let _ = signers.trusts(&key, Some("ci@kato.test"), 0);
        }
        Err(error) => {
            assert!(error.line >= 1 && error.line <= text.split('\n').count());
            assert!(!error.why.chars().any(|c| c.is_control()), "{error}");
        }
    }
});
