//! GGUF writer (version 3). Offsets are the running sum of each tensor's size padded to the
//! alignment, padding is zero bytes, and every tensor (the last included) is padded — the layout
//! ggml's reader and gguf-py expect. Files are written to a temporary file beside the target and
//! renamed into place when complete (then the folder is synced), so a crash never leaves a
//! half-written file under the name; a sink dropped before [`TensorSink::finish`] (an error on
//! the way) removes its temp file.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::error::{ErrorKind, GgufError};
use super::reader::{DEFAULT_ALIGNMENT, MAGIC, MAX_NAME_LEN};
use super::value::{Value, ValueType};
use crate::quant::GgmlType;

/// A tensor declared in the header, whose bytes are supplied later in the same order.
#[derive(Clone, Debug)]
struct PlannedTensor {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    n_bytes: u64,
    offset: u64,
}

/// Collects metadata and tensor declarations, then streams the file.
#[derive(Clone, Debug, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<PlannedTensor>,
}

impl GgufWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    fn alignment(&self) -> u64 {
        match self.metadata.iter().find(|(k, _)| k == "general.alignment") {
            Some((_, Value::U32(a))) => *a as u64,
            _ => DEFAULT_ALIGNMENT,
        }
    }

    /// Set a metadata key (replacing an earlier value of the same key, keeping its position).
    pub fn set(&mut self, key: impl Into<String>, value: Value) -> &mut Self {
        let key = key.into();
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key, value)),
        }
        self
    }

    /// Remove a metadata key if present.
    pub fn remove(&mut self, key: &str) {
        self.metadata.retain(|(k, _)| k != key);
    }

    /// Declare a tensor. Its bytes must be given to [`TensorSink::write_tensor`] in declaration order.
    pub fn add_tensor(&mut self, name: &str, ty: GgmlType, dims: &[u64]) -> Result<(), ErrorKind> {
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(ErrorKind::NameTooLong(name.to_string()));
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(ErrorKind::DuplicateTensor(name.to_string()));
        }
        if dims.is_empty() || dims.len() > 4 {
            return Err(ErrorKind::TooManyDims { name: name.to_string(), n_dims: dims.len() as u32 });
        }
        let row = ty.row_bytes(dims[0]).ok_or_else(|| ErrorKind::NotBlockMultiple {
            name: name.to_string(),
            ty,
            ne0: dims[0],
            block: ty.block_size(),
        })?;
        let n_bytes = dims[1..]
            .iter()
            .try_fold(row, |a, &d| a.checked_mul(d))
            .ok_or_else(|| ErrorKind::SizeOverflow { name: name.to_string(), dims: dims.to_vec() })?;
        self.tensors.push(PlannedTensor {
            name: name.to_string(),
            dims: dims.to_vec(),
            ty,
            n_bytes,
            offset: 0, // laid out with padding in `create`, once the alignment is final
        });
        Ok(())
    }

    /// Write the header to a temporary file beside `path` and return a sink for tensor data.
    pub fn create(mut self, path: impl AsRef<Path>) -> Result<TensorSink, GgufError> {
        let path = path.as_ref().to_path_buf();
        let alignment = self.alignment();
        if !alignment.is_power_of_two() {
            return Err(GgufError::file(&path, ErrorKind::BadAlignment(alignment.to_string())));
        }
        let mut off = 0u64;
        for t in &mut self.tensors {
            t.offset = off;
            off += t.n_bytes.div_ceil(alignment) * alignment;
        }
        let tmp = tmp_path(&path);
        let io = |e: std::io::Error| GgufError::file(&tmp, e.into());
        let file = File::create(&tmp).map_err(io)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut header = Vec::new();
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&3u32.to_le_bytes());
        header.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut header, k);
            header.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
            put_value(&mut header, v).map_err(|e| GgufError::file(&path, e))?;
        }
        for t in &self.tensors {
            put_str(&mut header, &t.name);
            header.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                header.extend_from_slice(&d.to_le_bytes());
            }
            header.extend_from_slice(&t.ty.id().to_le_bytes());
            header.extend_from_slice(&t.offset.to_le_bytes());
        }
        if !self.tensors.is_empty() {
            let pad = (header.len() as u64).div_ceil(alignment) * alignment - header.len() as u64;
            header.resize(header.len() + pad as usize, 0);
        }
        if let Err(e) = out.write_all(&header) {
            drop(out);
            let _ = fs::remove_file(&tmp);
            return Err(io(e));
        }
        Ok(TensorSink { path, tmp, out: Some(out), tensors: self.tensors, next: 0, alignment })
    }
}

