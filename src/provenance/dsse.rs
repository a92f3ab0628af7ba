//! DSSE (Dead Simple Signing Envelope) v1: the payload, its type, and signatures over the
//! pre-authentication encoding (PAE) of both, so that a signature can never be taken for
//! one over another type of payload.

use base64::Engine;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Base64 of the payload's bytes.
    pub payload: String,
    pub(crate) payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnvelopeSignature {
    /// Which key: an OpenPGP fingerprint (upper-case hex) or an SSH key's `SHA256:...`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub keyid: String,
    /// Base64 of the signature: an OpenPGP signature packet, or a raw Ed25519 signature.
    pub sig: String,
}

/// `DSSEv1 <len(type)> <type> <len(body)> <body>`, lengths in decimal ASCII.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Envelope {
    pub fn new(payload_type: &str, payload: &[u8]) -> Envelope {
        Envelope {
            payload: base64(payload),
            payload_type: payload_type.to_string(),
            signatures: Vec::new(),
        }
    }

    /// The payload's bytes, or why they cannot be read.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, String> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.payload)
            .map_err(|_| "its payload is not base64".to_string())
    }

    /// One line of JSON and a newline (a `.intoto.jsonl` bundle of one envelope).
    pub(crate) fn to_line(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(self).expect("envelopes serialise");
        bytes.push(b'\n');
        bytes
    }
}

pub(crate) fn decode_sig(sig: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(sig)
        .map_err(|_| "a signature in it is not base64".to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn pae_is_the_specs_encoding() {
        // The DSSE protocol document's example: type "http://example.com/HelloWorld" and
        // body "hello world".
        assert_eq!(
            super::pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        assert_eq!(super::pae("", b""), b"DSSEv1 0  0 ");
    }
}
