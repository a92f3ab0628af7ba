//! A partition window: `Read + Write + Seek` over one byte range of a disk image that cannot
//! reach outside it. Filesystem code gets a window, never the whole disk.

use std::io::{self, Read, Seek, SeekFrom, Write};

pub struct Window<F> {
    inner: F,
    start: u64,
    len: u64,
    position: u64,
}

impl<F: Seek> Window<F> {
    /// The bytes `[start, start + len)` of `inner`.
    pub fn new(inner: F, start: u64, len: u64) -> Self {
        Window {
            inner,
            start,
            len,
            position: 0,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn into_inner(self) -> F {
        self.inner
    }

    fn position_inner(&mut self) -> io::Result<()> {
        self.inner
            .seek(SeekFrom::Start(self.start + self.position))
            .map(|_| ())
    }
}

impl<F: Read + Seek> Read for Window<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.position);
        let n = buf.len().min(left as usize);
        if n == 0 {
            return Ok(0);
        }
        self.position_inner()?;
        let read = self.inner.read(&mut buf[..n])?;
        self.position += read as u64;
        Ok(read)
    }
}

impl<F: Write + Seek> Write for Window<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.position);
        if !buf.is_empty() && left == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("write past the end of a {}-byte partition", self.len),
            ));
        }
        let n = buf.len().min(left as usize);
        self.position_inner()?;
        let written = self.inner.write(&buf[..n])?;
        self.position += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<F: Seek> Seek for Window<F> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        match super::seek_target(to, self.position, || Ok(self.len)) {
            Ok(n) if n <= self.len => {
                self.position = n;
                Ok(n)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("seek outside a {}-byte partition", self.len),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;

    proptest! {
        #[test]
        fn never_touches_bytes_outside(start in 0u64..64, len in 0u64..64, at in 0u64..80, data in prop::collection::vec(any::<u8>(), 0..100)) {
            let mut disk = Cursor::new(vec![0xAAu8; 200]);
            let mut window = Window::new(&mut disk, start, len);
            let mut written = 0;
            if window.seek(SeekFrom::Start(at)).is_ok() {
                while written < data.len() {
                    match window.write(&data[written..]) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => written += n,
                    }
                }
            } else {
                prop_assert!(at > len);
            }
            let bytes = disk.into_inner();
            for (i, b) in bytes.iter().enumerate() {
                let i = i as u64;
                if i < start || i >= start + len {
                    prop_assert_eq!(*b, 0xAA, "byte {} outside the window changed", i);
                }
            }
            prop_assert!(at.min(len) + written as u64 <= len);
        }
    }

    #[test]
    fn reads_stop_at_the_end() {
        let data: Vec<u8> = (0..100).collect();
        let mut window = Window::new(Cursor::new(data), 10, 5);
        let mut out = Vec::new();
        window.read_to_end(&mut out).unwrap();
        assert_eq!(out, [10, 11, 12, 13, 14]);
        assert!(window.seek(SeekFrom::End(1)).is_err());
    }
}
