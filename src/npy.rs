//! Minimal NumPy `.npy` (format 1.0) writer for float32 arrays, streamed and written atomically.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Build the `.npy` header for a little-endian f32 array of `shape` (C order).
pub fn header_f32(shape: &[u64]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // magic(6) + version(2) + len(2) + dict + '\n', padded with spaces to a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat(unpadded.div_ceil(64) * 64 - unpadded));
    dict.push('\n');
    let mut out = Vec::with_capacity(10 + dict.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Write an f32 array of `shape` to `path`, pulling the data in chunks from `fill`, which is
/// called with successive output slices until `n = Π shape` values have been produced.
/// The file appears under its name only when complete.
pub fn write_f32_streamed(path: &Path, shape: &[u64], chunk: usize, mut fill: impl FnMut(usize, &mut [f32]) -> Result<()>) -> Result<()> {
    let n: u64 = shape.iter().product();
    let tmp = crate::gguf::writer::tmp_path(path);
    let io = |e: std::io::Error| Error::io(&tmp, e);
    let mut w = BufWriter::new(File::create(&tmp).map_err(io)?);
    let mut buf = vec![0f32; chunk.max(1)];
    let mut done = 0u64;
    let result = (|| {
        w.write_all(&header_f32(shape)).map_err(io)?;
        while done < n {
            let take = ((n - done) as usize).min(buf.len());
            fill(done as usize, &mut buf[..take])?;
            for v in &buf[..take] {
                w.write_all(&v.to_le_bytes()).map_err(io)?;
            }
            done += take as u64;
        }
        let f = w.into_inner().map_err(|e| io(e.into_error()))?;
        f.sync_all().map_err(io)
    })();
    match result {
        Ok(()) => crate::util::outpath::commit(&tmp, path).map_err(|e| Error::io(path, e)),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_is_64_aligned() {
        let h = super::header_f32(&[3, 5]);
        assert_eq!(h.len() % 64, 0);
        assert!(std::str::from_utf8(&h[10..]).unwrap().contains("'shape': (3, 5)"));
        assert!(std::str::from_utf8(&super::header_f32(&[7])[10..]).unwrap().contains("(7,)"));
    }
}
