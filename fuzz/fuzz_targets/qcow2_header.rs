//! The header of a qcow2 `run` is given: accepted only when every table it points at lies
//! inside the file, and never with a backing or external data file.
#![no_main]
use kato_image::emit::format::qcow2::parse_foreign_header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((len_bytes, head)) = data.split_first_chunk::<8>() else {
        return;
    };
    let file_len = u64::from_le_bytes(*len_bytes);
    if let Ok(header) = parse_foreign_header(head, file_len) {
        assert!(matches!(header.version, 2 | 3));
        assert!((9..=21).contains(&header.cluster_bits));
        assert_eq!(&head[8..16], &[0u8; 8], "no backing file");
    }
});
