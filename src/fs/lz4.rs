//! Raw LZ4 blocks (no frame): squashfs's lz4 blocks and EROFS's compressed clusters.
//!
//! A block is sequences of: a token (high nibble: literal count, low nibble: match length
//! minus 4; 15 means "add the following bytes, each 255 meaning another follows"), the
//! literals, then a 2-byte little-endian offset back into the output and the match. The last
//! sequence has literals only.

/// Decodes `input` until it ends or the output reaches `cap` bytes, whichever comes first
/// (EROFS decodes a cluster partially when only its start is wanted).
pub fn decode(input: &[u8], cap: usize) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::with_capacity(cap.min(1 << 20));
    let mut at = 0;
    while out.len() < cap {
        let token = *input
            .get(at)
            .ok_or("the block ends before its output does")?;
        at += 1;
        let literals = length(input, &mut at, usize::from(token >> 4))?;
        let end = at
            .checked_add(literals)
            .ok_or("a literal run past the block")?;
        let run = input.get(at..end).ok_or("a literal run past the block")?;
        out.extend_from_slice(&run[..run.len().min(cap - out.len())]);
        at = end;
        if at == input.len() || out.len() >= cap {
            break;
        }
        let offset = input
            .get(at..at + 2)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
            .ok_or("a match offset past the block")?;
        at += 2;
        if offset == 0 || offset > out.len() {
            return Err("a match that reaches before the start of the output");
        }
        let matched = length(input, &mut at, usize::from(token & 15))? + 4;
        let start = out.len() - offset;
        // Byte by byte: a match may overlap the bytes it produces.
        for k in 0..matched.min(cap - out.len()) {
            out.push(out[start + k]);
        }
    }
    Ok(out)
}

/// A nibble's length with its extension bytes.
fn length(input: &[u8], at: &mut usize, nibble: usize) -> Result<usize, &'static str> {
    let mut length = nibble;
    if nibble == 15 {
        loop {
            let byte = *input.get(*at).ok_or("a length past the block")?;
            *at += 1;
            length += usize::from(byte);
            if byte != 255 {
                break;
            }
        }
    }
    Ok(length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn literals_overlapping_matches_and_long_lengths_decode() {
        // "abc", then a match of 9 at offset 3 (overlapping), then literals "xyz".
        let block = [0x35, b'a', b'b', b'c', 3, 0, 0x30, b'x', b'y', b'z'];
        assert_eq!(decode(&block, 100).unwrap(), b"abcabcabcabcxyz");
        assert_eq!(decode(&block, 7).unwrap(), b"abcabca");
        // 15 + 255 + 3 = 273 literal bytes.
        let mut long = vec![0xF0, 255, 3];
        long.extend(std::iter::repeat_n(b'q', 273));
        assert_eq!(decode(&long, 1000).unwrap().len(), 273);
        assert!(
            decode(&[0x10, b'a', 9, 0], 100).is_err(),
            "offset before the start"
        );
        assert!(
            decode(&[0x50, b'a'], 100).is_err(),
            "literals past the block"
        );
    }

    proptest! {
        #[test]
        fn any_block_decodes_within_its_cap_or_is_refused(input in proptest::collection::vec(any::<u8>(), 0..256), cap in 0usize..4096) {
            if let Ok(out) = decode(&input, cap) {
                prop_assert!(out.len() <= cap);
            }
        }
    }
}
