//! How long operations report progress: the library calls a `Progress`, the binary decides
//! whether that becomes a bar on a terminal or plain lines in a CI log.

pub trait Progress: Sync {
    /// A new transfer or task of `total` bytes (if known) begins.
    fn start(&self, name: &str, total: Option<u64>);
    /// `bytes` more are done.
    fn advance(&self, bytes: u64);
    /// The current task is done.
    fn finish(&self);
    /// Something the user should know (a retry, a resumed download).
    fn note(&self, message: &str);
    /// Something the user must know even when progress is off (a known problem accepted).
    fn warn(&self, message: &str) {
        self.note(message);
    }
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &str, _: Option<u64>) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
    fn note(&self, _: &str) {}
}