/// Receives tensor bytes in declaration order; [`TensorSink::finish`] makes the file appear.
pub struct TensorSink {
    path: PathBuf,
    tmp: PathBuf,
    /// None once finished (or failed in `finish`).
    out: Option<BufWriter<File>>,
    tensors: Vec<PlannedTensor>,
    next: usize,
    alignment: u64,
}

impl TensorSink {
    /// Name, type and dims of the tensor expected next, if any.
    pub fn expected(&self) -> Option<(&str, GgmlType, &[u64])> {
        self.tensors.get(self.next).map(|t| (t.name.as_str(), t.ty, t.dims.as_slice()))
    }

    /// Write the next tensor's bytes (exactly its declared size), then its padding.
    pub fn write_tensor(&mut self, bytes: &[u8]) -> Result<(), GgufError> {
        let Some(t) = self.tensors.get(self.next) else {
            return Err(GgufError::file(&self.path, ErrorKind::Write("more tensors written than declared".into())));
        };
        if bytes.len() as u64 != t.n_bytes {
            return Err(GgufError::file(
                &self.path,
                ErrorKind::Write(format!("tensor '{}' ({} {:?}) needs {} bytes, got {}", t.name, t.ty, t.dims, t.n_bytes, bytes.len())),
            ));
        }
        let pad = t.n_bytes.div_ceil(self.alignment) * self.alignment - t.n_bytes;
        let io = |e: std::io::Error| GgufError::file(&self.tmp, e.into());
        let out = self.out.as_mut().ok_or_else(|| GgufError::file(&self.path, ErrorKind::Write("the file is already finished".into())))?;
        out.write_all(bytes).map_err(io)?;
        out.write_all(&vec![0u8; pad as usize]).map_err(io)?;
        self.next += 1;
        Ok(())
    }

    /// Flush, sync and atomically rename the file into place, then sync its folder.
    pub fn finish(mut self) -> Result<PathBuf, GgufError> {
        if self.next != self.tensors.len() {
            let missing = self.tensors[self.next].name.clone();
            return Err(GgufError::file(&self.path, ErrorKind::Write(format!("tensor '{missing}' was declared but never written"))));
        }
        let tmp = self.tmp.clone();
        let io = |e: std::io::Error| GgufError::file(&tmp, e.into());
        let Some(out) = self.out.take() else {
            return Err(GgufError::file(&self.path, ErrorKind::Write("the file is already finished".into())));
        };
        let synced = out.into_inner().map_err(|e| e.into_error()).and_then(|f| f.sync_all());
        if let Err(e) = synced {
            let _ = fs::remove_file(&tmp);
            return Err(io(e));
        }
        crate::util::outpath::commit(&tmp, &self.path).map_err(|e| GgufError::file(&self.path, e.into()))?;
        Ok(self.path.clone())
    }
}

impl Drop for TensorSink {
    /// An unfinished file (an error on the way) leaves no temp file behind.
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// The temporary name used while writing `path` (see [`crate::util::outpath::tmp_path`]).
pub fn tmp_path(path: &Path) -> PathBuf {
    crate::util::outpath::tmp_path(path)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) -> Result<(), ErrorKind> {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => put_str(out, s),
        Value::Array(et, items) => {
            if *et == ValueType::Array {
                return Err(ErrorKind::NestedArray { key: "<array>".into() });
            }
            out.extend_from_slice(&(*et as u32).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for it in items {
                if it.value_type() != *et {
                    return Err(ErrorKind::Write(format!("array of {} holds a {}", et.name(), it.value_type().name())));
                }
                put_value(out, it)?;
            }
        }
    }
    Ok(())
}
