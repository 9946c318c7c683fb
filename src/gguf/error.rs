//! Typed errors for reading and writing GGUF files. Every error names the file and, where it
//! applies, the byte offset at which the problem was found.

use std::path::PathBuf;

use crate::quant::GgmlType;

/// An error reading or writing a GGUF file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}{kind}", path.display(), match offset { Some(o) => format!("at byte {o}: "), None => String::new() })]
pub struct GgufError {
    /// The file concerned.
    pub path: PathBuf,
    /// Byte offset in the file where the problem was detected, when known.
    pub offset: Option<u64>,
    /// What went wrong.
    pub kind: ErrorKind,
}

/// What went wrong, without the file/offset context.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // variants are documented by their messages / names
pub enum ErrorKind {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a GGUF file (magic bytes {0:02x?}, expected \"GGUF\")")]
    BadMagic([u8; 4]),
    #[error("GGUF version {0} is big-endian; only little-endian files are supported")]
    BigEndian(u32),
    #[error("unsupported GGUF version {0} (supported: 2 and 3)")]
    UnsupportedVersion(u32),
    #[error("file truncated while reading {what}: needs {need} bytes, {have} left")]
    Truncated { what: String, need: u64, have: u64 },
    #[error("{what} count {count} cannot fit in the {remaining} bytes left in the file (truncated or corrupt)")]
    CountTooLarge { what: String, count: u64, remaining: u64 },
    #[error("unknown metadata value type {id} for key '{key}'")]
    UnknownValueType { key: String, id: u32 },
    #[error("metadata key '{key}': arrays of arrays are not supported")]
    NestedArray { key: String },
    #[error("{what} is not valid UTF-8")]
    InvalidUtf8 { what: String },
    #[error("metadata key #{index} is empty")]
    EmptyKey { index: u64 },
    #[error("duplicate metadata key '{0}'")]
    DuplicateKey(String),
    #[error("general.alignment must be a u32 power of two, got {0}")]
    BadAlignment(String),
    #[error("tensor name '{0}' is longer than 63 bytes")]
    NameTooLong(String),
    #[error("tensor name is empty (tensor #{0})")]
    EmptyTensorName(u64),
    #[error("duplicate tensor name '{0}'")]
    DuplicateTensor(String),
    #[error("tensor '{name}' has {n_dims} dimensions (must be 1 to 4)")]
    TooManyDims { name: String, n_dims: u32 },
    #[error("tensor '{name}' has type id {id}, {}", if *removed { "a type removed from ggml" } else { "which is not a known ggml type" })]
    UnknownTensorType { name: String, id: u32, removed: bool },
    #[error("tensor '{name}': ne0 = {ne0} is not a multiple of the {ty} block size {block}")]
    NotBlockMultiple { name: String, ty: GgmlType, ne0: u64, block: usize },
    #[error("tensor '{name}': its size overflows ({dims:?})")]
    SizeOverflow { name: String, dims: Vec<u64> },
    #[error("tensor '{name}': data offset {offset} is not a multiple of the alignment {alignment}")]
    Misaligned { name: String, offset: u64, alignment: u64 },
    #[error("tensor '{name}': data [{start}, {end}) runs past the end of the file ({file_len} bytes)")]
    DataPastEof { name: String, start: u64, end: u64, file_len: u64 },
    #[error("tensor '{name}' overlaps tensor '{other}' in the data section")]
    Overlap { name: String, other: String },
    #[error("split file: {0}")]
    Split(String),
    #[error("writer: {0}")]
    Write(String),
    #[error("metadata key '{key}': {problem}")]
    Metadata { key: String, problem: String },
    #[error("no tensor named '{0}'")]
    NoSuchTensor(String),
}

impl GgufError {
    /// Build an error for `path` at `offset`.
    pub fn at(path: impl Into<PathBuf>, offset: u64, kind: ErrorKind) -> Self {
        GgufError { path: path.into(), offset: Some(offset), kind }
    }
    /// Build an error for `path` without an offset.
    pub fn file(path: impl Into<PathBuf>, kind: ErrorKind) -> Self {
        GgufError { path: path.into(), offset: None, kind }
    }
}
