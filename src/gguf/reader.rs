//! GGUF reader: memory-maps a file, parses and strictly validates the header, and hands out
//! zero-copy views of tensor bytes.
//!
//! Validation rules (ggml `gguf.cpp` plus stricter bounds): magic, version 2 or 3, every count and
//! length bounded by the bytes left in the file *before* anything is allocated, UTF-8 keys and
//! strings, unique keys and tensor names, known value and tensor types, `ne0` a multiple of the
//! block size, tensor data aligned, inside the file and not overlapping.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::util::bytes::Backing;

use super::error::{ErrorKind, GgufError};
use super::value::{Value, ValueType};
use crate::quant::GgmlType;

/// Default `general.alignment`.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Longest tensor name ggml accepts (GGML_MAX_NAME − 1).
pub const MAX_NAME_LEN: usize = 63;
/// The GGUF magic.
pub const MAGIC: [u8; 4] = *b"GGUF";

/// Description of one tensor from the tensor-info table.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions, innermost (`ne0`, contiguous) first; 1 to 4 entries.
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: GgmlType,
    /// Data offset relative to the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Dimensions padded with 1s to four (`ne[0..4]`).
    pub fn ne(&self) -> [u64; 4] {
        let mut ne = [1u64; 4];
        ne[..self.dims.len()].copy_from_slice(&self.dims);
        ne
    }
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
    /// Number of rows (`ne1·ne2·ne3`).
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }
    /// Bytes of tensor data (validated not to overflow when the file was read).
    pub fn n_bytes(&self) -> u64 {
        self.ty.row_bytes(self.dims[0]).unwrap_or(0) * self.n_rows()
    }
    /// Shape in PyTorch order (`[ne_{n-1}, …, ne0]`).
    pub fn torch_shape(&self) -> Vec<u64> {
        self.dims.iter().rev().copied().collect()
    }
}

/// A zero-copy view of one tensor: its info and its bytes in the mapped file.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    /// The tensor's description.
    pub info: &'a TensorInfo,
    /// Its raw bytes (blocks as stored).
    pub data: &'a [u8],
}

impl TensorView<'_> {
    /// Raw bytes of row `r` (rows run along ne0).
    pub fn row(&self, r: usize) -> &[u8] {
        let rb = self.info.ty.row_bytes(self.info.dims[0]).unwrap_or(0) as usize;
        &self.data[r * rb..(r + 1) * rb]
    }
}

/// The parsed and validated header of a GGUF file (everything but the tensor bytes).
#[derive(Clone, Debug)]
pub struct GgufHeader {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    meta_index: HashMap<String, usize>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    /// Data alignment (`general.alignment`, default 32).
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
    /// Absolute offset where the tensor-info table starts (the end of the metadata).
    pub tensor_info_offset: u64,
}

/// An opened, validated GGUF file: its header plus the mapped bytes.
pub struct GgufFile {
    path: PathBuf,
    backing: Backing,
    header: GgufHeader,
}

impl std::ops::Deref for GgufFile {
    type Target = GgufHeader;
    fn deref(&self) -> &GgufHeader {
        &self.header
    }
}

