//! Small streaming adapters, one to a file: each does one thing to bytes passing through
//! (hashing, counting, handing them to another thread, keeping them inside a range,
//! refusing writes), so that the code that moves data composes them instead of writing its
//! own loop.

mod chunks;
mod counting;
mod hash;
mod limited;
mod path_error;
mod read_only;
mod seek;
mod window;

pub use chunks::{ChunkReader, ChunkWriter, chunk_channel};
pub use counting::Counting;
pub use hash::{Blake3Writer, Sha256Writer, Sha512Pipe};
pub use limited::LimitedVec;
pub use path_error::{At, PathError};
pub use read_only::ReadOnly;
pub(crate) use seek::target as seek_target;
pub use window::Window;
