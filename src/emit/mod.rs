//! What a build emits for a role: its disk images (`raw`, with `data` for KATO-DATA and
//! `oem` for what goes into the OEM filesystem), the iPXE payload (`ipxe`, `cpio`), and AMIs
//! (`ami`).

pub mod ami;
pub mod container;
pub mod cpio;
pub mod data;
pub mod ipxe;
pub mod oem;
pub mod package;
pub mod raw;
