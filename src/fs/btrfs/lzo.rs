//! LZO1X decompression, as btrfs stores LZO extents: a 4-byte total length, then segments of
//! a 4-byte length and LZO1X data that decodes to at most one 4 KiB sector; a segment header
//! never straddles a 4 KiB boundary of the compressed stream (the rest is zero padding).

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("LZO data is corrupt: {0}")]
pub struct LzoError(pub &'static str);

/// Decodes a whole btrfs LZO extent into at most `limit` bytes.
pub fn decompress_extent(data: &[u8], limit: usize) -> Result<Vec<u8>, LzoError> {
    const SECTOR: usize = 4096;
    let read32 = |at: usize| -> Result<usize, LzoError> {
        data.get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or(LzoError("truncated header"))
    };
    let total = read32(0)?.min(data.len());
    let mut at = 4;
    let mut out = Vec::with_capacity(limit);
    while at < total && out.len() < limit {
        if SECTOR - at % SECTOR < 4 {
            at += SECTOR - at % SECTOR;
            if at >= total {
                break;
            }
        }
        let length = read32(at)?;
        at += 4;
        let segment = data
            .get(at..at + length)
            .ok_or(LzoError("segment runs past the extent"))?;
        decompress_lzo1x(segment, &mut out, limit)?;
        at += length;
    }
    out.truncate(limit);
    Ok(out)
}

/// LZO1X-1 decoding of one block, appended to `out` (at most `limit` bytes in all).
pub(crate) fn decompress_lzo1x(
    input: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), LzoError> {
    let mut ip = 0usize;
    let byte = |ip: usize| input.get(ip).copied().ok_or(LzoError("input overrun"));
    let copy_literal = |out: &mut Vec<u8>, ip: &mut usize, n: usize| -> Result<(), LzoError> {
        let src = input.get(*ip..*ip + n).ok_or(LzoError("literal overrun"))?;
        if out.len() + n > limit {
            return Err(LzoError("output overrun"));
        }
        out.extend_from_slice(src);
        *ip += n;
        Ok(())
    };
    let copy_match = |out: &mut Vec<u8>, distance: usize, n: usize| -> Result<(), LzoError> {
        if distance == 0 || distance > out.len() {
            return Err(LzoError("match before the start"));
        }
        if out.len() + n > limit {
            return Err(LzoError("output overrun"));
        }
        let start = out.len() - distance;
        for i in 0..n {
            let b = out[start + i];
            out.push(b);
        }
        Ok(())
    };
    // A run of zero bytes extends a length: each zero adds 255, then the next byte.
    let extended = |ip: &mut usize, base: usize| -> Result<usize, LzoError> {
        let mut n = base;
        while byte(*ip)? == 0 {
            n += 255;
            *ip += 1;
        }
        n += byte(*ip)? as usize;
        *ip += 1;
        Ok(n)
    };
    let mut state = 0usize; // literals copied by the previous instruction (0..=4, 4 = many)
    let first = byte(ip)? as usize;
    if first > 17 {
        ip += 1;
        let n = first - 17;
        copy_literal(out, &mut ip, n)?;
        state = if n < 4 { n } else { 4 };
    }
    loop {
        let t = byte(ip)? as usize;
        ip += 1;
        let (length, distance);
        if t < 16 {
            if state == 0 {
                let n = if t == 0 { extended(&mut ip, 15)? } else { t };
                copy_literal(out, &mut ip, n + 3)?;
                state = 4;
                continue;
            }
            if state < 4 {
                distance = 1 + (t >> 2) + (byte(ip)? as usize) * 4;
                ip += 1;
                length = 2;
            } else {
                distance = 1 + 0x800 + (t >> 2) + (byte(ip)? as usize) * 4;
                ip += 1;
                length = 3;
            }
            copy_match(out, distance, length)?;
        } else {
            if t >= 64 {
                length = (t >> 5) + 1;
                distance = 1 + ((t >> 2) & 7) + (byte(ip)? as usize) * 8;
                ip += 1;
            } else if t >= 32 {
                length = (if t & 31 == 0 {
                    extended(&mut ip, 31)?
                } else {
                    t & 31
                }) + 2;
                let word = byte(ip)? as usize | (byte(ip + 1)? as usize) << 8;
                ip += 2;
                distance = 1 + (word >> 2);
                copy_match(out, distance, length)?;
                state = word & 3;
                copy_literal(out, &mut ip, state)?;
                continue;
            } else {
                length = (if t & 7 == 0 {
                    extended(&mut ip, 7)?
                } else {
                    t & 7
                }) + 2;
                let word = byte(ip)? as usize | (byte(ip + 1)? as usize) << 8;
                ip += 2;
                let far = ((t & 8) << 11) + (word >> 2);
                if far == 0 {
                    return Ok(()); // end of stream
                }
                distance = far + 0x4000;
                copy_match(out, distance, length)?;
                state = word & 3;
                copy_literal(out, &mut ip, state)?;
                continue;
            }
            copy_match(out, distance, length)?;
        }
        // The instruction's low two bits say how many literals follow.
        state = t & 3;
        copy_literal(out, &mut ip, state)?;
    }
}
