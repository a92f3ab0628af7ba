//! The three CRC-32C conventions btrfs uses (Castagnoli polynomial throughout):
//! checksums of blocks, superblocks and data sectors are standard CRC-32C; directory and
//! xattr name hashes run the register from 0xFFFFFFFE with no final inversion; and the
//! data back-reference hash combines two raw registers with a 31-bit shift.

/// Standard CRC-32C, as stored in the first 4 bytes of a checksum field.
pub fn checksum(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// The raw register after feeding `data` from `register`, with no inversions.
fn raw(register: u32, data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!register, data)
}

/// Key offset of DIR_ITEM and XATTR_ITEM entries.
pub(crate) fn name_hash(name: &[u8]) -> u64 {
    u64::from(raw(0xFFFF_FFFE, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_from_real_filesystems() {
        assert_eq!(checksum(b"123456789"), 0xE306_9283);
        assert_eq!(checksum(&[0u8; 4096]), 0x98F9_4189);
        assert_eq!(name_hash(b"default"), 2_378_154_706);
        assert_eq!(name_hash(b"hello.txt"), 1_096_805_209);
        assert_eq!(name_hash(b"user.test"), 103_394_969);
        assert_eq!(name_hash(b".."), 447_303_723);
    }
}
