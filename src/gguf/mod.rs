//! The GGUF container: reading (memory-mapped, validated), writing (atomic), split files.

pub mod error;
pub mod reader;
pub mod split;
pub mod value;
pub mod writer;

pub use error::{ErrorKind, GgufError};
pub use reader::{GgufFile, GgufHeader, TensorInfo, TensorView, DEFAULT_ALIGNMENT};
pub use split::GgufModel;
pub use value::{Value, ValueType};
pub use writer::{GgufWriter, TensorSink};
