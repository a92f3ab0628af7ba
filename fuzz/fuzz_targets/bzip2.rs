//! A bzip2 file (the vendor image): the block splitter with its worker threads against the
//! sequential decoder of the `bzip2` crate. Same output, or both refuse.
#![no_main]
use std::io::Read;

use kato_image::disk::bzip2::block::Piece;
use libfuzzer_sys::fuzz_target;

/// Output past this is not compared (a few bytes of input can claim gigabytes of zeros).
const LIMIT: u64 = 64 << 20;

fuzz_target!(|data: &[u8]| {
    let mut split = Vec::new();
    let mut zeros = 0u64;
    let ours = kato_image::disk::bzip2::blocks::decode(data, 2, |piece| {
        match piece {
            Piece::Data(bytes) => {
                assert!(bytes.len() <= 1 << 20, "a piece of {} bytes", bytes.len());
                split.extend_from_slice(&bytes)
            }
            Piece::Zeros(n) => {
                zeros += n;
                if zeros + split.len() as u64 > LIMIT {
                    return Err(std::io::Error::other("past the limit"));
                }
                split.resize(split.len() + n as usize, 0)
            }
        }
        if split.len() as u64 > LIMIT {
            return Err(std::io::Error::other("past the limit"));
        }
        Ok(())
    });
    let mut sequential = Vec::new();
    let theirs = bzip2::read::MultiBzDecoder::new(data)
        .take(LIMIT + 1)
        .read_to_end(&mut sequential);
    match (ours, theirs) {
        (Ok(()), Ok(_)) => assert!(split == sequential, "the two decoders disagree"),
        (Err(_), Err(_)) => {}
        (Err(e), Ok(_)) if e.to_string() == "past the limit" || sequential.len() as u64 > LIMIT => {
        }
        (Ok(()), Err(_)) if split.len() as u64 >= LIMIT => {}
        // An empty input is no bzip2 file to either, whichever way each says it.
        _ if data.len() < 4 => {}
        (ours, theirs) => panic!("ours {ours:?}, sequential {:?}", theirs.map(|_| ())),
    }
});
