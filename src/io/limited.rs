//! A `Vec` that refuses to grow past a limit: the sink for decoders (xz, lzma) that write
//! through `Write` and would otherwise decode a small block into gigabytes.

use std::io::{self, Write};

pub struct LimitedVec {
    bytes: Vec<u8>,
    limit: usize,
}

impl LimitedVec {
    pub fn new(limit: usize) -> Self {
        LimitedVec {
            bytes: Vec::new(),
            limit,
        }
    }

    pub fn into_inner(self) -> Vec<u8> {
        self.bytes
    }
}

impl Write for LimitedVec {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bytes.len() + buf.len() > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("decodes to more than {} bytes", self.limit),
            ));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_up_to_the_limit_and_refuses_past_it() {
        let mut sink = LimitedVec::new(4);
        sink.write_all(b"abc").unwrap();
        assert!(sink.write_all(b"de").is_err());
        sink.write_all(b"d").unwrap();
        assert_eq!(sink.into_inner(), b"abcd");
    }
}
