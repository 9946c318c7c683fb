//! Hugging Face checkpoint directories: one `model.safetensors`, or shards listed by
//! `model.safetensors.index.json` (`{"metadata": {...}, "weight_map": {tensor: shard file}}`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use super::{SafetensorsFile, TensorView};
use crate::error::{Error, Result};

/// The index of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// The weights of an unsharded checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";

/// The tensors of a checkpoint spread over one or more safetensors files.
#[derive(Debug)]
pub struct ShardedSafetensors {
    source: PathBuf,
    shards: Vec<SafetensorsFile>,
    /// Tensor name → index into `shards`.
    map: BTreeMap<String, usize>,
}

impl ShardedSafetensors {
    /// Open `path`: a directory (its [`INDEX_FILE`], else its [`SINGLE_FILE`]), an index file,
    /// or a single `.safetensors` file. Every shard is opened and validated, and every tensor
    /// of the index must be in the shard it names.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path.is_dir() {
            let index = path.join(INDEX_FILE);
            if index.exists() {
                return Self::open_index(&index);
            }
            let single = path.join(SINGLE_FILE);
            if !single.exists() {
                return Err(Error::format(path, format!("neither {INDEX_FILE} nor {SINGLE_FILE} is in this directory")));
            }
            return Self::single(single);
        }
        if path.to_string_lossy().ends_with(".json") {
            return Self::open_index(path);
        }
        Self::single(path.to_path_buf())
    }

    fn single(path: PathBuf) -> Result<Self> {
        let f = SafetensorsFile::open(&path)?;
        let map = f.tensors().iter().map(|t| (t.name.clone(), 0)).collect();
        Ok(ShardedSafetensors { source: path, shards: vec![f], map })
    }

    fn open_index(index: &Path) -> Result<Self> {
        let at = |p: String| Error::format(index, p);
        let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
        let v: Json = serde_json::from_str(&text).map_err(|e| at(format!("not valid JSON: {e}")))?;
        let wm =
            v.get("weight_map").and_then(Json::as_object).ok_or_else(|| at("no weight_map object (not a safetensors index?)".into()))?;
        let dir = index.parent().unwrap_or(Path::new(""));
        let mut shard_of: BTreeMap<&str, usize> = BTreeMap::new();
        let mut shards = Vec::new();
        let mut map = BTreeMap::new();
        for (name, file) in wm {
            let file = file.as_str().ok_or_else(|| at(format!("weight_map['{name}'] is not a file name")))?;
            let plain = !file.is_empty() && file != "." && file != ".." && !file.contains(['/', '\\']);
            if !plain {
                return Err(at(format!("weight_map['{name}'] = '{file}' is not a file name in the index's directory")));
            }
            let i = match shard_of.get(file) {
                Some(&i) => i,
                None => {
                    shards.push(SafetensorsFile::open(dir.join(file))?);
                    shard_of.insert(file, shards.len() - 1);
                    shards.len() - 1
                }
            };
            if shards[i].info(name).is_none() {
                return Err(at(format!("tensor '{name}' is mapped to {file}, which does not hold it")));
            }
            map.insert(name.clone(), i);
        }
        if map.is_empty() {
            return Err(at("the weight_map is empty".into()));
        }
        Ok(ShardedSafetensors { source: index.to_path_buf(), shards, map })
    }

    /// The index file (or the single file) this was opened from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The shards, in the order the index first names them.
    pub fn shards(&self) -> &[SafetensorsFile] {
        &self.shards
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Zero-copy view of the tensor `name`, from the shard that holds it.
    pub fn get(&self, name: &str) -> Option<TensorView<'_>> {
        self.map.get(name).and_then(|&i| self.shards[i].get(name))
    }

    /// Zero-copy view of the tensor `name`; an error naming the checkpoint when it is absent.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        self.get(name).ok_or_else(|| Error::format(&self.source, format!("no tensor named '{name}'")))
    }
}
