//! A read-only handle on a file: positional reads (so that several can share one `File`), a
//! position of its own, and writes refused, for code that wants `Write` too (fatfs) but
//! must not change the file.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

pub struct ReadOnly<'a> {
    file: &'a File,
    position: u64,
}

impl<'a> ReadOnly<'a> {
    pub fn new(file: &'a File) -> Self {
        ReadOnly { file, position: 0 }
    }
}

impl Read for ReadOnly<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.position)?;
        self.position += n as u64;
        Ok(n)
    }
}

impl Seek for ReadOnly<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.position = super::seek_target(to, self.position, || Ok(self.file.metadata()?.len()))?;
        Ok(self.position)
    }
}

impl Write for ReadOnly<'_> {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "a read-only view is not written to",
        ))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_views_of_one_file_read_their_own_places_and_never_write() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"0123456789").unwrap();
        let (mut a, mut b) = (ReadOnly::new(&file), ReadOnly::new(&file));
        a.seek(SeekFrom::Start(2)).unwrap();
        b.seek(SeekFrom::End(-3)).unwrap();
        let (mut x, mut y) = ([0u8; 3], [0u8; 3]);
        a.read_exact(&mut x).unwrap();
        b.read_exact(&mut y).unwrap();
        assert_eq!((&x, &y), (b"234", b"789"));
        assert!(a.write(b"x").is_err());
        assert!(a.seek(SeekFrom::Current(-10)).is_err());
    }
}
