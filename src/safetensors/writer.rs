//! Building a safetensors file.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde_json::{json, Map, Value as Json};

use super::Dtype;
use crate::error::{Error, Result};
use crate::quant;

/// A safetensors file being built: metadata and tensors, written in the order added.
#[derive(Clone, Debug, Default)]
pub struct SafetensorsWriter {
    metadata: BTreeMap<String, String>,
    tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
    names: HashSet<String>,
}

impl SafetensorsWriter {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set a `__metadata__` entry.
    pub fn set_metadata(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.metadata.insert(key.into(), value.into());
    }

    /// Add a tensor from its raw little-endian bytes (`shape × dtype` bytes).
    pub fn add(&mut self, name: &str, dtype: Dtype, shape: &[usize], bytes: Vec<u8>) -> Result<()> {
        let numel = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if numel.and_then(|n| n.checked_mul(dtype.size())) != Some(bytes.len()) {
            return Err(Error::usage(format!("tensor '{name}': shape {shape:?} of {dtype} but {} bytes", bytes.len())));
        }
        self.push(name, dtype, shape, bytes)
    }

    /// Add a float tensor from f32 values, stored as `dtype` (F32, F16 or BF16).
    pub fn add_f32(&mut self, name: &str, dtype: Dtype, shape: &[usize], values: &[f32]) -> Result<()> {
        let numel: usize = shape.iter().product();
        if numel != values.len() {
            return Err(Error::usage(format!("tensor '{name}': shape {shape:?} but {} values", values.len())));
        }
        let ty = dtype.ggml().ok_or_else(|| Error::usage(format!("tensor '{name}': dtype {dtype} is not a floating-point type")))?;
        let mut raw = vec![0u8; numel * dtype.size()];
        quant::encode(ty, values, &mut raw).map_err(|e| Error::usage(format!("tensor '{name}': {e}")))?;
        self.push(name, dtype, shape, raw)
    }

    fn push(&mut self, name: &str, dtype: Dtype, shape: &[usize], bytes: Vec<u8>) -> Result<()> {
        if name.is_empty() || name == "__metadata__" {
            return Err(Error::usage(format!("'{name}' cannot be a tensor name")));
        }
        if !self.names.insert(name.to_string()) {
            return Err(Error::usage(format!("tensor '{name}' appears twice")));
        }
        self.tensors.push((name.to_string(), dtype, shape.to_vec(), bytes));
        Ok(())
    }

    /// The file's bytes: the header (`__metadata__` first, then the tensors in the order added,
    /// padded with spaces to a multiple of 8 bytes) and the data.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut header = Map::new();
        let meta: Map<String, Json> = self.metadata.iter().map(|(k, v)| (k.clone(), Json::String(v.clone()))).collect();
        header.insert("__metadata__".into(), Json::Object(meta));
        let mut begin = 0usize;
        for (name, dtype, shape, bytes) in &self.tensors {
            let end = begin + bytes.len();
            header.insert(name.clone(), json!({"dtype": dtype.name(), "shape": shape, "data_offsets": [begin, end]}));
            begin = end;
        }
        // Serializing a map of strings, numbers and arrays cannot fail.
        let mut h = serde_json::to_vec(&Json::Object(header)).unwrap_or_default();
        while h.len() % 8 != 0 {
            h.push(b' ');
        }
        let mut out = Vec::with_capacity(8 + h.len() + begin);
        out.extend_from_slice(&(h.len() as u64).to_le_bytes());
        out.extend_from_slice(&h);
        for (_, _, _, bytes) in &self.tensors {
            out.extend_from_slice(bytes);
        }
        out
    }

    /// Write the file to `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes())
    }
}

/// Write `bytes` to `path` atomically (temp file in the same folder, sync, rename, sync the
/// folder; the temp file is removed on any error).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::util::outpath::write_atomic(path, bytes).map_err(|e| match e {
        crate::error::Error::Io { source, .. } => Error::format(path, format!("cannot write: {source}")),
        other => other,
    })
}
