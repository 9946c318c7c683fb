//! Reading and validating one safetensors file.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::util::bytes::Backing;
use serde_json::Value as Json;

use super::{Dtype, MAX_HEADER};
use crate::error::{Error, Result};
use crate::quant;

/// One tensor of the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's key.
    pub name: String,
    /// Its element type.
    pub dtype: Dtype,
    /// Its shape (torch order, row-major).
    pub shape: Vec<usize>,
    /// `[begin, end)` of its bytes in the data section (after the header).
    pub data_offsets: (usize, usize),
}

impl TensorInfo {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A zero-copy view of one tensor's bytes.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    /// The file it lives in (for error messages).
    pub file: &'a Path,
    /// The tensor's key.
    pub name: &'a str,
    /// Its element type.
    pub dtype: Dtype,
    /// Its shape (torch order, row-major).
    pub shape: &'a [usize],
    /// Its raw little-endian bytes (not necessarily aligned to the element size).
    pub data: &'a [u8],
}

impl TensorView<'_> {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The values widened to f32 (F32, F16 and BF16 tensors only).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        let bad = |p: String| Error::format(self.file, format!("tensor '{}': {p}", self.name));
        let ty = self.dtype.ggml().ok_or_else(|| bad(format!("dtype {} is not a floating-point type", self.dtype)))?;
        let mut out = vec![0f32; self.numel()];
        quant::decode(ty, self.data, &mut out).map_err(|e| bad(e.to_string()))?;
        Ok(out)
    }
}

/// A memory-mapped, validated safetensors file.
pub struct SafetensorsFile {
    path: PathBuf,
    backing: Backing,
    data_start: usize,
    metadata: BTreeMap<String, String>,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
}

impl std::fmt::Debug for SafetensorsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsFile").field("path", &self.path).field("n_tensors", &self.tensors.len()).finish()
    }
}

impl SafetensorsFile {
    /// Memory-map and validate `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len < 8 {
            return Err(too_short(path, len));
        }
        // SAFETY: the map is read-only; a file changed underneath us by another process is
        // outside what any mmap-based reader can defend against (as with the GGUF reader).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Self::parse(path.to_path_buf(), Backing::Mmap(map))
    }

    /// Validate an in-memory file image. `path` is used in error messages.
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self> {
        Self::parse(path.into(), Backing::Owned(bytes))
    }

    fn parse(path: PathBuf, backing: Backing) -> Result<Self> {
        let bytes = backing.bytes();
        let at = |p: String| Error::format(&path, p);
        if bytes.len() < 8 {
            return Err(too_short(&path, bytes.len() as u64));
        }
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8]));
        if n > bytes.len() as u64 - 8 {
            return Err(at(format!("header length {n} does not fit the {}-byte file (not a safetensors file?)", bytes.len())));
        }
        if n > MAX_HEADER {
            return Err(at(format!("header length {n} is over the {MAX_HEADER}-byte limit (not a safetensors file?)")));
        }
        let data_start = 8 + n as usize;
        let text = std::str::from_utf8(&bytes[8..data_start])
            .map_err(|e| at(format!("the header is not valid UTF-8 (at header byte {})", e.valid_up_to())))?;
        let header: Json = serde_json::from_str(text).map_err(|e| at(format!("the header is not valid JSON ({e})")))?;
        let Json::Object(header) = header else {
            return Err(at("the header is not a JSON object".into()));
        };
        let data_len = bytes.len() - data_start;
        let mut metadata = BTreeMap::new();
        let mut tensors = Vec::with_capacity(header.len());
        for (name, entry) in &header {
            if name == "__metadata__" {
                let Some(m) = entry.as_object() else {
                    return Err(at("__metadata__ is not an object".into()));
                };
                for (k, v) in m {
                    let v = v.as_str().ok_or_else(|| at(format!("__metadata__ value of '{k}' is not a string")))?;
                    metadata.insert(k.clone(), v.to_string());
                }
                continue;
            }
            tensors.push(tensor_info(name, entry, data_len).map_err(|p| at(format!("tensor '{name}': {p}")))?);
        }
        // Data order; the ranges must tile the data section exactly (as the reference reader
        // requires): no overlap, no gap, nothing after the last tensor.
        tensors.sort_by_key(|t| t.data_offsets);
        let mut end = 0usize;
        let mut prev: Option<&TensorInfo> = None;
        for t in &tensors {
            let (b, e) = t.data_offsets;
            match prev {
                Some(p) if b < end => {
                    return Err(at(format!(
                        "tensor '{}': data_offsets [{b}, {e}] overlap those of tensor '{}' [{}, {}]",
                        t.name, p.name, p.data_offsets.0, p.data_offsets.1
                    )))
                }
                _ if b > end => {
                    let after = prev.map_or("the header".to_string(), |p| format!("tensor '{}'", p.name));
                    return Err(at(format!("tensor '{}': data_offsets [{b}, {e}] leave bytes [{end}, {b}) after {after} unused", t.name)));
                }
                _ => {}
            }
            end = e;
            prev = Some(t);
        }
        if end != data_len {
            return Err(at(format!(
                "{} bytes after the last tensor's data (the data section is {data_len} bytes, the tensors fill {end})",
                data_len - end
            )));
        }
        let by_name = tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        Ok(SafetensorsFile { path, backing, data_start, metadata, tensors, by_name })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The string-to-string `__metadata__` map (empty when absent).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// The tensors, in the order of their data.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The header entry of `name`.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// Zero-copy view of `info`, an entry of this file's [`tensors`](Self::tensors).
    pub fn view<'a>(&'a self, info: &'a TensorInfo) -> TensorView<'a> {
        let (b, e) = info.data_offsets;
        let data = self.backing.bytes().get(self.data_start + b..self.data_start + e).unwrap_or(&[]);
        TensorView { file: &self.path, name: &info.name, dtype: info.dtype, shape: &info.shape, data }
    }

    /// Zero-copy view of the tensor `name`, if present.
    pub fn get(&self, name: &str) -> Option<TensorView<'_>> {
        self.info(name).map(|i| self.view(i))
    }

    /// Zero-copy view of the tensor `name`; an error naming the file when it is absent.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        self.get(name).ok_or_else(|| Error::format(&self.path, format!("no tensor named '{name}'")))
    }

    /// Views of every tensor, in data order.
    pub fn views(&self) -> impl Iterator<Item = TensorView<'_>> {
        self.tensors.iter().map(|t| self.view(t))
    }
}

