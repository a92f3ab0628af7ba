//! The KATO-DATA partition: a btrfs filesystem holding a role's container images as tars and
//! an index for the preload script, inserted before ROOT (which moves further out).

use crate::disk::layout::{self, LayoutError, NewPartition};
use crate::disk::{Guid, Window, WorkingCopy, types};
use crate::fs::btrfs::{self, WriteError, WriteOptions};
use crate::fs::tree::{Contents, Entry, FileTree, Kind, Meta, Timespec};
use crate::oci::BakedImage;
use crate::origin::Origin;
use crate::profile::{DataSettings, Located};

pub(crate) const DATA_LABEL: &str = "KATO-DATA";
/// After Flatcar's slots (1-4, 6, 7, 9); 5 and 8 stay free as in Flatcar's own layout.
pub(crate) const DATA_SLOT: u32 = 10;
/// Room for btrfs's own structures (superblocks, system and metadata chunks).
const FS_OVERHEAD: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(
        "{origin}: the images need {needed} bytes of KATO-DATA but data.size allows {size}; raise data.size or bake fewer images"
    )]
    TooSmall {
        origin: Origin,
        needed: u64,
        size: u64,
    },
    #[error("adding the KATO-DATA partition: {0}")]
    Layout(#[from] LayoutError),
    #[error("writing KATO-DATA: {0}")]
    Write(#[from] WriteError),
}

/// What KATO-DATA holds: the tars, `index.json` for tools, `index.tsv` for the preload
/// script (`sha256 TAB image-id TAB file TAB reference`).
pub(crate) fn data_tree(images: &[BakedImage], time: Timespec) -> FileTree {
    let dir = Meta::new(0o755, time);
    let mut tree = FileTree::new(dir.clone());
    let mut tsv = String::from("# Written by kato-image: sha256, image ID, file, reference\n");
    for image in images {
        tree.insert(
            &image.file,
            Entry {
                meta: Meta::new(0o644, time),
                kind: Kind::File(Contents::Host {
                    path: image.path.clone(),
                    len: image.size,
                }),
            },
            &dir,
        )
        .expect("image file names are plain relative paths");
        tsv.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            image.sha256, image.config_digest, image.file, image.reference
        ));
    }
    let mut json = serde_json::to_vec_pretty(images).expect("serialises");
    json.push(b'\n');
    for (name, bytes) in [("index.json", json), ("index.tsv", tsv.into_bytes())] {
        tree.insert(name, Entry::file(Meta::new(0o644, time), bytes), &dir)
            .expect("plain names");
    }
    tree
}

/// The partition size: fixed by the profile, or the images plus headroom (default: a tenth
/// of the images, at least 64 MiB).
pub(crate) fn data_size(images: &[BakedImage], settings: &DataSettings) -> Result<u64, DataError> {
    let content: u64 = images.iter().map(|i| i.size).sum::<u64>() + FS_OVERHEAD;
    match &settings.size {
        Some(Located { value, origin }) => {
            if content > *value {
                return Err(DataError::TooSmall {
                    origin: origin.clone(),
                    needed: content,
                    size: *value,
                });
            }
            Ok(*value)
        }
        None => {
            let headroom = settings
                .headroom
                .as_ref()
                .map_or_else(|| (content / 10).max(64 << 20), |h| h.value);
            Ok(content + headroom)
        }
    }
}

/// Inserts KATO-DATA before ROOT in `copy` and writes the images' filesystem into it. Its
/// GUIDs are derived from `seed`.
pub(crate) fn add_data_partition(
    copy: &mut WorkingCopy,
    images: &[BakedImage],
    settings: &DataSettings,
    seed: &str,
    time: Timespec,
) -> Result<(), DataError> {
    let size = data_size(images, settings)?;
    let derived = |purpose: &str| crate::disk::guid::derive(seed.as_bytes(), purpose);
    let new = NewPartition {
        slot: DATA_SLOT,
        name: DATA_LABEL.into(),
        type_guid: types::LINUX_DATA.parse::<Guid>().expect("a valid GUID"),
        unique_guid: Guid(derived("partition")),
        size,
    };
    let mut table = copy.table.clone();
    let added = layout::insert_before_root(&mut copy.tracked(), &mut table, &new)?;
    copy.table = table;
    let options = WriteOptions {
        size: added.len(),
        label: DATA_LABEL.into(),
        fsid: derived("filesystem"),
        time,
    };
    let mut tracked = copy.tracked();
    let mut window = Window::new(&mut tracked, added.start(), added.len());
    btrfs::write(&data_tree(images, time), &options, &mut window).map_err(|e| {
        match (e, &settings.size) {
            (WriteError::TooSmall { needed, size }, Some(fixed)) => DataError::TooSmall {
                origin: fixed.origin.clone(),
                needed,
                size,
            },
            (e, _) => DataError::Write(e),
        }
    })?;
    Ok(())
}
