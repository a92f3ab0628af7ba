//! One bzip2 block decoded on its own, from its bits in the compressed file, into output
//! pieces: data, and runs of zero bytes kept as lengths. Vendor images are mostly zeros, and
//! a run the decoder never writes out costs nothing to write, scan for holes or hash.
//!
//! A block, after its 48-bit magic (bit offsets from there; every field big-endian):
//!
//! | bits | field |
//! |---|---|
//! | 48..80 | the CRC of the block's output (see `bzip2_crc`) |
//! | 80 | randomised (obsolete since bzip2 0.9.5; such blocks go to the sequential decoder) |
//! | 81..105 | `orig_ptr`: the row of the original text in the sorted rotations |
//! | 105..121 | which of 16 ranges of 16 byte values occur, then 16 bits per range present |
//! | 3 bits | number of Huffman tables, 2..=6 |
//! | 15 bits | number of selectors (which table codes each group of 50 symbols) |
//! | | each selector: a unary move-to-front index (1s ended by a 0) |
//! | | each table: a 5-bit start length, then per symbol `1x` steps (`10` +1, `11` −1) ended by `0` |
//! | | Huffman-coded symbols: RUNA/RUNB (runs of the front byte, bijective base 2), move-to-front indexes, end of block |
//!
//! The symbols give the Burrows-Wheeler transform of the run-length-encoded text (4 equal
//! bytes are followed by a count of more), which is inverted by walking the
//! transform's successor links from `orig_ptr`.

use std::io;

use super::crc;

/// Output pieces of at most this many bytes.
pub(crate) const CHUNK: usize = 1 << 20;
/// Zero runs shorter than this are written out as bytes.
const MIN_ZERO_RUN: u64 = 4096;
const MAX_GROUPS: usize = 6;
const MAX_SELECTORS: usize = 18002;
const MAX_CODE_LEN: u32 = 20;
const GROUP_SIZE: usize = 50;
/// Codes up to this long are decoded by one table lookup.
const LOOKUP_BITS: u32 = 10;

fn corrupt(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// A piece of decoded output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Data(Vec<u8>),
    /// This many zero bytes.
    Zeros(u64),
}

impl From<Vec<u8>> for Piece {
    fn from(bytes: Vec<u8>) -> Self {
        Piece::Data(bytes)
    }
}

/// Reads bits most significant first from `bytes[start/8..]`, up to bit `end`.
struct Bits<'a> {
    bytes: &'a [u8],
    /// The next bit to load into `buffer`.
    next: usize,
    end: usize,
    /// Bits not yet consumed, at the top.
    buffer: u64,
    count: u32,
}

impl<'a> Bits<'a> {
    fn new(bytes: &'a [u8], start: usize, end: usize) -> Self {
        Bits {
            bytes,
            next: start,
            end,
            buffer: 0,
            count: 0,
        }
    }

    /// Loads bits so that at least 32 are buffered (zeros past the end, which `position`
    /// then shows as an overrun).
    #[inline]
    fn refill(&mut self) {
        while self.count <= 56 {
            let byte = self.next / 8;
            let offset = self.next % 8;
            let value = match self.bytes.get(byte) {
                Some(&b) if self.next < self.end => b << offset,
                _ => 0,
            };
            let take = 8 - offset as u32;
            self.buffer |= u64::from(value) << (56 - self.count);
            self.count += take;
            self.next += take as usize;
        }
    }

    #[inline]
    fn peek(&mut self, n: u32) -> u32 {
        if self.count < n {
            self.refill();
        }
        (self.buffer >> (64 - n)) as u32
    }

    #[inline]
    fn consume(&mut self, n: u32) {
        self.buffer <<= n;
        self.count -= n;
    }

    fn read(&mut self, n: u32) -> u32 {
        let v = self.peek(n);
        self.consume(n);
        v
    }

    /// The position of the next unread bit.
    fn position(&self) -> usize {
        self.next - self.count as usize
    }
}

