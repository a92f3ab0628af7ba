//! What a build emits for a role: its disk images (`raw`, with `kato_data` for KATO-DATA and
//! `oem` for what goes into the OEM filesystem), the iPXE payload (`ipxe`, `cpio`), and AMIs
//! (`ami`).

pub mod ami;
pub mod cpio;
pub mod format;
pub mod ipxe;
pub(crate) mod kato_data;
pub mod oem;
pub mod package;
pub mod raw;
