//! Handing a stream from one thread to another in chunks: a reader over the chunks another
//! thread sends, and a writer that sends what is written as chunks.

use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// A `Read` over chunks sent from another thread; the end of the stream is the sender
/// going away. Lets a consumer that wants a reader (a signature check) run on its own core
/// while the producer (a download) also feeds other consumers.
pub struct ChunkReader {
    chunks: Receiver<Vec<u8>>,
    current: Vec<u8>,
    position: usize,
}

/// Bounded, so a slow consumer holds back the producer instead of buffering the file.
pub fn chunk_channel(depth: usize) -> (SyncSender<Vec<u8>>, ChunkReader) {
    let (sender, chunks) = sync_channel(depth);
    (
        sender,
        ChunkReader {
            chunks,
            current: Vec::new(),
            position: 0,
        },
    )
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.position == self.current.len() {
            match self.chunks.recv() {
                Ok(chunk) => {
                    self.current = chunk;
                    self.position = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.position);
        buf[..n].copy_from_slice(&self.current[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }
}

/// A `Write` that sends what is written to another thread in pieces of `CHUNK` bytes, each
/// made into a `T` (a decoder's piece of output, say), and passes on pieces made elsewhere
/// in order with them.
pub struct ChunkWriter<T> {
    sender: SyncSender<T>,
    buffer: Vec<u8>,
}

const CHUNK: usize = 1 << 20;

impl<T: From<Vec<u8>>> ChunkWriter<T> {
    pub fn new(sender: SyncSender<T>) -> Self {
        ChunkWriter {
            sender,
            buffer: Vec::with_capacity(CHUNK),
        }
    }

    /// Passes on a piece made elsewhere, after what is buffered, without copying it.
    pub fn send(&mut self, piece: T) -> io::Result<()> {
        self.flush()?;
        self.deliver(piece)
    }

    fn deliver(&mut self, piece: T) -> io::Result<()> {
        self.sender
            .send(piece)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the writer stopped"))
    }
}

impl<T: From<Vec<u8>>> Write for ChunkWriter<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let take = (CHUNK - self.buffer.len()).min(buf.len());
        self.buffer.extend_from_slice(&buf[..take]);
        if self.buffer.len() == CHUNK {
            self.flush()?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buffer.is_empty() {
            let full = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK));
            self.deliver(T::from(full))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_every_byte_in_order() {
        let (sender, mut reader) = chunk_channel(2);
        let producer = std::thread::spawn(move || {
            for i in 0..100u8 {
                sender.send(vec![i; i as usize]).unwrap();
            }
        });
        let mut all = Vec::new();
        reader.read_to_end(&mut all).unwrap();
        producer.join().unwrap();
        let expected: Vec<u8> = (0..100u8).flat_map(|i| vec![i; i as usize]).collect();
        assert_eq!(all, expected);
    }
}
