//! bzip2, decoded block by block on every core: the block splitter (`blocks`) finds the
//! blocks of a stream and hands them to decoders (`block`), each checking its CRC (`crc`).

pub mod block;
pub mod blocks;
mod crc;
