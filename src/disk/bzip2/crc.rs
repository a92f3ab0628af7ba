//! bzip2's CRC-32: the polynomial 0x04C11DB7 taken most significant bit first, over each
//! block's output, started at all ones and inverted at the end.
//!
//! Vendor images are mostly zeros, so most of a block's output is long runs of zero bytes,
//! and a byte-at-a-time CRC over them is most of the cost of decoding. Appending `n` zero
//! bytes multiplies the CRC register, as a polynomial, by `z^(8n)` modulo the CRC
//! polynomial; that power is made from `z^(8·2^k)` by squaring, so a run of any length costs
//! a few dozen carry-less multiplications. Other bytes go eight at a time through eight
//! tables.

const POLY: u32 = 0x04C1_1DB7;

/// `TABLES[0][i]` is the register after feeding byte `i` to a zero register; `TABLES[k]`
/// the same `k` bytes further on (eight at a time).
static TABLES: [[u32; 256]; 8] = tables();

const fn tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ POLY
            } else {
                crc << 1
            };
            bit += 1;
        }
        t[0][i] = crc;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev << 8) ^ t[0][(prev >> 24) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

/// The register's start value.
pub(crate) const INIT: u32 = 0xFFFF_FFFF;

/// The block CRC of a register after all its output.
pub fn finish(register: u32) -> u32 {
    !register
}

/// Feeds `data` to the register.
pub fn update(mut crc: u32, data: &[u8]) -> u32 {
    let t = &TABLES;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let hi = crc ^ u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        crc = t[7][(hi >> 24) as usize]
            ^ t[6][((hi >> 16) & 0xff) as usize]
            ^ t[5][((hi >> 8) & 0xff) as usize]
            ^ t[4][(hi & 0xff) as usize]
            ^ t[3][c[4] as usize]
            ^ t[2][c[5] as usize]
            ^ t[1][c[6] as usize]
            ^ t[0][c[7] as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc << 8) ^ t[0][((crc >> 24) as u8 ^ b) as usize];
    }
    crc
}

/// `a · b mod P` for polynomials of degree below 32 (bit 31 is `z^31`).
fn multiply(a: u32, b: u32) -> u32 {
    let mut product = 0u64;
    let mut b = b;
    let mut shift = 0;
    while b != 0 {
        if b & 1 != 0 {
            product ^= u64::from(a) << shift;
        }
        b >>= 1;
        shift += 1;
    }
    reduce(product)
}

/// A polynomial of degree below 64 modulo P.
fn reduce(value: u64) -> u32 {
    // z^32 · high is the register after feeding `high`'s four bytes to a zero register.
    let high = (value >> 32) as u32;
    let mut crc = 0u32;
    for b in high.to_be_bytes() {
        crc = (crc << 8) ^ TABLES[0][((crc >> 24) as u8 ^ b) as usize];
    }
    crc ^ value as u32
}

/// `z^(8·2^k) mod P` for `k` in 0..64.
static POWERS: [u32; 64] = powers();

const fn powers() -> [u32; 64] {
    // Computed with the same arithmetic as `multiply`, in const form.
    const fn mul(a: u32, b: u32) -> u32 {
        let mut product = 0u64;
        let mut i = 0;
        while i < 32 {
            if (b >> i) & 1 != 0 {
                product ^= (a as u64) << i;
            }
            i += 1;
        }
        let mut bit = 63;
        while bit >= 32 {
            if (product >> bit) & 1 != 0 {
                product ^= ((POLY as u64) | (1u64 << 32)) << (bit - 32);
            }
            bit -= 1;
        }
        product as u32
    }
    let mut p = [0u32; 64];
    // z^8.
    p[0] = 1 << 8;
    let mut k = 1;
    while k < 64 {
        p[k] = mul(p[k - 1], p[k - 1]);
        k += 1;
    }
    p
}

/// Feeds `n` zero bytes to the register, in time logarithmic in `n`.
pub fn zeros(crc: u32, mut n: u64) -> u32 {
    let mut factor = 1u32;
    let mut k = 0;
    while n != 0 {
        if n & 1 != 0 {
            factor = multiply(factor, POWERS[k]);
        }
        n >>= 1;
        k += 1;
    }
    multiply(crc, factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytewise(mut crc: u32, data: &[u8]) -> u32 {
        for &b in data {
            crc = (crc << 8) ^ TABLES[0][((crc >> 24) as u8 ^ b) as usize];
        }
        crc
    }

    #[test]
    fn a_known_check_value() {
        // CRC-32/BZIP2 of "123456789".
        assert_eq!(finish(update(INIT, b"123456789")), 0xFC89_1918);
    }

    proptest! {
        #[test]
        fn eight_at_a_time_equals_one_at_a_time(data in prop::collection::vec(any::<u8>(), 0..300), start in any::<u32>()) {
            prop_assert_eq!(update(start, &data), bytewise(start, &data));
        }

        #[test]
        fn a_run_of_zeros_equals_feeding_them(n in 0u64..5000, start in any::<u32>()) {
            prop_assert_eq!(zeros(start, n), bytewise(start, &vec![0u8; n as usize]));
        }
    }

    #[test]
    fn long_runs_of_zeros() {
        let megabyte = vec![0u8; 1 << 20];
        let mut by_hand = INIT;
        for _ in 0..3 {
            by_hand = update(by_hand, &megabyte);
        }
        assert_eq!(zeros(INIT, 3 << 20), by_hand);
    }
}
