//! The response body for whole-file GETs: the file read in large chunks straight on the
//! runtime thread. Payload files are few and stay in the page cache after the first boot, so a
//! read is a memory copy; going through tokio's blocking pool for each chunk (what `ServeDir`
//! does) costs more than the copy itself when dozens of machines boot at once.

use std::fs::File;
use std::io::Read;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// Bytes per frame: large enough that per-frame costs vanish, small enough that 64 clients
/// stay within a few tens of MiB.
const CHUNK: u64 = 256 << 10;

/// The next `remaining` bytes of `file`, from its current position.
pub(crate) struct FileBody {
    file: File,
    remaining: u64,
}

impl FileBody {
    pub fn new(file: File, len: u64) -> Self {
        Self {
            file,
            remaining: len,
        }
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = self.remaining.min(CHUNK);
        let mut chunk = Vec::with_capacity(want as usize);
        let result = (&self.file).take(want).read_to_end(&mut chunk);
        Poll::Ready(Some(match result {
            // A file that shrank while being served must not end the response early and
            // look complete: the Content-Length promised more.
            Ok(0) => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "file shrank while being served",
            )),
            Ok(read) => {
                self.remaining -= read as u64;
                Ok(Frame::data(Bytes::from(chunk)))
            }
            Err(err) => Err(err),
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
