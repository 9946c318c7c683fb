//! Split GGUF files (`name-00001-of-00003.gguf` …): each shard is a complete GGUF with
//! `split.no`, `split.count` and `split.tensors.count`; metadata comes from the first shard and
//! tensors from all of them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::error::{ErrorKind, GgufError};
use super::reader::{GgufFile, TensorInfo, TensorView};
use super::value::Value;

/// A model made of one GGUF file or of all shards of a split file.
#[derive(Debug)]
pub struct GgufModel {
    /// The shards, in order (one entry for an unsplit file).
    pub shards: Vec<GgufFile>,
    index: HashMap<String, (usize, usize)>,
}

/// If `path` names shard k of n (`…-0000k-of-0000n.gguf`), return (prefix, k, n).
pub fn parse_split_name(path: &Path) -> Option<(String, u32, u32)> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".gguf")?;
    // "-%05d-of-%05d" is 15 characters.
    if stem.len() < 15 || !stem.is_char_boundary(stem.len() - 15) {
        return None;
    }
    let (prefix, tail) = stem.split_at(stem.len() - 15);
    let b = tail.as_bytes();
    if b[0] != b'-' || &tail[6..10] != "-of-" {
        return None;
    }
    let k: u32 = tail[1..6].parse().ok()?;
    let n: u32 = tail[10..15].parse().ok()?;
    (k >= 1 && k <= n).then(|| (prefix.to_string(), k, n))
}

/// The path of shard `k` of `n` for a split prefix (`prefix-0000k-of-0000n.gguf`).
pub fn split_path(dir: &Path, prefix: &str, k: u32, n: u32) -> PathBuf {
    dir.join(format!("{prefix}-{k:05}-of-{n:05}.gguf"))
}

impl GgufModel {
    /// Open a GGUF file; when its name is a split shard name, open every shard of the set.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref();
        let first = GgufFile::open(path)?;
        let count = first.get("split.count").and_then(Value::as_u64).unwrap_or(1);
        let mut shards = vec![first];
        if count > 1 {
            let Some((prefix, k, n)) = parse_split_name(path) else {
                return Err(GgufError::file(
                    path,
                    ErrorKind::Split(format!("split.count = {count} but the name is not '<prefix>-0000k-of-0000n.gguf'")),
                ));
            };
            if k != 1 || n as u64 != count {
                return Err(GgufError::file(
                    path,
                    ErrorKind::Split(format!("open the first shard (-00001-of-{count:05}), not shard {k} of {n}")),
                ));
            }
            let dir = path.parent().unwrap_or(Path::new("."));
            for i in 2..=n {
                let p = split_path(dir, &prefix, i, n);
                let shard = GgufFile::open(&p)?;
                let no = shard.get("split.no").and_then(Value::as_u64);
                if no != Some(i as u64 - 1) {
                    return Err(GgufError::file(&p, ErrorKind::Split(format!("split.no is {no:?}, expected {}", i - 1))));
                }
                shards.push(shard);
            }
        }
        let mut index = HashMap::new();
        for (s, shard) in shards.iter().enumerate() {
            for (t, info) in shard.tensors.iter().enumerate() {
                if index.insert(info.name.clone(), (s, t)).is_some() {
                    return Err(GgufError::file(shard.path(), ErrorKind::DuplicateTensor(info.name.clone())));
                }
            }
        }
        if let Some(total) = shards[0].get("split.tensors.count").and_then(Value::as_u64) {
            if total != index.len() as u64 {
                return Err(GgufError::file(
                    path,
                    ErrorKind::Split(format!("split.tensors.count = {total} but the shards hold {}", index.len())),
                ));
            }
        }
        Ok(GgufModel { shards, index })
    }

    /// The first shard (holds the model metadata).
    pub fn main(&self) -> &GgufFile {
        &self.shards[0]
    }

    /// Metadata value from the first shard.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.main().get(key)
    }

    /// All tensors, shard by shard, in file order.
    pub fn tensor_infos(&self) -> impl Iterator<Item = &TensorInfo> {
        self.shards.iter().flat_map(|s| s.tensors.iter())
    }

    /// Number of tensors across shards.
    pub fn n_tensors(&self) -> usize {
        self.index.len()
    }

    /// Zero-copy view of a tensor by name, from whichever shard holds it.
    pub fn tensor(&self, name: &str) -> Option<TensorView<'_>> {
        let &(s, t) = self.index.get(name)?;
        let shard = &self.shards[s];
        Some(shard.view(&shard.tensors[t]))
    }

    /// Like [`GgufModel::tensor`], but a missing tensor is an error naming the file.
    pub fn require(&self, name: &str) -> Result<TensorView<'_>, GgufError> {
        self.tensor(name).ok_or_else(|| GgufError::file(self.main().path(), ErrorKind::NoSuchTensor(name.into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_names() {
        assert_eq!(parse_split_name(Path::new("/m/qwen-7b-00002-of-00003.gguf")), Some(("qwen-7b".to_string(), 2, 3)));
        assert_eq!(parse_split_name(Path::new("model.gguf")), None);
        assert_eq!(parse_split_name(Path::new("x-00004-of-00003.gguf")), None);
        assert_eq!(split_path(Path::new("d"), "m", 1, 2), PathBuf::from("d/m-00001-of-00002.gguf"));
    }
}
