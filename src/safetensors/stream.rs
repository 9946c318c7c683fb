//! Writing a safetensors file too large for memory: every tensor is declared first (the header
//! needs all offsets), then the data is streamed in declaration order, in pieces of any size.
//! The file is written beside its final name and renamed into place by [`SafetensorsStream::finish`];
//! an unfinished stream (an error on the way) leaves no temporary file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value as Json};

use super::Dtype;
use crate::error::{Error, Result};
use crate::util::outpath::{commit, tmp_path};

/// Declared tensors of a file to be streamed (see [`SafetensorsPlan::create`]).
#[derive(Clone, Debug, Default)]
pub struct SafetensorsPlan {
    metadata: Map<String, Json>,
    tensors: Vec<(String, Dtype, Vec<usize>, u64)>,
}

impl SafetensorsPlan {
    /// No tensors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set a `__metadata__` entry.
    pub fn set_metadata(&mut self, key: &str, value: &str) {
        self.metadata.insert(key.into(), Json::String(value.into()));
    }

    /// Declare the next tensor.
    pub fn add(&mut self, name: &str, dtype: Dtype, shape: &[usize]) -> Result<()> {
        if name.is_empty() || name == "__metadata__" || self.tensors.iter().any(|t| t.0 == name) {
            return Err(Error::usage(format!("'{name}' cannot be a tensor name here (empty, reserved or repeated)")));
        }
        let n = shape.iter().try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64));
        let n = n.ok_or_else(|| Error::usage(format!("tensor '{name}': shape {shape:?} overflows")))?;
        self.tensors.push((name.into(), dtype, shape.to_vec(), n));
        Ok(())
    }

    /// Bytes of data in all declared tensors.
    pub fn data_len(&self) -> u64 {
        self.tensors.iter().map(|t| t.3).sum()
    }

    /// Write the header to a temporary file beside `path`; the data follows through the stream.
    pub fn create(self, path: &Path) -> Result<SafetensorsStream> {
        let mut header = Map::new();
        header.insert("__metadata__".into(), Json::Object(self.metadata));
        let mut begin = 0u64;
        for (name, dtype, shape, n) in &self.tensors {
            header.insert(name.clone(), json!({"dtype": dtype.name(), "shape": shape, "data_offsets": [begin, begin + n]}));
            begin += n;
        }
        let mut h = serde_json::to_vec(&Json::Object(header)).map_err(|e| Error::format(path, e.to_string()))?;
        while h.len() % 8 != 0 {
            h.push(b' ');
        }
        let tmp = tmp_path(path);
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut s = SafetensorsStream {
            path: path.to_path_buf(),
            tmp,
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            sizes: self.tensors.iter().map(|t| (t.0.clone(), t.3)).collect(),
            next: 0,
            written: 0,
        };
        s.raw(&(h.len() as u64).to_le_bytes())?;
        s.raw(&h)?;
        s.skip_empty();
        Ok(s)
    }
}

/// Receives the data of a [`SafetensorsPlan`] in order.
pub struct SafetensorsStream {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
    sizes: Vec<(String, u64)>,
    /// Tensor being written.
    next: usize,
    /// Bytes of it written so far.
    written: u64,
}

impl SafetensorsStream {
    fn raw(&mut self, bytes: &[u8]) -> Result<()> {
        let out = self.out.as_mut().ok_or_else(|| Error::format(&self.path, "the file is already finished"))?;
        out.write_all(bytes).map_err(|e| Error::io(&self.tmp, e))
    }

    fn skip_empty(&mut self) {
        while self.sizes.get(self.next).is_some_and(|t| t.1 == self.written) {
            self.next += 1;
            self.written = 0;
        }
    }

    /// The tensor whose bytes come next, if any.
    pub fn expected(&self) -> Option<&str> {
        self.sizes.get(self.next).map(|t| t.0.as_str())
    }

    /// Append `bytes` to the current tensor; a piece may not run past its end.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let Some((name, size)) = self.sizes.get(self.next).cloned() else {
            return Err(Error::format(&self.path, "more data written than the declared tensors hold"));
        };
        if self.written + bytes.len() as u64 > size {
            return Err(Error::format(&self.path, format!("tensor '{name}' holds {size} bytes; {} more given", bytes.len())));
        }
        self.raw(bytes)?;
        self.written += bytes.len() as u64;
        self.skip_empty();
        Ok(())
    }

    /// Flush, sync and rename the file into place (syncing its folder); every tensor must be
    /// complete.
    pub fn finish(mut self) -> Result<PathBuf> {
        if let Some(name) = self.expected() {
            return Err(Error::format(&self.path, format!("tensor '{name}' was declared but not completely written")));
        }
        let out = self.out.take().ok_or_else(|| Error::format(&self.path, "the file is already finished"))?;
        let synced = out.into_inner().map_err(|e| e.into_error()).and_then(|f| f.sync_all());
        if let Err(e) = synced {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(Error::io(&self.tmp, e));
        }
        commit(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        Ok(self.path.clone())
    }
}

impl Drop for SafetensorsStream {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safetensors::{SafetensorsFile, SafetensorsWriter};

    #[test]
    fn streamed_file_equals_the_in_memory_writer() {
        let dir = std::env::temp_dir().join(format!("st-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a: Vec<u8> = (0..24u8).collect();
        let b: Vec<u8> = (100..116u8).collect();
        let mut w = SafetensorsWriter::new();
        w.set_metadata("format", "pt");
        w.add("a", Dtype::I32, &[2, 3], a.clone()).unwrap();
        w.add("e", Dtype::F16, &[0], vec![]).unwrap();
        w.add("b", Dtype::F16, &[8], b.clone()).unwrap();
        let mut p = SafetensorsPlan::new();
        p.set_metadata("format", "pt");
        p.add("a", Dtype::I32, &[2, 3]).unwrap();
        p.add("e", Dtype::F16, &[0]).unwrap();
        p.add("b", Dtype::F16, &[8]).unwrap();
        assert_eq!(p.data_len(), 40);
        let path = dir.join("m.safetensors");
        let mut s = p.clone().create(&path).unwrap();
        assert!(!path.exists(), "visible before finish");
        s.write(&a[..5]).unwrap();
        s.write(&a[5..]).unwrap();
        assert_eq!(s.expected(), Some("b"));
        assert!(s.write(&[0; 17]).is_err(), "a piece past the tensor's end");
        s.write(&b).unwrap();
        assert!(s.write(&[0]).is_err(), "data past the last tensor");
        s.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), w.to_bytes());
        let f = SafetensorsFile::open(&path).unwrap();
        assert_eq!(f.get("b").unwrap().data, &b[..]);
        // An unfinished stream leaves nothing behind and does not touch the existing file.
        let mut s = p.create(&path).unwrap();
        s.write(&a).unwrap();
        let e = s.finish().unwrap_err().to_string();
        assert!(e.contains("'b'") && e.contains("m.safetensors"), "{e}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        assert_eq!(std::fs::read(&path).unwrap(), w.to_bytes());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
