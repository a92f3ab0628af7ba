//! AMIs on EC2, uploaded straight to EBS snapshots with the EBS direct APIs. What exists so
//! far is the upload plan: which 512 KiB blocks a snapshot needs, with or without a parent
//! snapshot underneath, and the checksums EBS is told.

pub mod plan;

pub use plan::{BLOCK, BlockPlan, UploadPlan, linear_checksum, plan};
