//! A systemd unit file from the units folder, and its `[X-Fleet]` section.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(sections) = kato_image::unit::parse::parse(text)
        && let Ok(spec) = kato_image::unit::FleetSpec::from_sections(&sections)
    {
        for role in ["master", "worker", "edge"] {
            let _ = spec.matches_role(role);
        }
        let _ = spec.conflicts_with("zookeeper@1.service");
    }
});
