//! Writing a snapshot with the EBS direct APIs: StartSnapshot, the plan's blocks with
//! PutSnapshotBlock on a few concurrent workers (the SDK retries throttling and 5xx answers
//! with backoff), then CompleteSnapshot with the changed-block count and the LINEAR aggregate.

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use aws_sdk_ebs::primitives::ByteStream;
use aws_sdk_ebs::types::{ChecksumAggregationMethod, ChecksumAlgorithm, Tag};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::AmiError;
use super::plan::{BLOCK, UploadPlan};
use crate::progress::Progress;

/// What to start the snapshot with.
#[derive(Debug, Clone)]
pub struct SnapshotSpec {
    pub description: String,
    pub tags: Vec<(String, String)>,
    /// The snapshot the plan was made against (`--parent`).
    pub parent_snapshot_id: Option<String>,
    pub kms_key_arn: Option<String>,
    /// Blocks in flight at once.
    pub workers: usize,
}

/// Minutes EBS waits for CompleteSnapshot before giving up on the snapshot.
const COMPLETE_WITHIN_MINUTES: i32 = 60;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UploadedSnapshot {
    pub snapshot_id: String,
    pub parent_snapshot_id: Option<String>,
    pub volume_size_gib: u64,
    pub changed_blocks: u64,
    pub bytes_sent: u64,
    /// base64 SHA-256 over the sent blocks' SHA-256s, in block order (LINEAR).
    pub aggregate_checksum: String,
    /// What CompleteSnapshot answered (`pending` or `completed`).
    pub status: String,
}

/// Uploads `image` as planned. `plan` must have been made from this file (and, with a parent
/// snapshot, against the image that snapshot holds).
pub async fn upload(
    client: &aws_sdk_ebs::Client,
    image: Arc<File>,
    plan: Arc<UploadPlan>,
    spec: &SnapshotSpec,
    progress: &dyn Progress,
) -> Result<UploadedSnapshot, AmiError> {
    let mut start = client
        .start_snapshot()
        .volume_size(plan.volume_size_gib as i64)
        .description(&spec.description)
        .timeout(COMPLETE_WITHIN_MINUTES)
        .client_token(client_token(&plan, spec));
    for (key, value) in &spec.tags {
        start = start.tags(Tag::builder().key(key).value(value).build());
    }
    if let Some(parent) = &spec.parent_snapshot_id {
        start = start.parent_snapshot_id(parent);
    }
    if let Some(key) = &spec.kms_key_arn {
        start = start.encrypted(true).kms_key_arn(key);
    }
    let started = start
        .send()
        .await
        .map_err(|e| AmiError::aws("StartSnapshot", e))?;
    let snapshot_id = started
        .snapshot_id()
        .ok_or_else(|| AmiError::Answer("StartSnapshot returned no snapshot ID".into()))?
        .to_string();
    // Our blocks are EBS's documented 512 KiB; a service that answers another size would
    // store every block at the wrong offset.
    if let Some(size) = started.block_size().filter(|&s| s as u64 != BLOCK) {
        return Err(AmiError::Answer(format!(
            "StartSnapshot answered block size {size} for {snapshot_id}; EBS writes {BLOCK}-byte \
             blocks, so nothing was sent (the snapshot expires unfinished)"
        )));
    }
    progress.note(&format!("snapshot {snapshot_id} started"));
    progress.start(&snapshot_id, Some(plan.bytes()));

    let next = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..spec.workers.clamp(1, 64).min(plan.blocks.len().max(1)) {
        let (client, image, plan, next, sent) = (
            client.clone(),
            image.clone(),
            plan.clone(),
            next.clone(),
            sent.clone(),
        );
        let snapshot_id = snapshot_id.clone();
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(block) = plan.blocks.get(i) else {
                    return Ok::<(), AmiError>(());
                };
                let data = read_block(&image, plan.image_size, block.index)?;
                let digest: [u8; 32] = Sha256::digest(&data).into();
                if digest != block.sha256 {
                    return Err(AmiError::Changed(block.index));
                }
                client
                    .put_snapshot_block()
                    .snapshot_id(&snapshot_id)
                    .block_index(block.index as i32)
                    .data_length(BLOCK as i32)
                    .checksum(base64::engine::general_purpose::STANDARD.encode(digest))
                    .checksum_algorithm(ChecksumAlgorithm::ChecksumAlgorithmSha256)
                    .progress(((i + 1) * 100 / plan.blocks.len()) as i32)
                    .block_data(ByteStream::from(data))
                    .send()
                    .await
                    .map_err(|e| AmiError::aws("PutSnapshotBlock", e))?;
                sent.fetch_add(BLOCK, Ordering::Relaxed);
            }
        });
    }
    let mut failure = None;
    let mut reported = 0;
    let mut report = || {
        let now = sent.load(Ordering::Relaxed);
        progress.advance(now - reported);
        reported = now;
    };
    // Workers end only when the blocks run out, so progress is read on a clock too.
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    loop {
        let joined = tokio::select! {
            joined = workers.join_next() => joined,
            _ = tick.tick() => {
                report();
                continue;
            }
        };
        report();
        let Some(joined) = joined else { break };
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                // No new blocks start; the others finish the one they are sending.
                next.store(plan.blocks.len(), Ordering::Relaxed);
                failure.get_or_insert(e);
            }
            Err(e) => {
                failure.get_or_insert(AmiError::Answer(format!("an upload worker failed: {e}")));
            }
        }
    }
    progress.finish();
    if let Some(e) = failure {
        return Err(e);
    }
    let aggregate_checksum = plan.aggregate_checksum();
    let completed = client
        .complete_snapshot()
        .snapshot_id(&snapshot_id)
        .changed_blocks_count(plan.blocks.len() as i32)
        .checksum(&aggregate_checksum)
        .checksum_algorithm(ChecksumAlgorithm::ChecksumAlgorithmSha256)
        .checksum_aggregation_method(ChecksumAggregationMethod::ChecksumAggregationLinear)
        .send()
        .await
        .map_err(|e| AmiError::aws("CompleteSnapshot", e))?;
    Ok(UploadedSnapshot {
        snapshot_id,
        parent_snapshot_id: spec.parent_snapshot_id.clone(),
        volume_size_gib: plan.volume_size_gib,
        changed_blocks: plan.blocks.len() as u64,
        bytes_sent: plan.bytes(),
        aggregate_checksum,
        status: completed
            .status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
    })
}

/// The same upload asked twice (a retried StartSnapshot) must not make two snapshots.
fn client_token(plan: &UploadPlan, spec: &SnapshotSpec) -> String {
    let digest = Sha256::new()
        .chain_update(plan.aggregate_checksum())
        .chain_update(spec.parent_snapshot_id.as_deref().unwrap_or(""))
        .chain_update(&spec.description)
        .finalize();
    crate::cache::hex(&digest[..16])
}

fn read_block(image: &File, size: u64, index: u64) -> Result<Vec<u8>, AmiError> {
    let mut data = vec![0u8; BLOCK as usize];
    super::plan::read_block(image, size, index, &mut data).map_err(AmiError::Read)?;
    Ok(data)
}
