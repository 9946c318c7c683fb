//! Where the bytes of an opened container file live: a read-only memory map, or an owned
//! buffer (files read from elsewhere, tests). The GGUF and safetensors readers share it.

use memmap2::Mmap;

/// The bytes of an opened file.
pub enum Backing {
    /// Memory-mapped from disk (weights stay in the page cache, never copied).
    Mmap(Mmap),
    /// Held in memory.
    Owned(Vec<u8>),
}

impl Backing {
    /// All bytes of the file.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mmap(m) => m,
            Backing::Owned(v) => v,
        }
    }
}
