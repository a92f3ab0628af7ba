//! For `scripts/bench platforms`: packages a raw disk the way a build does (the writer and
//! its digest, then a sync), so the writer alone can be timed against `qemu-img convert`
//! and `tar -Sczf`. Usage: container-bench qcow2|gce RAW OUT
use std::fs::{File, OpenOptions};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, format, raw, out] = args.as_slice() else {
        eprintln!("usage: container-bench qcow2|gce RAW OUT");
        std::process::exit(2);
    };
    let source = File::open(raw)?;
    let len = source.metadata()?.len();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(out)?;
    let disk = match format.as_str() {
        "qcow2" => kato_image::emit::package::qcow2_file(&source, len, &file)?,
        "gce" => kato_image::emit::package::gce_file(&source, len, 1_700_000_000, &file)?,
        other => {
            eprintln!("container-bench: unknown format {other}");
            std::process::exit(2);
        }
    };
    file.sync_all()?;
    println!("{} {}", disk.size, disk.blake3);
    Ok(())
}
