//! Proving a snapshot holds a local image, with the EBS direct APIs: ListSnapshotBlocks
//! names the blocks the snapshot has (with its parent's, as EBS lists them), GetSnapshotBlock
//! returns each with its SHA-256. The APIs give no digest without the data, so every block
//! the snapshot has is read once, in turn, and compared with the image's bytes at its offset;
//! a block the snapshot does not have must be zeros in the image. Memory holds one block.

use std::fs::File;
use std::os::unix::fs::FileExt;

use base64::Engine;
use sha2::{Digest, Sha256};

use super::AmiError;
use super::plan::BLOCK;
use crate::progress::Progress;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotComparison {
    pub image_id: String,
    pub snapshot_id: String,
    /// Blocks the snapshot has, each read and compared.
    pub blocks_read: u64,
    /// Blocks of the image, all compared (absent ones as zeros).
    pub blocks: u64,
    /// The first block that differs, if any: its index and byte offset in the image.
    pub first_difference: Option<u64>,
}

/// The blocks `snapshot_id` has, by index, with their tokens.
async fn listed_blocks(
    client: &aws_sdk_ebs::Client,
    snapshot_id: &str,
) -> Result<Vec<(u64, String)>, AmiError> {
    let mut blocks = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let answer = client
            .list_snapshot_blocks()
            .snapshot_id(snapshot_id)
            .max_results(10_000)
            .set_next_token(next.take())
            .send()
            .await
            .map_err(|e| AmiError::aws("ListSnapshotBlocks", e))?;
        if let Some(size) = answer.block_size().filter(|&s| s as u64 != BLOCK) {
            return Err(AmiError::Answer(format!(
                "ListSnapshotBlocks: blocks of {size} bytes, not EBS's {BLOCK}"
            )));
        }
        for block in answer.blocks() {
            let (Some(index), Some(token)) = (block.block_index(), block.block_token()) else {
                return Err(AmiError::Answer(
                    "ListSnapshotBlocks: a block without index or token".into(),
                ));
            };
            blocks.push((index as u64, token.to_string()));
        }
        match answer.next_token() {
            Some(token) if !token.is_empty() => next = Some(token.to_string()),
            _ => break,
        }
    }
    blocks.sort_unstable();
    blocks.dedup_by_key(|b| b.0);
    Ok(blocks)
}

fn local_block(image: &File, len: u64, index: u64) -> Result<Vec<u8>, AmiError> {
    let mut buf = vec![0u8; BLOCK as usize];
    let start = index * BLOCK;
    let want = (len.saturating_sub(start)).min(BLOCK) as usize;
    image
        .read_exact_at(&mut buf[..want], start)
        .map_err(|e| AmiError::Answer(format!("cannot read the image at byte {start}: {e}")))?;
    Ok(buf)
}

pub async fn compare(
    client: &aws_sdk_ebs::Client,
    image_id: &str,
    snapshot_id: &str,
    image: &File,
    progress: &dyn Progress,
) -> Result<SnapshotComparison, AmiError> {
    let len = image
        .metadata()
        .map_err(|e| AmiError::Answer(format!("cannot read the image: {e}")))?
        .len();
    let blocks = len.div_ceil(BLOCK);
    let listed = listed_blocks(client, snapshot_id).await?;
    if let Some(&(index, _)) = listed.iter().find(|(i, _)| *i >= blocks) {
        return Ok(SnapshotComparison {
            image_id: image_id.into(),
            snapshot_id: snapshot_id.into(),
            blocks_read: 0,
            blocks,
            first_difference: Some(index),
        });
    }
    let mut next_listed = listed.iter().peekable();
    let mut read = 0;
    for index in 0..blocks {
        let local = local_block(image, len, index)?;
        let same = match next_listed.next_if(|(i, _)| *i == index) {
            None => local.iter().all(|&b| b == 0),
            Some((_, token)) => {
                let answer = client
                    .get_snapshot_block()
                    .snapshot_id(snapshot_id)
                    .block_index(index as i32)
                    .block_token(token)
                    .send()
                    .await
                    .map_err(|e| AmiError::aws("GetSnapshotBlock", e))?;
                let checksum = answer.checksum().map(str::to_string);
                let data = answer
                    .block_data
                    .collect()
                    .await
                    .map_err(|e| AmiError::Answer(format!("GetSnapshotBlock: {e}")))?
                    .into_bytes();
                read += 1;
                if data.len() as u64 > BLOCK {
                    return Err(AmiError::Answer(format!(
                        "GetSnapshotBlock: block {index} has {} bytes, over {BLOCK}",
                        data.len()
                    )));
                }
                let sha = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&data));
                if checksum.as_deref().is_some_and(|c| c != sha) {
                    return Err(AmiError::Answer(format!(
                        "GetSnapshotBlock: block {index} does not match its own checksum"
                    )));
                }
                data[..] == local[..data.len()] && local[data.len()..].iter().all(|&b| b == 0)
            }
        };
        if !same {
            return Ok(SnapshotComparison {
                image_id: image_id.into(),
                snapshot_id: snapshot_id.into(),
                blocks_read: read,
                blocks,
                first_difference: Some(index),
            });
        }
        if index % 256 == 255 {
            progress.note(&format!("compared {} of {blocks} blocks", index + 1));
        }
    }
    Ok(SnapshotComparison {
        image_id: image_id.into(),
        snapshot_id: snapshot_id.into(),
        blocks_read: read,
        blocks,
        first_difference: None,
    })
}
