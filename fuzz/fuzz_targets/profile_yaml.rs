//! A role profile: YAML, its schema and the merge with base.yaml.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("base.yaml"),
        "abstract: true\nrelease: {channel: stable, version: current, board: amd64-usr}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("probe.yaml"), data).unwrap();
    let _ = kato_image::profile::load_role(dir.path(), "probe");
});