impl GgufHeader {
    /// Metadata value for `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// String metadata, or `None` when absent or of another type.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// Integer metadata of any integer type.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(Value::as_u64)
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    /// Tensor info by name.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.header.version)
            .field("n_kv", &self.header.metadata.len())
            .field("n_tensors", &self.header.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Memory-map and validate `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| GgufError::file(path, e.into()))?;
        // SAFETY: the map is read-only; a file changed underneath us by another process is
        // outside what any mmap-based reader can defend against (as with llama.cpp).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| GgufError::file(path, e.into()))?;
        Self::parse(path.to_path_buf(), Backing::Mmap(map))
    }

    /// Validate an in-memory file image (tests, fuzzing). `path` is used in error messages.
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self, GgufError> {
        Self::parse(path.into(), Backing::Owned(bytes))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.backing.bytes()
    }

    /// Zero-copy view of a tensor by name.
    pub fn tensor(&self, name: &str) -> Option<TensorView<'_>> {
        self.tensor_info(name).map(|info| self.view(info))
    }

    /// Zero-copy view of a tensor from this file's table.
    pub fn view<'a>(&'a self, info: &'a TensorInfo) -> TensorView<'a> {
        let start = (self.data_offset + info.offset) as usize;
        TensorView { info, data: &self.bytes()[start..start + info.n_bytes() as usize] }
    }

    fn parse(path: PathBuf, backing: Backing) -> Result<Self, GgufError> {
        let header = GgufHeader::parse(&path, backing.bytes())?;
        Ok(GgufFile { path, backing, header })
    }
}

impl GgufHeader {
    /// Parse and validate a complete file image held in `bytes` (`path` names it in errors).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, GgufError> {
        let mut c = Cursor { buf: bytes, pos: 0, path };
        let magic: [u8; 4] = c.take(4, &|| "magic".into())?.try_into().expect("4 bytes");
        if magic != MAGIC {
            return Err(c.err_at(0, ErrorKind::BadMagic(magic)));
        }
        let version = c.u32(&|| "version".into())?;
        if version & 0xFFFF == 0 && version != 0 {
            return Err(c.err_at(4, ErrorKind::BigEndian(version.swap_bytes())));
        }
        if version != 2 && version != 3 {
            return Err(c.err_at(4, ErrorKind::UnsupportedVersion(version)));
        }
        let n_tensors = c.u64(&|| "tensor count".into())?;
        let n_kv = c.u64(&|| "metadata count".into())?;
        // A key-value pair takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor info
        // at least 8 + 4 + 4 + 8.
        c.check_count(n_kv, 13, &|| "metadata".into())?;
        c.check_count(n_tensors, 24, &|| "tensor".into())?;

        let mut metadata = Vec::with_capacity(n_kv as usize);
        let mut meta_index = HashMap::with_capacity(n_kv as usize);
        for i in 0..n_kv {
            let key_at = c.pos as u64;
            let key = c.string(&|| format!("metadata key #{i}"))?;
            if key.is_empty() {
                return Err(c.err_at(key_at, ErrorKind::EmptyKey { index: i }));
            }
            let ty_id = c.u32(&|| format!("type of '{key}'"))?;
            let ty = ValueType::from_u32(ty_id).ok_or_else(|| c.err_here(ErrorKind::UnknownValueType { key: key.clone(), id: ty_id }))?;
            let value = c.value(ty, &key)?;
            if meta_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(c.err_at(key_at, ErrorKind::DuplicateKey(key)));
            }
            metadata.push((key, value));
        }

        let alignment = match meta_index.get("general.alignment").map(|&i| &metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) if a.is_power_of_two() => *a as u64,
            Some(other) => {
                return Err(GgufError::file(path, ErrorKind::BadAlignment(format!("{other:?}"))));
            }
        };

        let tensor_info_offset = c.pos as u64;
        let mut tensors = Vec::with_capacity(n_tensors as usize);
        let mut tensor_index = HashMap::with_capacity(n_tensors as usize);
        let mut info_offsets = Vec::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            let at = c.pos as u64;
            let name = c.string(&|| format!("name of tensor #{i}"))?;
            if name.is_empty() {
                return Err(c.err_at(at, ErrorKind::EmptyTensorName(i)));
            }
            if name.len() > MAX_NAME_LEN {
                return Err(c.err_at(at, ErrorKind::NameTooLong(name)));
            }
            let n_dims = c.u32(&|| format!("n_dims of '{name}'"))?;
            if n_dims == 0 || n_dims > 4 {
                return Err(c.err_here(ErrorKind::TooManyDims { name, n_dims }));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for d in 0..n_dims {
                dims.push(c.u64(&|| format!("ne[{d}] of '{name}'"))?);
            }
            let ty_at = c.pos as u64;
            let ty_id = c.u32(&|| format!("type of '{name}'"))?;
            let ty = GgmlType::from_id(ty_id).ok_or_else(|| {
                let removed = matches!(ty_id, 4 | 5 | 31..=33 | 36..=38);
                c.err_at(ty_at, ErrorKind::UnknownTensorType { name: name.clone(), id: ty_id, removed })
            })?;
            let offset = c.u64(&|| format!("data offset of '{name}'"))?;
            // Sizes: every dimension must keep the byte count inside u64 (and inside the file,
            // checked below).
            let Some(row_bytes) = ty.row_bytes(dims[0]) else {
                return Err(c.err_at(at, ErrorKind::NotBlockMultiple { name, ty, ne0: dims[0], block: ty.block_size() }));
            };
            let total = dims[1..].iter().try_fold(row_bytes, |acc, &d| acc.checked_mul(d));
            let elems = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
            if total.is_none() || elems.is_none() || elems.unwrap() > i64::MAX as u64 {
                return Err(c.err_at(at, ErrorKind::SizeOverflow { name, dims }));
            }
            if offset % alignment != 0 {
                return Err(c.err_at(at, ErrorKind::Misaligned { name, offset, alignment }));
            }
            if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                return Err(c.err_at(at, ErrorKind::DuplicateTensor(name)));
            }
            info_offsets.push(at);
            tensors.push(TensorInfo { name, dims, ty, offset });
        }

        let file_len = bytes.len() as u64;
        let mut data_offset = c.pos as u64;
        if n_tensors > 0 {
            data_offset = data_offset.div_ceil(alignment) * alignment;
        }
        // Data bounds and overlap, checked in offset order.
        let mut order: Vec<usize> = (0..tensors.len()).collect();
        order.sort_by_key(|&i| tensors[i].offset);
        let mut prev_end = 0u64;
        let mut prev: Option<usize> = None;
        for &i in &order {
            let t = &tensors[i];
            let start = data_offset.checked_add(t.offset);
            let end = start.and_then(|s| s.checked_add(t.n_bytes()));
            match (start, end) {
                (Some(s), Some(e)) if e <= file_len => {
                    if let Some(p) = prev {
                        if t.offset < prev_end {
                            return Err(GgufError::at(
                                path,
                                info_offsets[i],
                                ErrorKind::Overlap { name: t.name.clone(), other: tensors[p].name.clone() },
                            ));
                        }
                    }
                    let _ = s;
                    prev_end = t.offset + t.n_bytes();
                    prev = Some(i);
                }
                _ => {
                    return Err(GgufError::at(
                        path,
                        info_offsets[i],
                        ErrorKind::DataPastEof {
                            name: t.name.clone(),
                            start: start.unwrap_or(u64::MAX),
                            end: end.unwrap_or(u64::MAX),
                            file_len,
                        },
                    ));
                }
            }
        }

        Ok(GgufHeader { version, metadata, meta_index, tensors, tensor_index, alignment, data_offset, tensor_info_offset })
    }
}

/// Describes what is being read, formatted only when an error is reported.
type W<'a> = &'a dyn Fn() -> String;

/// Bounds-checked little-endian reader over the file image.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl Cursor<'_> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }
    fn err_at(&self, offset: u64, kind: ErrorKind) -> GgufError {
        GgufError::at(self.path, offset, kind)
    }
    fn err_here(&self, kind: ErrorKind) -> GgufError {
        self.err_at(self.pos as u64, kind)
    }
    fn take(&mut self, n: u64, what: W<'_>) -> Result<&[u8], GgufError> {
        if n > self.remaining() {
            return Err(self.err_here(ErrorKind::Truncated { what: what(), need: n, have: self.remaining() }));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }
    fn check_count(&self, count: u64, min_each: u64, what: W<'_>) -> Result<(), GgufError> {
        if count.saturating_mul(min_each) > self.remaining() {
            return Err(self.err_here(ErrorKind::CountTooLarge { what: what(), count, remaining: self.remaining() }));
        }
        Ok(())
    }
    fn arr<const N: usize>(&mut self, what: W<'_>) -> Result<[u8; N], GgufError> {
        Ok(self.take(N as u64, what)?.try_into().expect("N bytes"))
    }
    fn u32(&mut self, what: W<'_>) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }
    fn u64(&mut self, what: W<'_>) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }
    fn string(&mut self, what: W<'_>) -> Result<String, GgufError> {
        let at = self.pos as u64;
        let len = self.u64(what)?;
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| self.err_at(at, ErrorKind::InvalidUtf8 { what: what() }))
    }
    fn value(&mut self, ty: ValueType, key: &str) -> Result<Value, GgufError> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.arr::<1>(&|| key.to_string())?[0]),
            ValueType::I8 => Value::I8(self.arr::<1>(&|| key.to_string())?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.arr(&|| key.to_string())?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.arr(&|| key.to_string())?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.arr(&|| key.to_string())?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.arr(&|| key.to_string())?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.arr(&|| key.to_string())?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.arr(&|| key.to_string())?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.arr(&|| key.to_string())?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.arr(&|| key.to_string())?)),
            ValueType::Bool => Value::Bool(self.arr::<1>(&|| key.to_string())?[0] != 0),
            ValueType::String => Value::String(self.string(&|| format!("value of '{key}'"))?),
            ValueType::Array => {
                let et_id = self.u32(&|| format!("element type of '{key}'"))?;
                let et = ValueType::from_u32(et_id)
                    .ok_or_else(|| self.err_here(ErrorKind::UnknownValueType { key: key.to_string(), id: et_id }))?;
                if et == ValueType::Array {
                    return Err(self.err_here(ErrorKind::NestedArray { key: key.to_string() }));
                }
                let n = self.u64(&|| format!("length of '{key}'"))?;
                self.check_count(n, et.min_size() as u64, &|| format!("array '{key}'"))?;
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(et, key)?);
                }
                Value::Array(et, items)
            }
        })
    }
}
