//! What `verify` reads from beside an image: SSH private keys, SSH signatures and
//! allowed_signers files, DSSE envelopes and in-toto statements (the first byte picks which).
#![no_main]
use kato_image::provenance::allowed_signers::AllowedSigners;
use kato_image::provenance::{Statement, dsse::Envelope, sshkey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match first % 4 {
        0 => {
            let _ = sshkey::PrivateKey::parse(&text);
        }
        1 => {
            let _ = sshkey::verify_sshsig(&text, b"manifest");
        }
        2 => {
            let _ = AllowedSigners::parse(&text, "allowed_signers");
        }
        _ => {
            if let Ok(envelope) = serde_json::from_slice::<Envelope>(rest) {
                let _ = envelope.payload_bytes();
            }
            let _ = Statement::parse(rest, std::path::Path::new("statement"));
        }
    }
});
