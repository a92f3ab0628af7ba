//! GPT headers and entry arrays of a vendor or user disk image.
#![no_main]
use kato_image::disk::gpt::PartitionTable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for allow_backup in [false, true] {
        if let Ok(table) = PartitionTable::read(&mut std::io::Cursor::new(data), allow_backup) {
            for partition in table.partitions() {
                assert!(partition.start() <= partition.end());
            }
        }
    }
    let _ = kato_image::disk::gpt::primary_layout(data);
});
