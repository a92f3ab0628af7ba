//! Where a seek lands, for the adapters that keep a position of their own.

use std::io::{self, SeekFrom};

/// The offset `to` means from `position` in a stream of `len()` bytes (asked only for
/// `SeekFrom::End`), or an error for an offset before the start or past `u64::MAX`.
pub(crate) fn target(
    to: SeekFrom,
    position: u64,
    len: impl FnOnce() -> io::Result<u64>,
) -> io::Result<u64> {
    let target = match to {
        SeekFrom::Start(n) => Some(n),
        SeekFrom::End(d) => len()?.checked_add_signed(d),
        SeekFrom::Current(d) => position.checked_add_signed(d),
    };
    target.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lands_where_std_would_and_refuses_before_the_start() {
        let len = || Ok(100);
        assert_eq!(target(SeekFrom::Start(7), 50, len).unwrap(), 7);
        assert_eq!(target(SeekFrom::Current(-10), 50, len).unwrap(), 40);
        assert_eq!(target(SeekFrom::End(-1), 50, len).unwrap(), 99);
        assert_eq!(target(SeekFrom::End(5), 0, len).unwrap(), 105);
        assert!(target(SeekFrom::Current(-51), 50, len).is_err());
        assert!(target(SeekFrom::Current(1), u64::MAX, len).is_err());
    }
}
