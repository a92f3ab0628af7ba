//! The checks a config gets as Ignition would make them: a config of any shape is judged
//! without panicking, and a path is accepted only in its clean form.
#![no_main]
use kato_image::config::rules;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let accepted = rules::path_problem(text).is_none();
    assert_eq!(
        accepted,
        text.starts_with('/') && rules::clean(text) == text,
        "{text:?}"
    );
    let clean = rules::clean(text);
    assert!(
        rules::path_problem(&clean).is_none(),
        "{clean:?} of {text:?}"
    );
    if let Ok(config) = serde_json::from_str::<ignition_config::v3_3::Config>(text) {
        let _ = rules::check(&config);
    }
});
