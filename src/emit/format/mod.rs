//! The formats a finished raw disk is packaged in for a platform: `qcow2`, a fixed VHD
//! (`vhd`) and GCE's sparse tar.gz (`gce`). Each reads only the raw file's data extents and
//! writes forward, so holes cost nothing and memory does not grow with the disk.

pub mod gce;
pub mod qcow2;
pub mod vhd;