fn too_short(path: &Path, len: u64) -> Error {
    Error::format(path, format!("{len} bytes is too short for a safetensors file"))
}

/// Parse and check one header entry against a `data_len`-byte data section.
fn tensor_info(name: &str, entry: &Json, data_len: usize) -> std::result::Result<TensorInfo, String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    let entry = entry.as_object().ok_or("the entry is not an object")?;
    let dtype_name = entry.get("dtype").and_then(Json::as_str).ok_or("no dtype")?;
    let dtype = Dtype::from_name(dtype_name).ok_or_else(|| {
        let names: Vec<&str> = Dtype::ALL.iter().map(|d| d.name()).collect();
        format!("dtype {dtype_name} is not supported ({})", names.join(", "))
    })?;
    let shape: Vec<usize> = entry
        .get("shape")
        .and_then(Json::as_array)
        .and_then(|a| a.iter().map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok())).collect())
        .ok_or("shape is not a list of sizes")?;
    let offs: Vec<u64> = entry
        .get("data_offsets")
        .and_then(Json::as_array)
        .and_then(|a| a.iter().map(Json::as_u64).collect())
        .filter(|o: &Vec<u64>| o.len() == 2)
        .ok_or("data_offsets is not [begin, end]")?;
    let (b, e) = (offs[0], offs[1]);
    if b > e {
        return Err(format!("data_offsets [{b}, {e}] end before they begin"));
    }
    if e > data_len as u64 {
        return Err(format!("data_offsets [{b}, {e}] outside the {data_len}-byte data section"));
    }
    let numel = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if numel.and_then(|n| n.checked_mul(dtype.size())) != Some((e - b) as usize) {
        return Err(format!("shape {shape:?} of {dtype_name} does not fill data_offsets [{b}, {e}]"));
    }
    Ok(TensorInfo { name: name.to_string(), dtype, shape, data_offsets: (b as usize, e as usize) })
}
