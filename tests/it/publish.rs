//! `publish ami --dry-run`: the EBS upload plan of built role images, checked against a
//! Python model that reads the images block by block.

use crate::common;

use std::path::Path;

/// Blocks to send and the LINEAR checksum, by Python: without a parent, the 512 KiB blocks
/// holding data (SEEK_DATA); with one, the blocks whose bytes differ from the parent's.
fn model(image: &Path, parent: Option<&Path>) -> (u64, String) {
    let script = r#"
import base64, hashlib, os, sys
B = 512 * 1024
image = sys.argv[1]
parent = sys.argv[2] if len(sys.argv) > 2 else None
size = os.path.getsize(image)
def blocks_with_data(path):
    fd = os.open(path, os.O_RDONLY)
    n = os.fstat(fd).st_size
    out, at = set(), 0
    while at < n:
        try:
            start = os.lseek(fd, at, os.SEEK_DATA)
        except OSError:
            break
        end = os.lseek(fd, start, os.SEEK_HOLE)
        out.update(range(start // B, (end - 1) // B + 1))
        at = end
    os.close(fd)
    return out
def block(f, i):
    f.seek(i * B)
    data = f.read(B)
    return data + bytes(B - len(data))
with open(image, "rb") as f:
    if parent is None:
        chosen = sorted(blocks_with_data(image))
        digests = [hashlib.sha256(block(f, i)).digest() for i in chosen]
    else:
        with open(parent, "rb") as p:
            candidates = sorted(blocks_with_data(image) | blocks_with_data(parent))
            digests = []
            for i in candidates:
                mine = block(f, i)
                if mine != block(p, i):
                    digests.append(hashlib.sha256(mine).digest())
print(len(digests), base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode())
"#;
    let image = image.to_str().unwrap();
    let mut args = vec!["-c", script, image];
    args.extend(parent.map(|p| p.to_str().unwrap()));
    let out = common::judge(&common::python(), &args, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (count, checksum) = text.trim().split_once(' ').unwrap();
    (count.parse().unwrap(), checksum.to_string())
}

#[test]
fn upload_plans_send_what_differs_with_the_checksums_ebs_expects() {
    let out = common::boot::built_ami_roles();
    let master = out.path().join("master-ami.raw");
    let worker = out.path().join("worker-ami.raw");

    let first = common::upload_plan(&master, None);
    let (count, checksum) = model(&master, None);
    assert_eq!(first["changed_blocks"], count);
    assert_eq!(first["aggregate_checksum"], checksum.as_str());
    assert_eq!(first["block_size"], 524288);
    let size = std::fs::metadata(&master).unwrap().len();
    assert_eq!(first["volume_size_gib"], size.div_ceil(1 << 30));

    let second = common::upload_plan(&worker, Some(&master));
    let (count, checksum) = model(&worker, Some(&master));
    assert_eq!(second["changed_blocks"], count);
    assert_eq!(second["aggregate_checksum"], checksum.as_str());
    assert!(count > 0, "the roles' OEM partitions differ");
    assert!(
        count * 10 < first["changed_blocks"].as_u64().unwrap(),
        "a second role sends only its changed blocks: {count} of {}",
        first["changed_blocks"]
    );
}