/// One Huffman table: a lookup of the first `LOOKUP_BITS` bits, and canonical limits for
/// longer codes.
struct Table {
    /// `len << 9 | symbol`, or 0 for a code longer than `LOOKUP_BITS` (or none).
    lookup: Vec<u16>,
    /// For each length, the last code of that length + 1 (left-aligned to the length), the
    /// first code and the index of its symbol in `symbols`.
    limit: [u32; MAX_CODE_LEN as usize + 1],
    first: [u32; MAX_CODE_LEN as usize + 1],
    offset: [u32; MAX_CODE_LEN as usize + 1],
    symbols: Vec<u16>,
    min_len: u32,
}

impl Table {
    /// Canonical codes as bzip2 assigns them: by length, then by symbol.
    fn new(lengths: &[u8]) -> Table {
        let mut count = [0u32; MAX_CODE_LEN as usize + 1];
        for &l in lengths {
            count[l as usize] += 1;
        }
        let mut symbols = Vec::with_capacity(lengths.len());
        for len in 1..=MAX_CODE_LEN {
            for (s, &l) in lengths.iter().enumerate() {
                if u32::from(l) == len {
                    symbols.push(s as u16);
                }
            }
        }
        let mut table = Table {
            lookup: vec![0; 1 << LOOKUP_BITS],
            limit: [0; MAX_CODE_LEN as usize + 1],
            first: [0; MAX_CODE_LEN as usize + 1],
            offset: [0; MAX_CODE_LEN as usize + 1],
            symbols,
            min_len: count
                .iter()
                .enumerate()
                .skip(1)
                .find(|(_, c)| **c > 0)
                .map_or(1, |(l, _)| l as u32),
        };
        let mut code = 0u32;
        let mut index = 0u32;
        for len in 1..=MAX_CODE_LEN {
            let n = count[len as usize];
            table.first[len as usize] = code;
            table.offset[len as usize] = index;
            table.limit[len as usize] = code + n;
            for k in 0..n {
                let symbol = table.symbols[(index + k) as usize];
                let c = code + k;
                // An over-full table (more codes than `len` bits hold) is no encoder's, but
                // bzip2 accepts it: the codes that fit are read and the rest never match.
                if len <= LOOKUP_BITS && c < 1 << len {
                    let spread = LOOKUP_BITS - len;
                    let entry = ((len as u16) << 9) | symbol;
                    for fill in 0..(1u32 << spread) {
                        table.lookup[((c << spread) | fill) as usize] = entry;
                    }
                }
            }
            code = (code + n) << 1;
            index += n;
        }
        table
    }

    #[inline]
    fn decode(&self, bits: &mut Bits) -> io::Result<u16> {
        let entry = self.lookup[bits.peek(LOOKUP_BITS) as usize];
        if entry != 0 {
            bits.consume(u32::from(entry >> 9));
            return Ok(entry & 0x1ff);
        }
        let word = bits.peek(MAX_CODE_LEN);
        for len in self.min_len.max(LOOKUP_BITS + 1)..=MAX_CODE_LEN {
            let code = word >> (MAX_CODE_LEN - len);
            if code < self.limit[len as usize] && code >= self.first[len as usize] {
                bits.consume(len);
                let at = self.offset[len as usize] + code - self.first[len as usize];
                return Ok(self.symbols[at as usize]);
            }
        }
        Err(corrupt("a Huffman code that is in no table"))
    }
}

/// What a worker keeps between blocks, each the size of a level-9 block: the transform's
/// successor links, its predecessor links, and the run-length-encoded text.
pub(crate) struct BlockDecoder {
    tt: Vec<u32>,
    lf: Vec<u32>,
    text: Vec<u8>,
}

impl Default for BlockDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl BlockDecoder {
    pub fn new() -> Self {
        BlockDecoder {
            tt: Vec::new(),
            lf: Vec::new(),
            text: Vec::new(),
        }
    }

