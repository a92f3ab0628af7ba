//! The documented merge rules, checked on random profiles: maps merge key by key, lists
//! append, scalars override.

use std::collections::BTreeMap;

use kato_image::profile::ProfileSet;
use proptest::prelude::*;

fn yaml_list(key: &str, items: &[String]) -> String {
    let mut text = format!("{key}:\n");
    for item in items {
        text.push_str(&format!("  - {item}\n"));
    }
    if items.is_empty() {
        text = format!("{key}: []\n");
    }
    text
}

fn yaml_map(key: &str, map: &BTreeMap<String, String>) -> String {
    let mut text = format!("{key}:\n");
    for (k, v) in map {
        text.push_str(&format!("  {k}: \"{v}\"\n"));
    }
    if map.is_empty() {
        text = format!("{key}: {{}}\n");
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn role_extends_base_by_the_documented_rules(
        base_args in prop::collection::vec("[a-z]{1,8}=[a-z0-9]{1,6}", 0..5),
        role_args in prop::collection::vec("[a-z]{1,8}", 0..5),
        base_meta in prop::collection::btree_map("[a-z][a-z0-9_]{0,6}", "[a-z0-9 .:,/-]{0,12}", 0..6),
        role_meta in prop::collection::btree_map("[a-z][a-z0-9_]{0,6}", "[a-z0-9 .:,/-]{0,12}", 0..6),
        base_version in prop::option::of("[1-9][0-9]{3}\\.[0-9]\\.[0-9]"),
        role_version in prop::option::of("[1-9][0-9]{3}\\.[0-9]\\.[0-9]"),
        role_desc in prop::option::of("[A-Za-z ]{1,20}"),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut base = String::from("abstract: true\ndescription: base\n");
        if let Some(v) = &base_version {
            base.push_str(&format!("release:\n  version: \"{v}\"\n  channel: beta\n"));
        }
        base.push_str(&yaml_list("kernel_args", &base_args));
        base.push_str(&yaml_map("metadata", &base_meta));
        let mut role = String::from("extends: base\n");
        if let Some(v) = &role_version {
            role.push_str(&format!("release:\n  version: \"{v}\"\n"));
        }
        if let Some(d) = &role_desc {
            role.push_str(&format!("description: \"{d}\"\n"));
        }
        role.push_str(&yaml_list("kernel_args", &role_args));
        role.push_str(&yaml_map("metadata", &role_meta));
        std::fs::write(dir.path().join("base.yaml"), &base).unwrap();
        std::fs::write(dir.path().join("node.yaml"), &role).unwrap();

        let set = ProfileSet::open(dir.path()).unwrap();
        prop_assert_eq!(set.roles().unwrap(), vec!["node".to_string()]);
        let profile = set.load("node").unwrap();

        let args: Vec<String> = profile.kernel_args.iter().map(|a| a.value.clone()).collect();
        let expected_args: Vec<String> = base_args.iter().chain(&role_args).cloned().collect();
        prop_assert_eq!(args, expected_args);

        let meta: BTreeMap<String, String> =
            profile.metadata.iter().map(|(k, v)| (k.clone(), v.value.clone())).collect();
        let mut expected_meta = base_meta.clone();
        expected_meta.extend(role_meta.clone());
        prop_assert_eq!(meta, expected_meta);

        let expected_version = role_version.or(base_version.clone()).unwrap_or_else(|| "current".into());
        prop_assert_eq!(&profile.release.version, &expected_version);
        let expected_channel = if base_version.is_some() { "Beta" } else { "Stable" };
        prop_assert_eq!(format!("{:?}", profile.release.channel), expected_channel);
        prop_assert_eq!(profile.description.as_deref(), Some(role_desc.as_deref().unwrap_or("base")));
        prop_assert_eq!(profile.sources.len(), 2);
    }
}
