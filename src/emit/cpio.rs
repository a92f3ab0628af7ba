//! The newc ("070701") cpio format the kernel unpacks initramfs archives in.
//!
//! Each entry: a 110-byte ASCII header (magic, then thirteen 8-digit hex fields: ino, mode,
//! uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize
//! including the NUL, check), the name and a NUL padded to a multiple of 4, the data padded
//! to a multiple of 4. A `TRAILER!!!` entry ends the archive. The kernel creates no parent
//! folders for a file: every folder needs its own entry before its files.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir { mode: u32 },
    File { mode: u32, data: Vec<u8> },
}

/// An archive of `entries` (path → node), written in path order with every parent folder
/// present, owned by root, all with `mtime`: the same entries give the same bytes.
pub fn archive(entries: &BTreeMap<String, Node>, mtime: u32) -> Vec<u8> {
    let mut all: BTreeMap<String, Node> = BTreeMap::new();
    for (path, node) in entries {
        let parts: Vec<&str> = path.split('/').collect();
        for i in 1..parts.len() {
            all.entry(parts[..i].join("/"))
                .or_insert(Node::Dir { mode: 0o755 });
        }
        all.insert(path.clone(), node.clone());
    }
    let mut out = Vec::new();
    for (index, (path, node)) in all.iter().enumerate() {
        let (mode, data): (u32, &[u8]) = match node {
            Node::Dir { mode } => (0o040000 | mode, &[]),
            Node::File { mode, data } => (0o100000 | mode, data),
        };
        let nlink = if matches!(node, Node::Dir { .. }) {
            2
        } else {
            1
        };
        entry(&mut out, index as u32 + 1, mode, nlink, mtime, path, data);
    }
    entry(&mut out, 0, 0, 1, 0, "TRAILER!!!", &[]);
    out
}

fn entry(out: &mut Vec<u8>, ino: u32, mode: u32, nlink: u32, mtime: u32, name: &str, data: &[u8]) {
    let fields = [
        ino,
        mode,
        0,
        0,
        nlink,
        mtime,
        data.len() as u32,
        0,
        0,
        0,
        0,
        name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for field in fields {
        // Eight upper-case hex digits, most significant first, without a String per field.
        out.extend(
            (0..8)
                .rev()
                .map(|digit| HEX[(field >> (4 * digit)) as usize & 0xf]),
        );
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad(out);
    out.extend_from_slice(data);
    pad(out);
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn pad(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(4), 0);
}

/// Parses a newc archive back into (path, mode, data) triples, for tests and inspection.
pub fn list(mut bytes: &[u8]) -> Option<Vec<(String, u32, Vec<u8>)>> {
    let mut entries = Vec::new();
    let mut consumed = 0usize;
    loop {
        if bytes.len() < 110 || &bytes[..6] != b"070701" {
            return None;
        }
        let field = |i: usize| {
            u32::from_str_radix(std::str::from_utf8(&bytes[6 + 8 * i..14 + 8 * i]).ok()?, 16).ok()
        };
        let (mode, size, name_size) = (field(1)?, field(6)? as usize, field(11)? as usize);
        let name_end = 110 + name_size;
        let name = std::str::from_utf8(bytes.get(110..name_end - 1)?)
            .ok()?
            .to_string();
        let data_start = (consumed + name_end).div_ceil(4) * 4 - consumed;
        let data = bytes.get(data_start..data_start + size)?.to_vec();
        let next = (consumed + data_start + size).div_ceil(4) * 4 - consumed;
        if name == "TRAILER!!!" {
            return Some(entries);
        }
        entries.push((name, mode, data));
        consumed += next;
        bytes = bytes.get(next..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips_with_parents_in_order(files in prop::collection::btree_map("[a-z]{1,4}(/[a-z]{1,4}){0,3}", prop::collection::vec(any::<u8>(), 0..300), 1..8)) {
            // A path may not be both a file and a parent of another.
            let mut entries = BTreeMap::new();
            for (path, data) in &files {
                if files.keys().any(|other| other.starts_with(&format!("{path}/"))) {
                    continue;
                }
                entries.insert(path.clone(), Node::File { mode: 0o644, data: data.clone() });
            }
            let bytes = archive(&entries, 7);
            prop_assert_eq!(bytes.len() % 4, 0);
            let listed = list(&bytes).unwrap();
            let names: Vec<&str> = listed.iter().map(|(n, _, _)| n.as_str()).collect();
            let mut sorted = names.clone();
            sorted.sort();
            prop_assert_eq!(&names, &sorted);
            for (name, _, data) in &listed {
                if let Some(Node::File { data: expected, .. }) = entries.get(name) {
                    prop_assert_eq!(data, expected);
                }
                if let Some(parent) = name.rsplit_once('/').map(|(p, _)| p) {
                    prop_assert!(names.contains(&parent), "parent {} of {} has an entry", parent, name);
                }
            }
            prop_assert_eq!(archive(&entries, 7), bytes);
        }
    }
}
