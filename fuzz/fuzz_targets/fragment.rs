//! A Butane or Ignition fragment (the first byte picks which): parsing, translation and the
//! checks of each entry; local files resolve inside an empty folder.
#![no_main]
use kato_image::profile::fragment::{Language, translate_text};
use kato_image_fuzz::scratch_dir;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let language = if first & 1 == 0 {
        Language::Butane
    } else {
        Language::Ignition
    };
    // The fragment is read as if it lay in this target's scratch folder, which stays
    // empty: every local file it names is missing or refused.
    let mut sources = Vec::new();
    let confinement = kato_image::input::Confinement::new(&[scratch_dir()]).unwrap();
    let _ = translate_text(
        text,
        language,
        &scratch_dir().join("fragment"),
        &confinement,
        &mut sources,
    );
});