    /// Decodes the block whose magic starts at bit `start` of `bytes` and whose bits end at
    /// `end` (the next magic), in a stream of `level` (1..=9), handing its output to `emit`
    /// in order. Returns the block's CRC, checked against the one it carries.
    pub fn decode(
        &mut self,
        bytes: &[u8],
        start: usize,
        end: usize,
        level: u8,
        emit: &mut dyn FnMut(Piece) -> io::Result<()>,
    ) -> io::Result<u32> {
        let mut bits = Bits::new(bytes, start + 48, end);
        let stored_crc = bits.read(32);
        if bits.read(1) != 0 {
            return Err(corrupt(
                "a randomised block (left to the sequential decoder)",
            ));
        }
        let orig_ptr = bits.read(24) as usize;
        let alphabet = symbol_map(&mut bits)?;
        let tables = huffman_tables(&mut bits, alphabet.len() + 2)?;
        let max_block = 100_000 * usize::from(level);
        let counts = self.symbols(&mut bits, &alphabet, &tables, max_block)?;
        if bits.position() != end {
            return Err(corrupt(format!(
                "the block's bits end at {}, not at the next magic ({end})",
                bits.position()
            )));
        }
        let n = counts.iter().sum::<u32>() as usize;
        if orig_ptr >= n {
            return Err(corrupt("the block's start row is past its end"));
        }
        let tt = &mut self.tt[..n];
        self.lf.resize(n, 0);
        predecessors(tt, &mut self.lf, &counts);
        link(tt, &counts);
        self.text.resize(n, 0);
        invert(tt, &self.lf, orig_ptr, &mut self.text);
        let register = unrle(&self.text, emit)?;
        let computed = crc::finish(register);
        if computed != stored_crc {
            return Err(corrupt(format!(
                "block CRC {computed:#010x} is not {stored_crc:#010x}"
            )));
        }
        Ok(computed)
    }

    /// Decodes the symbols into `tt` (one byte per entry, low 8 bits) and returns how many
    /// of each byte there are.
    fn symbols(
        &mut self,
        bits: &mut Bits,
        alphabet: &[u8],
        tables: &Tables,
        max_block: usize,
    ) -> io::Result<[u32; 256]> {
        if self.tt.len() < max_block {
            self.tt.resize(max_block, 0);
        }
        let tt = &mut self.tt[..max_block];
        let end_of_block = alphabet.len() as u16 + 1;
        let mut mtf: [u8; 256] = std::array::from_fn(|i| i as u8);
        let mut counts = [0u32; 256];
        let mut n = 0usize;
        let mut group = 0usize;
        let mut left = 0usize;
        let mut table = &tables.tables[0];
        let mut next_symbol = |bits: &mut Bits| -> io::Result<u16> {
            if left == 0 {
                let selector = *tables
                    .selectors
                    .get(group)
                    .ok_or_else(|| corrupt("more symbols than selectors"))?;
                table = &tables.tables[selector as usize];
                group += 1;
                left = GROUP_SIZE;
            }
            left -= 1;
            table.decode(bits)
        };
        let mut symbol = next_symbol(bits)?;
        loop {
            if symbol == end_of_block {
                break;
            }
            if symbol <= 1 {
                // A run of the front byte: RUNA adds 1×, RUNB 2× the current weight.
                let mut run = 0usize;
                let mut weight = 1usize;
                while symbol <= 1 {
                    run += weight << symbol;
                    weight <<= 1;
                    if run > max_block {
                        return Err(corrupt("a run longer than the block"));
                    }
                    symbol = next_symbol(bits)?;
                }
                let byte = alphabet[mtf[0] as usize];
                if n + run > max_block {
                    return Err(corrupt("more output than the block size allows"));
                }
                tt[n..n + run].fill(u32::from(byte));
                counts[byte as usize] += run as u32;
                n += run;
                continue;
            }
            let index = usize::from(symbol - 1);
            if index >= alphabet.len() {
                return Err(corrupt("a move-to-front index past the alphabet"));
            }
            if n >= max_block {
                return Err(corrupt("more output than the block size allows"));
            }
            let front = mtf[index];
            mtf.copy_within(0..index, 1);
            mtf[0] = front;
            let byte = alphabet[front as usize];
            tt[n] = u32::from(byte);
            counts[byte as usize] += 1;
            n += 1;
            symbol = next_symbol(bits)?;
        }
        Ok(counts)
    }
}

