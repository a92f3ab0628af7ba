//! Sparse files: writing zero runs as holes, finding the data extents of a file, copying only
//! data (or sharing it, by reflink), and punching holes.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;

/// Holes are made at this granularity, the usual filesystem block size.
pub const BLOCK: usize = 4096;

/// Told, in order, what a `SparseWriter` wrote: so a digest of the stream can skip the zero
/// runs the writer already found.
pub(crate) trait Observe {
    fn data(&mut self, bytes: &[u8]);
    fn zeros(&mut self, len: u64);
}

/// Observes nothing.
impl Observe for () {
    fn data(&mut self, _: &[u8]) {}
    fn zeros(&mut self, _: u64) {}
}

impl<T: Observe> Observe for Option<T> {
    fn data(&mut self, bytes: &[u8]) {
        if let Some(inner) = self {
            inner.data(bytes);
        }
    }

    fn zeros(&mut self, len: u64) {
        if let Some(inner) = self {
            inner.zeros(len);
        }
    }
}

/// A `Write` that leaves all-zero 4 KiB blocks as holes. Writes must cover the file from
/// offset 0 in order; `finish` sets the final length (a trailing hole has no blocks).
pub(crate) struct SparseWriter<O: Observe = ()> {
    file: File,
    position: u64,
    /// Bytes of a block that is not complete yet.
    pending: Vec<u8>,
    observer: O,
}

impl<O: Observe> SparseWriter<O> {
    /// A writer that reports every data and zero run to `observer`.
    pub(crate) fn observed(file: File, observer: O) -> Self {
        SparseWriter {
            file,
            position: 0,
            pending: Vec::with_capacity(BLOCK),
            observer,
        }
    }

    fn put_blocks(&mut self, data: &[u8]) -> io::Result<()> {
        debug_assert!(data.len().is_multiple_of(BLOCK));
        // Runs of equal kind: (start block, zero?).
        let mut run: Option<(usize, bool)> = None;
        let blocks = data.len() / BLOCK;
        for i in 0..=blocks {
            let zero = (i < blocks).then(|| is_zero(&data[i * BLOCK..(i + 1) * BLOCK]));
            match (run, zero) {
                (Some((_, was)), Some(now)) if was == now => continue,
                (Some((start, was)), _) => {
                    let piece = &data[start * BLOCK..i * BLOCK];
                    if was {
                        self.observer.zeros(piece.len() as u64);
                    } else {
                        self.write_at(self.position + (start * BLOCK) as u64, piece)?;
                        self.observer.data(piece);
                    }
                }
                (None, _) => {}
            }
            run = zero.map(|z| (i, z));
        }
        self.position += data.len() as u64;
        Ok(())
    }

    /// Appends `n` zero bytes: holes, never written or scanned.
    pub(crate) fn write_zeros(&mut self, mut n: u64) -> io::Result<()> {
        const ZEROS: [u8; BLOCK] = [0; BLOCK];
        // Finish a partial block as bytes, then whole blocks are a hole.
        if !self.pending.is_empty() {
            let take = ((BLOCK - self.pending.len()) as u64).min(n) as usize;
            self.write_all(&ZEROS[..take])?;
            n -= take as u64;
        }
        let whole = n / BLOCK as u64 * BLOCK as u64;
        if whole > 0 {
            self.observer.zeros(whole);
            self.position += whole;
        }
        self.write_all(&ZEROS[..(n - whole) as usize])
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(offset))?;
        self.file.write_all(data)
    }

    /// Writes what is pending, sets the length, and returns the file and the observer.
    pub(crate) fn finish_observed(mut self) -> io::Result<(File, O)> {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            if is_zero(&pending) {
                self.observer.zeros(pending.len() as u64);
            } else {
                self.write_at(self.position, &pending)?;
                self.observer.data(&pending);
            }
            self.position += pending.len() as u64;
        }
        self.file.set_len(self.position)?;
        Ok((self.file, self.observer))
    }
}

impl<O: Observe> Write for SparseWriter<O> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let total = buf.len();
        if !self.pending.is_empty() {
            let take = (BLOCK - self.pending.len()).min(buf.len());
            self.pending.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.pending.len() == BLOCK {
                let block = std::mem::take(&mut self.pending);
                self.put_blocks(&block)?;
                self.pending = block;
                self.pending.clear();
            }
        }
        let whole = buf.len() / BLOCK * BLOCK;
        if whole > 0 {
            self.put_blocks(&buf[..whole])?;
        }
        self.pending.extend_from_slice(&buf[whole..]);
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

pub(crate) fn is_zero(data: &[u8]) -> bool {
    // Word-at-a-time: this runs over every byte of a multi-GiB image.
    let (head, words, tail) = unsafe { data.align_to::<u64>() };
    head.iter().all(|&b| b == 0) && words.iter().all(|&w| w == 0) && tail.iter().all(|&b| b == 0)
}

