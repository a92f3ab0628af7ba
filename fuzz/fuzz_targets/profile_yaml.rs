//! A role profile: YAML, its schema and the merge with base.yaml.
#![no_main]
use std::sync::Once;

use kato_image_fuzz::scratch_dir;
use libfuzzer_sys::fuzz_target;

static BASE: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    let dir = scratch_dir();
    BASE.call_once(|| {
        std::fs::write(
            dir.join("base.yaml"),
            "abstract: true\nrelease: {channel: stable, version: current, board: amd64-usr}\n",
        )
        .unwrap()
    });
    std::fs::write(dir.join("probe.yaml"), data).unwrap();
    let _ = kato_image::profile::load_role(dir, "probe");
});
