//! A registry's manifest or index, under each media type it may claim.
#![no_main]
use libfuzzer_sys::fuzz_target;

const TYPES: [&str; 5] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "",
];

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let content_type = TYPES[usize::from(which) % TYPES.len()];
    let _ = kato_image::oci::manifest::media_type(content_type, body);
    if let Ok(kato_image::oci::manifest::Document::Index(index)) =
        kato_image::oci::manifest::parse(content_type, body)
    {
        let _ = kato_image::oci::manifest::select(&index, "amd64");
        let _ = kato_image::oci::manifest::platforms(&index);
    }
});