/// The byte values used, from the two-level bitmap.
fn symbol_map(bits: &mut Bits) -> io::Result<Vec<u8>> {
    let ranges = bits.read(16);
    let mut alphabet = Vec::with_capacity(256);
    for r in 0..16 {
        if ranges & (0x8000 >> r) != 0 {
            let used = bits.read(16);
            for b in 0..16 {
                if used & (0x8000 >> b) != 0 {
                    alphabet.push((r * 16 + b) as u8);
                }
            }
        }
    }
    if alphabet.is_empty() {
        return Err(corrupt("a block that uses no byte values"));
    }
    Ok(alphabet)
}

struct Tables {
    tables: Vec<Table>,
    selectors: Vec<u8>,
}

/// The selectors (move-to-front decoded) and the Huffman tables, for `symbols` symbols.
fn huffman_tables(bits: &mut Bits, symbols: usize) -> io::Result<Tables> {
    let groups = bits.read(3) as usize;
    if !(2..=MAX_GROUPS).contains(&groups) {
        return Err(corrupt(format!("{groups} Huffman tables (2 to 6 allowed)")));
    }
    let count = bits.read(15) as usize;
    if count == 0 {
        return Err(corrupt("no selectors"));
    }
    let mut order: Vec<u8> = (0..groups as u8).collect();
    let mut selectors = Vec::with_capacity(count.min(MAX_SELECTORS));
    for i in 0..count {
        let mut index = 0usize;
        while bits.read(1) == 1 {
            index += 1;
            if index >= groups {
                return Err(corrupt("a selector past the tables"));
            }
        }
        // As the reference decoder does, selectors past the most a block can use are read
        // and dropped.
        if i < MAX_SELECTORS {
            let table = order[index];
            order.copy_within(0..index, 1);
            order[0] = table;
            selectors.push(table);
        }
    }
    let mut tables = Vec::with_capacity(groups);
    let mut lengths = vec![0u8; symbols];
    for _ in 0..groups {
        let mut len = bits.read(5) as i32;
        for slot in lengths.iter_mut() {
            loop {
                if !(1..=MAX_CODE_LEN as i32).contains(&len) {
                    return Err(corrupt("a Huffman code length outside 1 to 20"));
                }
                if bits.read(1) == 0 {
                    break;
                }
                len += if bits.read(1) == 0 { 1 } else { -1 };
            }
            *slot = len as u8;
        }
        tables.push(Table::new(&lengths));
    }
    Ok(Tables { tables, selectors })
}

/// Turns `tt` (bytes in its low 8 bits, as the transform gives them) into the transform's
/// successor links: entry `i` gets, above its byte, where the next byte of the text is.
fn link(tt: &mut [u32], counts: &[u32; 256]) {
    let mut next = [0u32; 256];
    let mut total = 0u32;
    for (slot, &c) in next.iter_mut().zip(counts) {
        *slot = total;
        total += c;
    }
    for i in 0..tt.len() {
        let byte = (tt[i] & 0xff) as usize;
        let at = next[byte] as usize;
        tt[at] |= (i as u32) << 8;
        next[byte] += 1;
    }
}

