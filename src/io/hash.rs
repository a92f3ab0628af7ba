//! Hashing what passes through, so that a digest costs no second read: SHA-256 and BLAKE3
//! writers, and SHA-512 on a thread of its own for downloads.

use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use sha2::{Digest, Sha256};

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
    pub(crate) fn buffer(&mut self) -> Vec<u8> {
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
    pub(crate) fn submit(&mut self, buffer: Vec<u8>) {
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
/// front to back whose digest should cost no second read. It buffers 4 MiB at a time; each
/// full buffer is written, then hashed on a thread of its own while the next one fills, so
/// hashing takes no time from the writer on a second core.
pub struct Blake3Writer<W: io::Write> {
    /// Taken by `finish`.
    inner: Option<W>,
    buffer: Vec<u8>,
    to_hasher: Option<SyncSender<HashJob>>,
    free: Receiver<Vec<u8>>,
    spare: usize,
    worker: Option<std::thread::JoinHandle<blake3::Hash>>,
    len: u64,
}

enum HashJob {
    Data(Vec<u8>),
    Zeros(u64),
}

const HASH_CHUNK: usize = 4 << 20;
/// Buffers in flight: one filling, one being hashed, one queued.
const HASH_BUFFERS: usize = 3;

impl<W: io::Write> Blake3Writer<W> {
    pub fn new(inner: W) -> Self {
        let (to_hasher, jobs) = sync_channel::<HashJob>(HASH_BUFFERS);
        let (give_back, free) = sync_channel::<Vec<u8>>(HASH_BUFFERS);
        let worker = std::thread::spawn(move || {
            let mut hasher = blake3::Hasher::new();
            let zeros = vec![0u8; 64 << 10];
            for job in jobs {
                match job {
                    HashJob::Data(mut buffer) => {
                        hasher.update(&buffer);
                        buffer.clear();
                        let _ = give_back.try_send(buffer);
                    }
                    HashJob::Zeros(mut n) => {
                        while n > 0 {
                            let step = n.min(zeros.len() as u64) as usize;
                            hasher.update(&zeros[..step]);
                            n -= step as u64;
                        }
                    }
                }
            }
            hasher.finalize()
        });
        Blake3Writer {
            inner: Some(inner),
            buffer: Vec::with_capacity(HASH_CHUNK),
            to_hasher: Some(to_hasher),
            free,
            spare: HASH_BUFFERS - 1,
            worker: Some(worker),
            len: 0,
        }
    }

    fn inner_mut(&mut self) -> &mut W {
        self.inner.as_mut().expect("present until finish")
    }

    fn send(&mut self, job: HashJob) {
        // The worker only ends when the sender is dropped, in `finish`.
        let _ = self
            .to_hasher
            .as_ref()
            .expect("open until finish")
            .send(job);
    }

    /// Writes the buffer out and hands it to the hasher.
    fn pass_on(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.inner
            .as_mut()
            .expect("present until finish")
            .write_all(&self.buffer)?;
        let next = if self.spare > 0 {
            self.spare -= 1;
            Vec::with_capacity(HASH_CHUNK)
        } else {
            self.free
                .recv()
                .unwrap_or_else(|_| Vec::with_capacity(HASH_CHUNK))
        };
        let full = std::mem::replace(&mut self.buffer, next);
        self.send(HashJob::Data(full));
        Ok(())
    }

    /// The inner writer (flushed), the digest and the byte count.
    pub fn finish(mut self) -> io::Result<(W, blake3::Hash, u64)> {
        self.pass_on()?;
        self.inner_mut().flush()?;
        drop(self.to_hasher.take());
        let hash = self
            .worker
            .take()
            .expect("joined once")
            .join()
            .map_err(|_| io::Error::other("the hashing thread panicked"))?;
        let inner = self.inner.take().expect("present until finish");
        Ok((inner, hash, self.len))
    }
}

impl<W: io::Write + io::Seek> Blake3Writer<W> {
    /// Moves `n` bytes on without writing them (a hole in a file), hashing them as zeros.
    pub(crate) fn skip_zeros(&mut self, n: u64) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.pass_on()?;
        self.inner_mut().seek(io::SeekFrom::Current(n as i64))?;
        self.send(HashJob::Zeros(n));
        self.len += n;
        Ok(())
    }
}

impl<W: io::Write> io::Write for Blake3Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(HASH_CHUNK - self.buffer.len());
        self.buffer.extend_from_slice(&buf[..n]);
        self.len += n as u64;
        if self.buffer.len() == HASH_CHUNK {
            self.pass_on()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.pass_on()?;
        self.inner_mut().flush()
    }
}

impl<W: io::Write> Drop for Blake3Writer<W> {
    fn drop(&mut self) {
        drop(self.to_hasher.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// A `Write` that hashes (SHA-256) and counts what passes through to `inner`.
pub struct Sha256Writer<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Sha256Writer<W> {
    pub fn new(inner: W) -> Self {
        Sha256Writer {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// The lower-case hex SHA-256 of everything written, and its length.
    pub fn finish(self) -> (String, u64) {
        (crate::cache::hex(&self.hasher.finalize()), self.written)
    }
}

impl<W: Write> Write for Sha256Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
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
    fn the_blake3_writer_hashes_what_the_file_holds_across_buffers_and_holes() {
        use std::io::Write;
        let mut file = Blake3Writer::new(std::io::Cursor::new(Vec::new()));
        let piece: Vec<u8> = (0..3_000_001u32).map(|i| (i * 7 % 251) as u8).collect();
        file.write_all(&piece).unwrap();
        file.skip_zeros(5 << 20).unwrap();
        file.write_all(&piece[..12345]).unwrap();
        file.write_all(&piece).unwrap();
        file.write_all(&piece).unwrap();
        let (cursor, hash, len) = file.finish().unwrap();
        let bytes = cursor.into_inner();
        assert_eq!(len, bytes.len() as u64);
        assert_eq!(len, 3 * 3_000_001 + 12345 + (5 << 20));
        assert_eq!(hash, blake3::hash(&bytes));
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
