//! A system extension image, squashfs or EROFS: read or refused, never a panic, a hang or an
//! allocation its size does not justify; an extension-release file parsed or refused.
#![no_main]
use kato_image::fs::erofs::Erofs;
use kato_image::fs::image::ReadOnlyImage;
use kato_image::fs::squashfs::Squashfs;
use kato_image::sysext::{ExtensionRelease, Host};
use libfuzzer_sys::fuzz_target;

const PATH: [&str; 4] = ["usr", "lib", "extension-release.d", "extension-release.x"];

fn exercise(image: &mut dyn ReadOnlyImage) {
    let _ = image.list(&PATH[..3]);
    if let Ok(Some(bytes)) = image.read_file(&PATH, 1 << 16) {
        assert!(bytes.len() <= 1 << 16);
    }
}

fuzz_target!(|data: &[u8]| {
    let len = data.len() as u64;
    if let Ok(mut fs) = Squashfs::open(std::io::Cursor::new(data), len) {
        exercise(&mut fs);
    }
    if let Ok(mut fs) = Erofs::open(std::io::Cursor::new(data), len) {
        exercise(&mut fs);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(release) = ExtensionRelease::parse(text)
    {
        let _ = release.refusal(&Host {
            version_id: "4593.2.5",
            architecture: "x86-64",
        });
    }
});
