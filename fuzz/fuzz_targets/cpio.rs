//! The newc cpio writer and reader: any listed archive is read back as written; a reader of
//! arbitrary bytes never panics.
#![no_main]
use std::collections::BTreeMap;
use std::ops::Bound;

use kato_image::emit::cpio::{Node, archive, list};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = list(data);
    // Entries from the input: names of lower-case letters and slashes, small contents.
    let mut entries: BTreeMap<String, Node> = BTreeMap::new();
    for chunk in data.chunks(16).take(64) {
        let (name, body) = chunk.split_at(chunk.len().min(6));
        let name: String = name
            .iter()
            .map(|b| {
                if b % 5 == 0 {
                    '/'
                } else {
                    char::from(b'a' + b % 26)
                }
            })
            .collect();
        let name = name.trim_matches('/').replace("//", "/");
        // A path may not be both a file and another's parent: none of its prefixes may be a
        // file, and no file may sit below it. The map is sorted, so both are lookups rather
        // than a scan of every pair, which made the harness, not the code under test, the cost.
        let below = format!("{name}/");
        let has_parent_file = name
            .match_indices('/')
            .any(|(i, _)| entries.contains_key(&name[..i]));
        let has_child = entries
            .range::<str, _>((Bound::Included(below.as_str()), Bound::Unbounded))
            .next()
            .is_some_and(|(k, _)| k.starts_with(&below));
        if name.is_empty() || has_parent_file || has_child {
            continue;
        }
        entries.insert(
            name,
            Node::File {
                mode: 0o644,
                data: body.to_vec(),
            },
        );
    }
    let bytes = archive(&entries, 1_700_000_000);
    let listed = list(&bytes).expect("our own archive reads back");
    for (name, node) in &entries {
        let Node::File { data, .. } = node else {
            unreachable!()
        };
        let found = listed.iter().find(|(n, _, _)| n == name);
        if let Some((_, mode, bytes)) = found
            && mode & 0o170000 == 0o100000
        {
            assert_eq!(bytes, data, "{name}");
        }
    }
});
