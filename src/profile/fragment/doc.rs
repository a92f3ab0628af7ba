//! The two languages a fragment is written in, exactly as written: Butane (`variant:
//! flatcar`, YAML, snake_case keys) and Ignition (JSON, camelCase keys). Their storage,
//! systemd and passwd sections have the same shape, so one macro declares them for both
//! spellings; what only one language has (Butane's `inline`/`local`, `trees`,
//! `contents_local`; Ignition's `source`) is in the `Resource` each module declares itself.
//!
//! Every section the Ignition spec has is declared, so that what kato-image does not
//! translate is refused by its name at its position, not as an unknown key; what neither
//! language has is an unknown key.

use serde::de::IgnoredAny;
use serde_saphyr::Spanned;

/// A section kato-image refuses wherever it appears; only its position is kept.
pub(crate) type Refused = Option<Spanned<IgnoredAny>>;

macro_rules! sections {
    ($case:literal) => {
        use serde::Deserialize;
        use serde_saphyr::Spanned;

        use $crate::profile::fragment::doc::Refused;

        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = $case)]
        pub(crate) struct StorageDoc {
            pub files: Option<Vec<Spanned<FileDoc>>>,
            pub directories: Option<Vec<Spanned<DirectoryDoc>>>,
            pub links: Option<Vec<Spanned<LinkDoc>>>,
            pub trees: Option<Vec<Spanned<TreeDoc>>>,
            pub disks: Refused,
            pub(crate) raid: Refused,
            pub filesystems: Refused,
            pub(crate) luks: Refused,
        }

        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = $case)]
        pub(crate) struct FileDoc {
            pub path: Spanned<String>,
            pub mode: Option<Spanned<u32>>,
            pub(crate) overwrite: Option<bool>,
            pub user: Option<OwnerDoc>,
            pub group: Option<OwnerDoc>,
            pub contents: Option<Spanned<ResourceDoc>>,
            pub append: Refused,
        }

        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = $case)]
        pub(crate) struct DirectoryDoc {
            pub path: Spanned<String>,
            pub mode: Option<Spanned<u32>>,
            pub(crate) overwrite: Option<bool>,
            pub user: Option<OwnerDoc>,
            pub group: Option<OwnerDoc>,
        }

        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = $case)]
        pub(crate) struct LinkDoc {
            pub path: Spanned<String>,
            pub target: Option<String>,
            pub hard: Option<bool>,
            pub(crate) overwrite: Option<bool>,
            pub user: Option<OwnerDoc>,
            pub group: Option<OwnerDoc>,
        }

        /// Butane only: a local folder copied under `path` (Ignition's module refuses it).
        #[allow(dead_code)]
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = $case)]
        pub(crate) struct TreeDoc {
            pub local: String,
            pub path: Option<String>,
        }

        /// A resource's `verification`: `sha512-HEX` or `sha256-HEX` of its bytes.
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = $case)]
        pub(crate) struct VerificationDoc {
            pub hash: Option<String>,
        }

        #[derive(Debug, Clone, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = $case)]
        pub(crate) struct OwnerDoc {
            pub id: Option<i64>,
            pub name: Option<String>,
        }

        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = $case)]
        pub(crate) struct SystemdDoc {
            pub units: Option<Vec<Spanned<UnitDoc>>>,
        }

        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = $case)]
        pub(crate) struct UnitDoc {
            pub name: Spanned<String>,
            pub enabled: Option<bool>,
            pub(crate) mask: Option<bool>,
            pub contents: Option<String>,
            /// Butane 1.1.0 and later.
            pub contents_local: Option<Spanned<String>>,
            pub dropins: Option<Vec<Spanned<DropinDoc>>>,
        }

        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = $case)]
        pub(crate) struct DropinDoc {
            pub name: Spanned<String>,
            pub contents: Option<String>,
            /// Butane 1.1.0 and later.
            pub contents_local: Option<Spanned<String>>,
        }

        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = $case)]
        pub(crate) struct PasswdDoc {
            pub users: Option<Vec<Spanned<UserDoc>>>,
            pub groups: Option<Vec<Spanned<GroupDoc>>>,
        }

        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = $case)]
        pub(crate) struct UserDoc {
            pub name: Spanned<String>,
            pub uid: Option<i64>,
            pub(crate) gecos: Option<String>,
            pub(crate) home_dir: Option<String>,
            pub(crate) no_create_home: Option<bool>,
            pub(crate) primary_group: Option<String>,
            pub groups: Option<Vec<String>>,
            pub(crate) no_user_group: Option<bool>,
            pub(crate) no_log_init: Option<bool>,
            pub shell: Option<String>,
            pub system: Option<bool>,
            pub should_exist: Option<bool>,
            pub(crate) password_hash: Option<String>,
            pub ssh_authorized_keys: Option<Vec<Spanned<String>>>,
            /// Butane 1.1.0 and later.
            pub ssh_authorized_keys_local: Option<Vec<Spanned<String>>>,
        }

        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = $case)]
        pub(crate) struct GroupDoc {
            pub name: Spanned<String>,
            pub gid: Option<i64>,
            pub(crate) password_hash: Option<String>,
            pub system: Option<bool>,
            pub should_exist: Option<bool>,
        }

        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = $case)]
        pub(crate) struct KernelArgumentsDoc {
            pub should_exist: Option<Vec<Spanned<String>>>,
            pub should_not_exist: Option<Vec<Spanned<String>>>,
        }
    };
}

pub(super) use sections;