/// The data extents of `file` within `[start, end)`, as `(offset, length)`, from
/// SEEK_DATA/SEEK_HOLE. A filesystem without hole support reports one extent.
pub(crate) fn data_extents(file: &File, start: u64, end: u64) -> io::Result<Vec<(u64, u64)>> {
    let fd = file.as_raw_fd();
    let mut extents = Vec::new();
    let mut at = start;
    while at < end {
        // SAFETY: lseek on a valid fd with integer arguments.
        let data = unsafe { libc::lseek(fd, at as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::ENXIO) {
                break; // no data after `at`
            }
            return Err(error);
        }
        let data = data as u64;
        if data >= end {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data as libc::off_t, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        let hole = (hole as u64).min(end);
        extents.push((data, hole - data));
        at = hole;
    }
    Ok(extents)
}

/// Makes `[offset, offset + len)` of `file` a hole (reads give zeros), keeping its size.
/// Falls back to writing zeros where the filesystem cannot punch holes.
pub(crate) fn punch_hole(file: &mut File, offset: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    // SAFETY: fallocate on a valid fd with integer arguments.
    let result = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset as libc::off_t,
            len as libc::off_t,
        )
    };
    if result == 0 {
        return Ok(());
    }
    let zeros = vec![0u8; 1 << 20];
    file.seek(SeekFrom::Start(offset))?;
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// How a copy was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CopyMethod {
    /// Blocks shared with the source (FICLONE): no data copied.
    Reflink,
    /// Only the data extents copied; holes stay holes.
    DataExtents,
}

/// Copies `source` to a new file `destination` (which must not exist) without copying holes:
/// by reflink where the filesystem supports it, else data extents only.
pub(crate) fn copy_sparse(
    source: &File,
    destination: &std::path::Path,
) -> io::Result<(File, CopyMethod)> {
    let mut out = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(destination)?;
    // FICLONE = _IOW(0x94, 9, int)
    const FICLONE: libc::c_ulong = 0x4004_9409;
    // SAFETY: ioctl FICLONE takes the source fd as its argument.
    if unsafe { libc::ioctl(out.as_raw_fd(), FICLONE as _, source.as_raw_fd()) } == 0 {
        return Ok((out, CopyMethod::Reflink));
    }
    let len = source.metadata()?.len();
    out.set_len(len)?;
    for (offset, length) in data_extents(source, 0, len)? {
        copy_range(source, offset, &mut out, offset, length)?;
    }
    Ok((out, CopyMethod::DataExtents))
}

/// Copies `len` bytes, with copy_file_range where possible (the kernel may share or copy in
/// place), else through a buffer.
pub(crate) fn copy_range(
    source: &File,
    from: u64,
    destination: &mut File,
    to: u64,
    len: u64,
) -> io::Result<()> {
    let mut done = 0u64;
    while done < len {
        let mut off_in = (from + done) as libc::loff_t;
        let mut off_out = (to + done) as libc::loff_t;
        let want = (len - done).min(1 << 30) as usize;
        // SAFETY: valid fds and offsets owned by this frame.
        let n = unsafe {
            libc::copy_file_range(
                source.as_raw_fd(),
                &mut off_in,
                destination.as_raw_fd(),
                &mut off_out,
                want,
                0,
            )
        };
        if n > 0 {
            done += n as u64;
            continue;
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "source ended early",
            ));
        }
        // Not supported here (e.g. across filesystems on old kernels): plain copy.
        let mut buffer = vec![0u8; 1 << 20];
        let mut reader = source.try_clone()?;
        reader.seek(SeekFrom::Start(from + done))?;
        destination.seek(SeekFrom::Start(to + done))?;
        while done < len {
            let n = (len - done).min(buffer.len() as u64) as usize;
            reader.read_exact(&mut buffer[..n])?;
            destination.write_all(&buffer[..n])?;
            done += n as u64;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn sparse_writer_keeps_every_byte(
            runs in prop::collection::vec((any::<bool>(), 1usize..20_000), 0..12),
            write_size in 1usize..9000,
        ) {
            let mut data = Vec::new();
            for (zero, len) in runs {
                let start = data.len();
                data.extend((0..len).map(|i| if zero { 0 } else { ((start + i) % 251 + 1) as u8 }));
            }
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("out");
            let mut writer = SparseWriter::observed(File::create(&path).unwrap(), ());
            for piece in data.chunks(write_size) {
                writer.write_all(piece).unwrap();
            }
            writer.finish_observed().unwrap();
            prop_assert_eq!(std::fs::read(&path).unwrap(), data);
        }
    }

    #[test]
    fn zero_blocks_become_holes_and_copies_stay_sparse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let mut writer = SparseWriter::observed(File::create(&path).unwrap(), ());
        writer.write_all(&vec![0u8; 64 << 20]).unwrap();
        writer.write_all(&[1u8; 4096]).unwrap();
        writer.write_all(&vec![0u8; 64 << 20]).unwrap();
        let (file, ()) = writer.finish_observed().unwrap();
        let extents = data_extents(&file, 0, file.metadata().unwrap().len()).unwrap();
        assert_eq!(extents, [(64 << 20, 4096)]);
        use std::os::unix::fs::MetadataExt;
        assert!(
            file.metadata().unwrap().blocks() * 512 < 1 << 20,
            "holes take no space"
        );

        let copy_path = dir.path().join("copy");
        let (copy, _) = copy_sparse(&File::open(&path).unwrap(), &copy_path).unwrap();
        assert_eq!(
            std::fs::read(&copy_path).unwrap(),
            std::fs::read(&path).unwrap()
        );
        assert!(copy.metadata().unwrap().blocks() * 512 < 1 << 20);
    }
}
