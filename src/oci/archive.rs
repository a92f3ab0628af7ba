//! The tar a machine loads: one file that is both a docker-archive (`manifest.json`,
//! `repositories`; what `docker load` reads) and an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/`), holding the blobs exactly as the registry served them.
//! Deterministic: fixed order, owner 0, mtime 0, so the same image gives the same bytes.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::manifest;
use super::registry::PulledImage;
use crate::cache::hex;
use crate::io::Sha256Writer;

/// Bumped when the archive layout changes, so cached archives are remade.
const LAYOUT_VERSION: &str = "kato-archive-2";
const BLOCK: usize = 512;

/// A finished archive in the cache.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Archive {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
}

/// One ustar header. Offsets (POSIX.1-1988): name 0..100, mode 100..108, uid 108..116,
/// gid 116..124, size 124..136, mtime 136..148, checksum 148..156, type 156,
/// magic 257..263 (`ustar\0`), version 263..265 (`00`).
pub struct Header {
    pub name: String,
    pub size: u64,
    pub(crate) directory: bool,
}

impl Header {
    pub fn encode(&self) -> [u8; BLOCK] {
        assert!(self.name.len() < 100, "archive names are short");
        let mut block = [0u8; BLOCK];
        block[..self.name.len()].copy_from_slice(self.name.as_bytes());
        let octal = |block: &mut [u8; BLOCK], at: usize, width: usize, value: u64| {
            let text = format!("{value:0w$o}\0", w = width - 1);
            block[at..at + width].copy_from_slice(text.as_bytes());
        };
        octal(
            &mut block,
            100,
            8,
            if self.directory { 0o755 } else { 0o644 },
        );
        octal(&mut block, 108, 8, 0);
        octal(&mut block, 116, 8, 0);
        octal(
            &mut block,
            124,
            12,
            if self.directory { 0 } else { self.size },
        );
        octal(&mut block, 136, 12, 0);
        block[156] = if self.directory { b'5' } else { b'0' };
        block[257..263].copy_from_slice(b"ustar\0");
        block[263..265].copy_from_slice(b"00");
        // The checksum is computed with its own field as spaces.
        block[148..156].copy_from_slice(b"        ");
        let sum: u64 = block.iter().map(|&b| u64::from(b)).sum();
        let text = format!("{sum:06o}\0 ");
        block[148..156].copy_from_slice(text.as_bytes());
        block
    }
}

/// The cache name of the archive for `image`: it depends on the reference (the archive
/// names it) and the platform manifest, nothing else.
pub(crate) fn cache_key(image: &PulledImage) -> String {
    // Everything the archive's bytes depend on: its layout, the name it carries and the
    // platform manifest (which names every blob by digest).
    let digest = Sha256::new()
        .chain_update(LAYOUT_VERSION)
        .chain_update([0])
        .chain_update(image.reference.name())
        .chain_update([0])
        .chain_update(&image.manifest_digest)
        .finalize();
    hex(&digest)
}

