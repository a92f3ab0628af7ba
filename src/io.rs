//! Small streaming adapters.

use std::io::{self, Read};
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

/// SHA-512 on its own thread, fed whole buffers that come back for reuse, so a download can
/// receive and write on one core while the other hashes, without allocating per chunk.
pub struct Sha512Pipe {
    to_hasher: Option<SyncSender<Vec<u8>>>,
    free: Receiver<Vec<u8>>,
    spare: usize,
    chunk: usize,
    worker: Option<std::thread::JoinHandle<sha2::Sha512>>,
}

impl Sha512Pipe {
    /// `depth` buffers of `chunk` bytes circulate.
    pub fn spawn(chunk: usize, depth: usize) -> Self {
        use sha2::Digest;
        let (to_hasher, incoming) = sync_channel::<Vec<u8>>(depth);
        let (give_back, free) = sync_channel::<Vec<u8>>(depth + 1);
        let worker = std::thread::spawn(move || {
            let mut sha = sha2::Sha512::new();
            for buffer in incoming {
                sha.update(&buffer);
                let _ = give_back.try_send(buffer);
            }
            sha
        });
        Sha512Pipe {
            to_hasher: Some(to_hasher),
            free,
            spare: depth + 1,
            chunk,
            worker: Some(worker),
        }
    }

    /// An empty buffer of the chunk size to fill: a returned one, or a new one while fewer
    /// than the pipe's depth exist.
    pub fn buffer(&mut self) -> Vec<u8> {
        let mut buffer = match self.free.try_recv() {
            Ok(buffer) => buffer,
            Err(_) if self.spare > 0 => {
                self.spare -= 1;
                Vec::with_capacity(self.chunk)
            }
            Err(_) => self
                .free
                .recv()
                .unwrap_or_else(|_| Vec::with_capacity(self.chunk)),
        };
        buffer.clear();
        buffer.resize(self.chunk, 0);
        buffer
    }

    /// Hashes `buffer` (already truncated to its filled length) after what came before.
    pub fn submit(&mut self, buffer: Vec<u8>) {
        if let Some(sender) = &self.to_hasher {
            let _ = sender.send(buffer);
        }
    }

    /// Waits for the hasher and returns its state over everything submitted.
    pub fn finish(mut self) -> sha2::Sha512 {
        drop(self.to_hasher.take());
        self.worker
            .take()
            .expect("joined once")
            .join()
            .expect("the hasher does not panic")
    }
}

/// A `Write` that hashes what passes through it (BLAKE3) and counts it, for outputs written
/// front to back whose digest should cost no second read.
pub struct Blake3Writer<W> {
    inner: W,
    hasher: blake3::Hasher,
    len: u64,
}

impl<W: io::Write> Blake3Writer<W> {
    pub fn new(inner: W) -> Self {
        Blake3Writer {
            inner,
            hasher: blake3::Hasher::new(),
            len: 0,
        }
    }

    /// The inner writer, the digest and the byte count.
    pub fn finish(self) -> (W, blake3::Hash, u64) {
        (self.inner, self.hasher.finalize(), self.len)
    }
}

impl<W: io::Write + io::Seek> Blake3Writer<W> {
    /// Moves `n` bytes on without writing them (a hole in a file), hashing them as zeros.
    pub fn skip_zeros(&mut self, n: u64) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.inner.seek(io::SeekFrom::Current(n as i64))?;
        const ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        let mut left = n;
        while left > 0 {
            let step = left.min(ZEROS.len() as u64) as usize;
            self.hasher.update(&ZEROS[..step]);
            left -= step as u64;
        }
        self.len += n;
        Ok(())
    }
}

impl<W: io::Write> io::Write for Blake3Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
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

    #[test]
    fn sha512_pipe_matches_a_direct_hash() {
        use sha2::Digest;
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut pipe = Sha512Pipe::spawn(4096, 3);
        for piece in data.chunks(3000) {
            let mut buffer = pipe.buffer();
            buffer[..piece.len()].copy_from_slice(piece);
            buffer.truncate(piece.len());
            pipe.submit(buffer);
        }
        assert_eq!(pipe.finish().finalize(), sha2::Sha512::digest(&data));
    }
}
