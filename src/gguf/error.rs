//! Typed errors for reading and writing GGUF files. Every error names the file and, where it
//! applies, the byte offset at which the problem was found.

use std::path::PathBuf;

use crate::quant::GgmlType;
use crate::util::text::{shown, shown_max};

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
    #[error("file truncated while reading {}: needs {need} bytes, {have} left", shown(what))]
    Truncated { what: String, need: u64, have: u64 },
    #[error("{} count {count} cannot fit in the {remaining} bytes left in the file (truncated or corrupt)", shown(what))]
    CountTooLarge { what: String, count: u64, remaining: u64 },
    #[error("unknown metadata value type {id} for key '{}'", shown(key))]
    UnknownValueType { key: String, id: u32 },
    #[error("metadata key '{}': arrays of arrays are not supported", shown(key))]
    NestedArray { key: String },
    #[error("{} is not valid UTF-8", shown(what))]
    InvalidUtf8 { what: String },
    #[error("metadata key #{index} is empty")]
    EmptyKey { index: u64 },
    #[error("duplicate metadata key '{}'", shown(.0))]
    DuplicateKey(String),
    #[error("general.alignment must be a u32 power of two, got {}", shown(.0))]
    BadAlignment(String),
    #[error("tensor name '{}' is longer than 63 bytes", shown(.0))]
    NameTooLong(String),
    #[error("tensor name is empty (tensor #{0})")]
    EmptyTensorName(u64),
    #[error("duplicate tensor name '{}'", shown(.0))]
    DuplicateTensor(String),
    #[error("tensor '{}' has {n_dims} dimensions (must be 1 to 4)", shown(name))]
    TooManyDims { name: String, n_dims: u32 },
    #[error("tensor '{}' has type id {id}, {}", shown(name), if *removed { "a type removed from ggml" } else { "which is not a known ggml type" })]
    UnknownTensorType { name: String, id: u32, removed: bool },
    #[error("tensor '{}': ne0 = {ne0} is not a multiple of the {ty} block size {block}", shown(name))]
    NotBlockMultiple { name: String, ty: GgmlType, ne0: u64, block: usize },
    #[error("tensor '{}': its size overflows ({dims:?})", shown(name))]
    SizeOverflow { name: String, dims: Vec<u64> },
    #[error("tensor '{}': data offset {offset} is not a multiple of the alignment {alignment}", shown(name))]
    Misaligned { name: String, offset: u64, alignment: u64 },
    #[error("tensor '{}': data [{start}, {end}) runs past the end of the file ({file_len} bytes)", shown(name))]
    DataPastEof { name: String, start: u64, end: u64, file_len: u64 },
    #[error("tensor '{}' overlaps tensor '{}' in the data section", shown(name), shown(other))]
    Overlap { name: String, other: String },
    #[error("split file: {}", shown_max(.0, 2000))]
    Split(String),
    #[error("writer: {0}")]
    Write(String),
    #[error("metadata key '{}': {}", shown(key), shown_max(problem, 2000))]
    Metadata { key: String, problem: String },
    #[error("no tensor named '{}'", shown(.0))]
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
