//! bzip2 decoded on several cores. Vendor images come as `.bz2`, and the first build of a
//! release waits on decoding it.
//!
//! A bzip2 stream is laid out as follows (bit offsets; only the header is byte-aligned):
//!
//! | bits | field |
//! |---|---|
//! | 0..32 | `BZh` and the level, `1`..=`9` (a block codes at most level × 100 000 bytes of run-length-encoded data) |
//! | then, per block: 0..48 | block magic `0x314159265359` |
//! | 48..80 | the CRC of the block's output |
//! | 80.. | the Huffman-coded block, any number of bits, up to the next magic |
//! | then: 0..48 | end magic `0x177245385090` |
//! | 48..80 | the stream CRC: for each block, `crc = crc.rotate_left(1) ^ block_crc` |
//! | 80.. | zero bits up to a byte boundary; another stream may follow |
//!
//! Blocks do not depend on each other. Each one is cut out at its magic and decoded on a
//! worker thread by our own block decoder (`bzip2_block`), which must end exactly at the
//! next magic and checks the block CRC; the outputs (data, and zero runs as lengths) are put
//! back in order. The splitter checks every stream CRC against the block CRCs it saw.
//!
//! The magics are not escaped, so a block's coded bits may contain one by chance (about
//! once in 2^47 bit positions, for two magics). That split shows as a bad block or a stream CRC mismatch,
//! and any such failure is reported as `InvalidData`: the caller then decodes the file again
//! with the sequential decoder, which also gives the exact error for a file that is corrupt.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};

use super::block::{BlockDecoder, Piece};

const BLOCK_MAGIC: u64 = 0x3141_5926_5359;
const END_MAGIC: u64 = 0x1772_4538_5090;
/// A level-9 block codes 900 000 bytes; the reference encoder's bits can exceed that a
/// little on random data. Anything much longer between two magics is left to the sequential
/// decoder.
const MAX_BLOCK_BYTES: usize = 2 << 20;
const READ_SIZE: usize = 1 << 20;
/// Worker count limit: past this, memory grows and the writer is the bottleneck anyway.
const MAX_WORKERS: usize = 8;

fn corrupt(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// The `n` (≤ 57) bits of `bytes` starting at bit `bit`, most significant first; bits past
/// the end read as zero.
fn bits_at(bytes: &[u8], bit: usize, n: u32) -> u64 {
    debug_assert!((1..=57).contains(&n));
    (window_at(bytes, bit / 8) << (bit % 8)) >> (64 - n)
}

/// The 8 bytes of `bytes` from `first`, big-endian; bytes past the end read as zero.
fn window_at(bytes: &[u8], first: usize) -> u64 {
    match bytes.get(first..first + 8) {
        Some(eight) => u64::from_be_bytes(eight.try_into().expect("8 bytes")),
        None => (0..8).fold(0, |window, i| {
            (window << 8) | u64::from(bytes.get(first + i).copied().unwrap_or(0))
        }),
    }
}

/// For each value of the byte after the one a magic starts in, the bit shifts (within the
/// first byte) at which either magic would put that value there. Most bytes allow none, so
/// one lookup rules out most positions.
const SHIFTS_BY_SECOND_BYTE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut shift = 0;
    while shift < 8 {
        // The magic placed at `shift` in a 64-bit window; its second byte is bits 8..16.
        table[(((BLOCK_MAGIC << 16) >> shift) >> 48) as usize & 0xff] |= 1 << shift;
        table[(((END_MAGIC << 16) >> shift) >> 48) as usize & 0xff] |= 1 << shift;
        shift += 1;
    }
    table
};

/// The first bit position at or after `from` where a block or end magic starts, among those
/// whose 48 bits lie inside `bytes`.
fn find_magic(bytes: &[u8], from: usize) -> Option<usize> {
    if bytes.len() < 6 {
        return None;
    }
    let last_start = bytes.len() * 8 - 48;
    let mut byte = from / 8;
    while byte * 8 <= last_start {
        let shifts = SHIFTS_BY_SECOND_BYTE[bytes[byte + 1] as usize];
        if shifts == 0 {
            byte += 1;
            continue;
        }
        for shift in (0..8).filter(|shift| shifts & (1 << shift) != 0) {
            let bit = byte * 8 + shift;
            if (from..=last_start).contains(&bit)
                && matches!(bits_at(bytes, bit, 48), BLOCK_MAGIC | END_MAGIC)
            {
                return Some(bit);
            }
        }
        byte += 1;
    }
    None
}