/// Writes the archive for `image` to `out`; returns its SHA-256 and size.
pub fn write(image: &PulledImage, out: impl Write) -> io::Result<(String, u64)> {
    let mut out = Sha256Writer::new(out);
    let blob_name = |digest: &str| format!("blobs/sha256/{}", &digest["sha256:".len()..]);
    let directory = |out: &mut Sha256Writer<_>, name: &str| {
        out.write_all(
            &Header {
                name: name.into(),
                size: 0,
                directory: true,
            }
            .encode(),
        )
    };
    directory(&mut out, "blobs/")?;
    directory(&mut out, "blobs/sha256/")?;
    // Blobs in digest order, each once (images may repeat a layer).
    let mut blobs: Vec<(&str, BlobSource)> = vec![
        (
            &image.manifest.config.digest,
            BlobSource::File(&image.config_path),
        ),
        (
            &image.manifest_digest,
            BlobSource::Bytes(&image.manifest_bytes),
        ),
    ];
    for (layer, path) in image.manifest.layers.iter().zip(&image.layer_paths) {
        blobs.push((&layer.digest, BlobSource::File(path)));
    }
    blobs.sort_by(|a, b| a.0.cmp(b.0));
    blobs.dedup_by(|a, b| a.0 == b.0);
    for (digest, source) in &blobs {
        match source {
            BlobSource::Bytes(bytes) => member(&mut out, &blob_name(digest), bytes)?,
            BlobSource::File(path) => {
                let mut file = File::open(path)?;
                let size = file.metadata()?.len();
                out.write_all(
                    &Header {
                        name: blob_name(digest),
                        size,
                        directory: false,
                    }
                    .encode(),
                )?;
                let copied = io::copy(&mut (&mut file).take(size), &mut out)?;
                if copied != size {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{}: shorter than its recorded size", path.display()),
                    ));
                }
                pad(&mut out, size)?;
            }
        }
    }
    let reference = &image.reference;
    let repo_tags: Vec<String> = reference.repo_tag().into_iter().collect();
    let config_hex = &image.manifest.config.digest["sha256:".len()..];
    let docker_manifest = serde_json::json!([{
        "Config": blob_name(&image.manifest.config.digest),
        "RepoTags": repo_tags,
        "Layers": image.manifest.layers.iter().map(|l| blob_name(&l.digest)).collect::<Vec<_>>(),
    }]);
    let mut annotations = serde_json::Map::new();
    annotations.insert("io.containerd.image.name".into(), reference.name().into());
    if let Some(tag) = &reference.tag {
        annotations.insert(
            "org.opencontainers.image.ref.name".into(),
            tag.clone().into(),
        );
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_INDEX,
        "manifests": [{
            "mediaType": image.manifest_media_type,
            "digest": image.manifest_digest,
            "size": image.manifest_bytes.len(),
            "annotations": annotations,
        }],
    });
    member(&mut out, "index.json", index.to_string().as_bytes())?;
    member(
        &mut out,
        "manifest.json",
        docker_manifest.to_string().as_bytes(),
    )?;
    member(&mut out, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    if let Some(tag) = &reference.tag {
        let repositories =
            serde_json::json!({ reference.familiar_name(): { tag.as_str(): config_hex } });
        member(
            &mut out,
            "repositories",
            repositories.to_string().as_bytes(),
        )?;
    }
    // Two zero blocks end the archive.
    out.write_all(&[0u8; BLOCK * 2])?;
    out.flush()?;
    Ok(out.finish())
}

/// Writes the archive for `image` to `path`, under a temporary name in the same folder until
/// it is complete.
pub fn write_file(image: &PulledImage, path: &Path) -> io::Result<Archive> {
    let temp = crate::atomic::temp_path(path);
    let result = (|| {
        let mut out = io::BufWriter::with_capacity(1 << 20, File::create(&temp)?);
        let (sha256, size) = write(image, &mut out)?;
        out.into_inner().map_err(|e| e.into_error())?;
        crate::atomic::commit(&temp, path)?;
        Ok(Archive {
            path: path.to_path_buf(),
            sha256,
            size,
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

enum BlobSource<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

fn member(out: &mut impl Write, name: &str, bytes: &[u8]) -> io::Result<()> {
    out.write_all(
        &Header {
            name: name.into(),
            size: bytes.len() as u64,
            directory: false,
        }
        .encode(),
    )?;
    out.write_all(bytes)?;
    pad(out, bytes.len() as u64)
}

fn pad(out: &mut impl Write, size: u64) -> io::Result<()> {
    let rest = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
    out.write_all(&[0u8; BLOCK][..rest as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_have_valid_checksums_and_fields() {
        let block = Header {
            name: "blobs/sha256/abc".into(),
            size: 1234,
            directory: false,
        }
        .encode();
        let stored = std::str::from_utf8(&block[148..154]).unwrap();
        let mut copy = block;
        copy[148..156].copy_from_slice(b"        ");
        let sum: u64 = copy.iter().map(|&b| u64::from(b)).sum();
        assert_eq!(u64::from_str_radix(stored, 8).unwrap(), sum);
        assert_eq!(&block[124..136], b"00000002322\0");
        assert_eq!(block[156], b'0');
        assert_eq!(&block[257..265], b"ustar\x0000");
    }

    proptest::proptest! {
        /// Any short name and size comes back from an independent tar reader as written.
        #[test]
        fn headers_round_trip_through_the_tar_crate(
            name in "[a-zA-Z0-9._/-]{1,99}",
            size in 0u64..(1u64 << 33),
            directory: bool,
        ) {
            let block = Header { name: name.clone(), size, directory }.encode();
            let header = tar::Header::from_byte_slice(&block);
            let path = header.path_bytes();
            proptest::prop_assert_eq!(path.as_ref(), name.as_bytes());
            proptest::prop_assert_eq!(header.size().unwrap(), if directory { 0 } else { size });
            proptest::prop_assert_eq!(header.cksum().unwrap(), {
                let mut copy = block;
                copy[148..156].copy_from_slice(b"        ");
                copy.iter().map(|&b| u32::from(b)).sum::<u32>()
            });
            proptest::prop_assert_eq!(header.entry_type().is_dir(), directory);
            proptest::prop_assert_eq!(header.uid().unwrap(), 0);
            proptest::prop_assert_eq!(header.mtime().unwrap(), 0);
        }
    }
}