/// Each row's predecessor link (the row of the rotation one byte earlier in the text) above
/// its byte: filled in row order, so without the scattered writes of `link`.
fn predecessors(tt: &[u32], lf: &mut [u32], counts: &[u32; 256]) {
    let mut next = [0u32; 256];
    let mut total = 0u32;
    for (slot, &c) in next.iter_mut().zip(counts) {
        *slot = total;
        total += c;
    }
    for (entry, out) in tt.iter().zip(lf.iter_mut()) {
        let byte = (entry & 0xff) as usize;
        *out = (next[byte] << 8) | byte as u32;
        next[byte] += 1;
    }
}

/// The text, from the transform. Each step of a walk waits on a load from anywhere in a
/// block-sized table, so the text is walked from both ends at once: forwards from its start
/// by the successor links, backwards from its end by the predecessor links, two loads in
/// flight instead of one.
fn invert(tt: &[u32], lf: &[u32], orig_ptr: usize, text: &mut [u8]) {
    let n = tt.len();
    let front = n - n / 2;
    let mut forward = (tt[orig_ptr] >> 8) as usize;
    let mut backward = orig_ptr;
    let (head, tail) = text.split_at_mut(front);
    for (k, slot) in tail.iter_mut().rev().enumerate() {
        let f = tt[forward];
        let b = lf[backward];
        head[k] = f as u8;
        *slot = b as u8;
        forward = (f >> 8) as usize;
        backward = (b >> 8) as usize;
    }
    if front > n / 2 {
        head[front - 1] = tt[forward] as u8;
    }
}

/// Undoes the run-length encoding of `text` (4 equal bytes, then a count of more) and hands
/// out pieces: data, and zero runs of at least `MIN_ZERO_RUN` bytes as lengths. Returns the
/// CRC register over all of it.
fn unrle(text: &[u8], emit: &mut dyn FnMut(Piece) -> io::Result<()>) -> io::Result<u32> {
    let mut out = Output::new(emit);
    let mut i = 0;
    let n = text.len();
    while i < n {
        let byte = text[i];
        // A run: up to 4 equal bytes, then (after 4) a count of more.
        let mut same = 1;
        while same < 4 && i + same < n && text[i + same] == byte {
            same += 1;
        }
        out.bytes(byte, same as u64)?;
        i += same;
        if same == 4 {
            let count = *text
                .get(i)
                .ok_or_else(|| corrupt("the block ends inside a run"))?;
            out.bytes(byte, u64::from(count))?;
            i += 1;
        }
    }
    out.finish()
}

/// Collects output into data pieces and zero runs, keeping the CRC register.
struct Output<'e> {
    emit: &'e mut dyn FnMut(Piece) -> io::Result<()>,
    data: Vec<u8>,
    /// Zeros owed after `data`.
    zeros: u64,
    register: u32,
}

impl<'e> Output<'e> {
    fn new(emit: &'e mut dyn FnMut(Piece) -> io::Result<()>) -> Self {
        Output {
            emit,
            data: Vec::with_capacity(CHUNK),
            zeros: 0,
            register: crc::INIT,
        }
    }

    /// `n` copies of `byte`.
    #[inline]
    fn bytes(&mut self, byte: u8, n: u64) -> io::Result<()> {
        if byte == 0 {
            self.zeros += n;
            return Ok(());
        }
        self.settle_zeros()?;
        for _ in 0..n {
            if self.data.len() == CHUNK {
                self.flush_data()?;
            }
            self.data.push(byte);
        }
        Ok(())
    }

    /// Zeros owed become a run of their own if long, else bytes of the data.
    fn settle_zeros(&mut self) -> io::Result<()> {
        if self.zeros == 0 {
            return Ok(());
        }
        if self.zeros >= MIN_ZERO_RUN {
            self.flush_data()?;
            self.register = crc::zeros(self.register, self.zeros);
            (self.emit)(Piece::Zeros(self.zeros))?;
        } else {
            for _ in 0..self.zeros {
                if self.data.len() == CHUNK {
                    self.flush_data()?;
                }
                self.data.push(0);
            }
        }
        self.zeros = 0;
        Ok(())
    }

