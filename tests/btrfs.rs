//! The btrfs writer, judged by btrfs check, btrfs restore, GRUB and the kernel.

mod common;

use common::btrfs::*;

#[test]
fn sample_tree_passes_check_restore_grub_and_the_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("oem.btrfs");
    let tree = sample_tree();
    make_image(&tree, &image, 128 << 20, "OEM");
    if let Ok(keep) = std::env::var("KATO_KEEP_IMAGE") {
        std::fs::copy(&image, keep).unwrap();
    }
    let (ok, report) = check(&image);
    assert!(ok, "btrfs check: {report}");
    let restored = dir.path().join("restored");
    std::fs::create_dir(&restored).unwrap();
    restore(&image, &restored);
    assert_folder_matches(&restored, &tree, true);
    assert_eq!(grub_cat(&image, "/hello.txt"), b"hello world\n");
    assert_eq!(grub_cat(&image, "/dir/big").len(), 300_000);
    with_kernel_mount(&image, "ro", |mount| {
        assert_folder_matches(mount, &tree, true)
    });
}
