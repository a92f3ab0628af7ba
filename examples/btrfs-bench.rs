//! The btrfs writer and reader on their own, for `scripts/bench btrfs`:
//!
//!   btrfs-bench write SOURCE_DIR IMAGE SIZE   a filesystem of SIZE bytes from a host folder
//!   btrfs-bench extract IMAGE OUT_DIR         every file out of a filesystem

use std::path::Path;

use kato_image::fs::btrfs::{Filesystem, WriteOptions, write};
use kato_image::fs::tree::{FileTree, Timespec};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["write", source, image, size] => {
            let tree = FileTree::from_host(Path::new(source))?;
            let size: u64 = size.parse()?;
            let mut out = std::fs::File::create(image)?;
            out.set_len(size)?;
            let options = WriteOptions {
                size,
                label: "BENCH".into(),
                fsid: [7; 16],
                time: Timespec::default(),
            };
            let summary = write(&tree, &options, &mut out)?;
            out.sync_all()?;
            println!("{summary:?}");
        }
        ["extract", image, dir] => {
            let mut fs = Filesystem::open(std::fs::File::open(image)?)?;
            std::fs::create_dir_all(dir)?;
            fs.extract(Path::new(dir))?;
        }
        _ => anyhow::bail!("usage: btrfs-bench write SOURCE IMAGE SIZE | extract IMAGE DIR"),
    }
    Ok(())
}