    fn flush_data(&mut self) -> io::Result<()> {
        if self.data.is_empty() {
            return Ok(());
        }
        self.register = crc::update(self.register, &self.data);
        let full = std::mem::replace(&mut self.data, Vec::with_capacity(CHUNK));
        (self.emit)(Piece::Data(full))
    }

    fn finish(mut self) -> io::Result<u32> {
        self.settle_zeros()?;
        self.flush_data()?;
        Ok(self.register)
    }
}

#[cfg(test)]
mod tests_support {
    pub fn compress(data: &[u8], level: u32) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::new(level));
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }
    pub(crate) fn mixed(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let run = (x % 20_000) as usize;
            match x % 4 {
                0 => out.extend(std::iter::repeat_n(0u8, run)),
                1 => out.extend(std::iter::repeat_n((x >> 8) as u8, run % 300)),
                _ => out.extend((0..run % 3000).map(|i| b'A' + ((x >> (i % 50)) as u8 % 26))),
            }
        }
        out.truncate(len);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use super::tests_support::{compress, mixed};

    /// Decodes every block of a one-stream file (found by scanning for magics, as the
    /// splitter does) and returns the output.
    fn decode_all(file: &[u8]) -> io::Result<Vec<u8>> {
        let level = file[3] - b'0';
        let starts = super::super::blocks::magics(file);
        let mut out = Vec::new();
        let mut decoder = BlockDecoder::new();
        for pair in starts.windows(2) {
            decoder.decode(file, pair[0], pair[1], level, &mut |piece| {
                match piece {
                    Piece::Data(d) => out.extend_from_slice(&d),
                    Piece::Zeros(n) => out.resize(out.len() + n as usize, 0),
                }
                Ok(())
            })?;
        }
        Ok(out)
    }

    #[test]
    fn zero_heavy_and_text_blocks_decode_to_the_original() {
        for (seed, len, level) in [(1, 3_000_000, 1), (2, 2_500_000, 9), (3, 10, 9), (4, 0, 5)] {
            let data = mixed(seed, len);
            assert_eq!(decode_all(&compress(&data, level)).unwrap(), data, "{seed}");
        }
        let zeros = vec![0u8; 50 << 20];
        assert_eq!(decode_all(&compress(&zeros, 9)).unwrap(), zeros);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]
        #[test]
        fn random_inputs_round_trip(seed in any::<u64>(), len in 0usize..400_000, level in 1u32..=9) {
            let data = mixed(seed, len);
            prop_assert_eq!(decode_all(&compress(&data, level)).unwrap(), data);
        }

        /// Damage anywhere is an error or, at most, the reference decoder's own output: never
        /// a panic, never output the reference decoder rejects. (Through the splitter, which
        /// also checks the stream's end and CRC.)
        #[test]
        fn damaged_blocks_are_refused(seed in any::<u64>(), flips in prop::collection::vec((any::<usize>(), 0u8..8), 1..4)) {
            let data = mixed(seed, 200_000);
            let mut file = compress(&data, 1);
            for (at, bit) in flips {
                let i = 4 + at % (file.len() - 4);
                file[i] ^= 1 << bit;
            }
            let mut split = Vec::new();
            let decoded = super::super::blocks::decode(&file[..], 2, |piece| {
                match piece {
                    Piece::Data(d) => split.extend_from_slice(&d),
                    Piece::Zeros(n) => split.resize(split.len() + n as usize, 0),
                }
                Ok(())
            });
            if decoded.is_ok() {
                let out = split;
                let mut reference = Vec::new();
                let ok = std::io::Read::read_to_end(&mut bzip2::read::MultiBzDecoder::new(&file[..]), &mut reference).is_ok();
                prop_assert!(ok && reference == out, "accepted what the reference refuses");
            }
        }
    }
}
