//! The safetensors format (Hugging Face): an 8-byte little-endian header length, a JSON header
//! mapping each tensor name to `{"dtype", "shape", "data_offsets": [begin, end]}` (offsets into
//! the data section that follows; an optional `__metadata__` string map), then the data.
//!
//! * [`SafetensorsFile`] memory-maps one file, validates the whole header (offsets inside the
//!   file, ranges neither reversed, overlapping nor leaving gaps, `shape × dtype` equal to the
//!   byte length, a UTF-8 JSON header under [`MAX_HEADER`]) and hands out zero-copy
//!   [`TensorView`]s.
//! * [`ShardedSafetensors`] opens a sharded checkpoint directory (`model.safetensors.index.json`
//!   and its shards) and finds a tensor by name in whichever shard holds it.
//! * [`SafetensorsWriter`] builds a file (header padded with spaces to a multiple of 8 bytes,
//!   as the reference writer does) and writes it atomically; [`SafetensorsPlan`] streams one too
//!   large for memory (tensors declared first, data written in pieces).
//!
//! Every error is an [`Error::Format`](crate::Error::Format) naming the file and, where it
//! applies, the tensor.

mod reader;
mod sharded;
mod stream;
mod writer;

pub use reader::{SafetensorsFile, TensorInfo, TensorView};
pub use sharded::{ShardedSafetensors, INDEX_FILE, SINGLE_FILE};
pub use stream::{SafetensorsPlan, SafetensorsStream};
pub use writer::{write_atomic, SafetensorsWriter};

use crate::quant::GgmlType;

/// Largest header accepted (the format's own readers use 100 MB).
pub const MAX_HEADER: u64 = 100 << 20;

/// Element types of a safetensors tensor: the floats of model weights and the integers that
/// quantized checkpoints (AWQ, GPTQ, EXL2) pack their weights, zeros and permutations into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// IEEE single.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// Signed 64-bit integer.
    I64,
    /// Signed 32-bit integer.
    I32,
    /// Signed 16-bit integer.
    I16,
    /// Signed 8-bit integer.
    I8,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 8-bit integer.
    U8,
}

impl Dtype {
    /// Every supported dtype.
    pub const ALL: [Dtype; 10] =
        [Dtype::F32, Dtype::F16, Dtype::BF16, Dtype::I64, Dtype::I32, Dtype::I16, Dtype::I8, Dtype::U32, Dtype::U16, Dtype::U8];

    /// The name in a safetensors header (`F32`, `BF16`, `I32`, …).
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::I64 => "I64",
            Dtype::I32 => "I32",
            Dtype::I16 => "I16",
            Dtype::I8 => "I8",
            Dtype::U32 => "U32",
            Dtype::U16 => "U16",
            Dtype::U8 => "U8",
        }
    }

    /// The dtype of a header name, if supported.
    pub fn from_name(s: &str) -> Option<Self> {
        Dtype::ALL.into_iter().find(|d| d.name() == s)
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 | Dtype::U32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 | Dtype::U16 => 2,
            Dtype::I8 | Dtype::U8 => 1,
        }
    }

    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, Dtype::F32 | Dtype::F16 | Dtype::BF16)
    }

    /// The ggml type with the same encoding (floats only).
    pub fn ggml(self) -> Option<GgmlType> {
        match self {
            Dtype::F32 => Some(GgmlType::F32),
            Dtype::F16 => Some(GgmlType::F16),
            Dtype::BF16 => Some(GgmlType::BF16),
            _ => None,
        }
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests;