/// Appends bits, most significant first.
#[cfg(test)]
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte (0 = it is full or there is none).
    used: u32,
}

#[cfg(test)]
impl BitWriter {
    fn push(&mut self, value: u64, mut n: u32) {
        if self.used == 0 && n.is_multiple_of(8) {
            let bytes = value.to_be_bytes();
            self.bytes.extend_from_slice(&bytes[8 - n as usize / 8..]);
            return;
        }
        while n > 0 {
            if self.used == 0 {
                self.bytes.push(0);
            }
            let room = 8 - self.used;
            let take = room.min(n);
            let part = ((value >> (n - take)) & ((1 << take) - 1)) as u8;
            let last = self.bytes.last_mut().expect("a byte was pushed");
            *last |= part << (room - take);
            self.used = (self.used + take) % 8;
            n -= take;
        }
    }
}

/// Reads the compressed file through a buffer that keeps only what the current block needs.
struct Input<R> {
    reader: R,
    buffer: Vec<u8>,
    /// File offset of `buffer[0]`.
    base: u64,
    eof: bool,
}

impl<R: Read> Input<R> {
    /// Reads more; false at the end of the file.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        // Into the buffer's spare room: zeroing a fresh MiB first, for every read, cost more
        // than the read itself on small files.
        let n = (&mut self.reader)
            .take(READ_SIZE as u64)
            .read_to_end(&mut self.buffer)?;
        // Short of the limit only because the reader said it had no more.
        self.eof = n < READ_SIZE;
        Ok(n > 0)
    }

    /// Makes at least `bytes` bytes available; false if the file is shorter.
    fn have(&mut self, bytes: usize) -> io::Result<bool> {
        while self.buffer.len() < bytes {
            if !self.fill()? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Forgets the bytes before `byte`.
    fn drop_before(&mut self, byte: usize) {
        self.buffer.drain(..byte);
        self.base += byte as u64;
    }
}

/// A block's output: pieces, then `None` to say it is complete.
type Output = io::Result<Option<Piece>>;

/// One block to decode: its bytes (from the one its magic starts in), where its bits start
/// and end in them, and its stream's level.
struct Job {
    bytes: Vec<u8>,
    start: usize,
    end: usize,
    level: u8,
    output: SyncSender<Output>,
}

/// Decodes the bzip2 file `reader` (one or more streams) on up to `workers` threads and hands
/// the output to `emit` in order: data in pieces of at most 1 MiB, and zero runs. Errors of
/// kind `InvalidData` mean "not decodable this way".
pub fn decode<R, E>(reader: R, workers: usize, emit: E) -> io::Result<()>
where
    R: Read + Send,
    E: FnMut(Piece) -> io::Result<()>,
{
    let workers = workers.clamp(1, MAX_WORKERS);
    let (job_sender, job_receiver) = sync_channel::<Job>(workers);
    let job_receiver = Arc::new(Mutex::new(job_receiver));
    // Each block's output channel, in block order; bounded so the splitter stays close and
    // memory stays near 2 × workers × (decoder state + 2 MiB of output): 70 MiB for 8.
    let (order_sender, order_receiver) = sync_channel::<Receiver<Output>>(workers * 2);
    std::thread::scope(|scope| {
        let decoders: Vec<_> = (0..workers)
            .map(|_| {
                let jobs = job_receiver.clone();
                scope.spawn(move || decode_jobs(&jobs))
            })
            .collect();
        // Only workers hold the queue now: if they all die, the splitter's sends fail.
        drop(job_receiver);
        let splitter = scope.spawn(move || split(reader, &job_sender, &order_sender));
        let written = collect(&order_receiver, emit);
        // Unblocks the splitter if the writer stopped first.
        drop(order_receiver);
        let split = splitter.join().expect("the splitter does not panic");
        // A decoder that panicked (joined here, so the scope does not panic) is a failed
        // split: the sequential decoder gets the file.
        let panicked = decoders
            .into_iter()
            .map(|d| d.join())
            .filter(Result::is_err)
            .count();
        let decoded = match panicked {
            0 => Ok(()),
            n => Err(corrupt(format!("{n} decoder threads panicked"))),
        };
        written.and(split).and(decoded)
    })
}

fn collect(
    order: &Receiver<Receiver<Output>>,
    mut emit: impl FnMut(Piece) -> io::Result<()>,
) -> io::Result<()> {
    for block in order.iter() {
        loop {
            match block.recv() {
                Ok(Ok(None)) => break,
                Ok(piece) => emit(piece?.expect("None ends the block"))?,
                // A worker that stops without saying the block is complete has failed.
                Err(_) => return Err(corrupt("a decoder thread stopped inside a block")),
            }
        }
    }
    Ok(())
}

fn decode_jobs(jobs: &Mutex<Receiver<Job>>) {
    let mut decoder = BlockDecoder::new();
    loop {
        let next = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = next else { return };
        let output = &job.output;
        let mut send = |piece: Piece| {
            output
                .send(Ok(Some(piece)))
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the collector stopped"))
        };
        let result = decoder.decode(&job.bytes, job.start, job.end, job.level, &mut send);
        let _ = match result {
            Ok(_) => output.send(Ok(None)),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => output.send(Err(corrupt(format!("block: {e}")))),
        };
    }
}

/// Walks the streams, hands each block to the workers and its output channel to the
/// collector, and checks each stream CRC.
fn split<R: Read>(
    reader: R,
    jobs: &SyncSender<Job>,
    order: &SyncSender<Receiver<Output>>,
) -> io::Result<()> {
    let mut input = Input {
        reader,
        buffer: Vec::new(),
        base: 0,
        eof: false,
    };
    let mut streams = 0u64;
    loop {
        // A stream header, byte-aligned at the start of the buffer.
        if !input.have(1)? {
            return if streams > 0 {
                Ok(())
            } else {
                Err(corrupt("empty file"))
            };
        }
        if !input.have(4)?
            || &input.buffer[..3] != b"BZh"
            || !(b'1'..=b'9').contains(&input.buffer[3])
        {
            return Err(corrupt(format!(
                "no bzip2 stream header at byte {}",
                input.base
            )));
        }
        let level = input.buffer[3];
        let mut bit: usize = 32;
        let mut stream_crc = 0u32;
        loop {
            if !input.have((bit + 80).div_ceil(8))? {
                return Err(corrupt("the stream ends inside a block"));
            }
            let magic = bits_at(&input.buffer, bit, 48);
            if magic == END_MAGIC {
                let stored = bits_at(&input.buffer, bit + 48, 32) as u32;
                if stored != stream_crc {
                    return Err(corrupt(format!(
                        "stream CRC {stored:08x} is not that of its blocks ({stream_crc:08x})"
                    )));
                }
                input.drop_before((bit + 80).div_ceil(8));
                streams += 1;
                break;
            }
            if magic != BLOCK_MAGIC {
                return Err(corrupt(format!(
                    "no block magic at byte {}",
                    input.base + (bit / 8) as u64
                )));
            }
            let block_crc = bits_at(&input.buffer, bit + 48, 32) as u32;
            let mut search = bit + 80;
            let end = loop {
                if let Some(next) = find_magic(&input.buffer, search) {
                    break next;
                }
                if input.buffer.len() - bit / 8 > MAX_BLOCK_BYTES {
                    return Err(corrupt("a block longer than bzip2 allows"));
                }
                // Resume where a magic could still start once more bytes arrive.
                search = search.max((input.buffer.len() * 8).saturating_sub(47));
                if !input.fill()? {
                    return Err(corrupt("the stream ends inside a block"));
                }
            };
            let first = bit / 8;
            let bytes = input.buffer[first..end.div_ceil(8)].to_vec();
            let (sender, receiver) = sync_channel(2);
            if jobs
                .send(Job {
                    bytes,
                    start: bit - first * 8,
                    end: end - first * 8,
                    level: level - b'0',
                    output: sender,
                })
                .is_err()
                || order.send(receiver).is_err()
            {
                return Ok(()); // The collector stopped; it reports why.
            }
            stream_crc = stream_crc.rotate_left(1) ^ block_crc;
            input.drop_before(end / 8);
            bit = end % 8;
        }
    }
}

/// Every magic in `bytes`, by bit position (for tests of the block decoder).
#[cfg(test)]
pub(crate) fn magics(bytes: &[u8]) -> Vec<usize> {
    let mut found = Vec::new();
    let mut from = 32;
    while let Some(at) = find_magic(bytes, from) {
        found.push(at);
        from = at + 48;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    fn compress(data: &[u8], level: u32) -> Vec<u8> {
        let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::new(level));
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn decoded(file: &[u8], workers: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        decode(file, workers, |piece| {
            match piece {
                Piece::Data(d) => out.extend(d),
                Piece::Zeros(n) => out.resize(out.len() + n as usize, 0),
            }
            Ok(())
        })
        .map(|()| out)
    }

    #[test]
    fn magics_are_found_at_every_bit_offset() {
        for shift in 0..8 {
            let mut writer = BitWriter::default();
            writer.push(0, 3 + shift);
            writer.push(BLOCK_MAGIC, 48);
            writer.push(0x5, 7);
            let at = 3 + shift as usize;
            assert_eq!(find_magic(&writer.bytes, 0), Some(at), "shift {shift}");
            assert_eq!(find_magic(&writer.bytes, at), Some(at));
            assert_eq!(find_magic(&writer.bytes, at + 1), None);
            assert_eq!(bits_at(&writer.bytes, at, 48), BLOCK_MAGIC);
        }
    }

    #[test]
    fn blocks_decode_apart() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let file = compress(&data, 1);
        let out = decoded(&file, 3).unwrap();
        assert_eq!(out, data);
    }

    /// The fifth fuzz finding: a table with more codes than their lengths hold (no encoder
    /// writes one, but a byte changed in a table's lengths makes one) was refused, while
    /// bzip2 reads such a file. The splitter reads what bzip2 reads.
    #[test]
    fn an_over_full_huffman_table_is_read_as_bzip2_reads_it() {
        const FILE: [u8; 42] = [
            0x42, 0x5a, 0x68, 0x39, 0x31, 0x41, 0x59, 0x26, 0x53, 0x59, 0x76, 0x00, 0x58, 0x19,
            0x00, 0x00, 0x00, 0x81, 0x80, 0x20, 0x08, 0x84, 0x00, 0x20, 0x00, 0x21, 0x9a, 0x68,
            0x36, 0x4d, 0x0c, 0xbc, 0x5d, 0xc9, 0x14, 0xe1, 0x42, 0x41, 0xd8, 0x01, 0x60, 0x64,
        ];
        let mut child = std::process::Command::new("bzip2")
            .arg("-dc")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("bzip2 (scripts/install-test-deps installs it)");
        child.stdin.take().unwrap().write_all(&FILE).unwrap();
        let judged = child.wait_with_output().unwrap();
        assert!(judged.status.success());
        assert_eq!(judged.stdout, b"kato");
        for workers in [1, 2] {
            assert_eq!(decoded(&FILE, workers).unwrap(), judged.stdout);
        }
    }

    #[test]
    fn damage_is_invalid_data() {
        let data: Vec<u8> = (0..250_000u32)
            .map(|i| (i % 13) as u8 ^ (i >> 9) as u8)
            .collect();
        let mut file = compress(&data, 1);
        let middle = file.len() / 2;
        file[middle] ^= 0x10;
        let error = decoded(&file, 2).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        file.truncate(middle);
        assert_eq!(
            decoded(&file, 2).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        assert_eq!(
            decoded(b"", 2).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        assert_eq!(
            decoded(b"BZh9garbage", 2).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Concatenated streams of random data with runs (several blocks each at level 1)
        /// decode to what the sequential decoder gives.
        #[test]
        fn streams_decode_in_order(
            parts in prop::collection::vec(
                (prop::collection::vec((any::<u8>(), 1usize..3000), 0..400), 1u32..=9),
                1..4,
            ),
            workers in 1usize..5,
        ) {
            let mut file = Vec::new();
            let mut expected = Vec::new();
            for (runs, level) in &parts {
                let mut data = Vec::new();
                for (i, (byte, len)) in runs.iter().enumerate() {
                    if i % 3 == 0 {
                        data.extend(std::iter::repeat_n(*byte, *len));
                    } else {
                        data.extend((0..*len).map(|j| byte.wrapping_add((j * 31 % 97) as u8)));
                    }
                }
                file.extend(compress(&data, *level));
                expected.extend(data);
            }
            let mut sequential = Vec::new();
            bzip2::read::MultiBzDecoder::new(&file[..]).read_to_end(&mut sequential).unwrap();
            prop_assert_eq!(&sequential, &expected);
            prop_assert_eq!(decoded(&file, workers).unwrap(), expected);
        }
    }
}
