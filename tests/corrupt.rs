//! Corrupt and hostile GGUF input: truncation at every offset of the header and tensor-info
//! region of a real file, thousands of random byte flips, and hand-made files with absurd
//! counts, lengths, types and offsets. Every case must end in a clear error naming the file
//! (and, where it applies, the byte offset): no panic, no abort, no huge allocation.
mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use common::Rng;
use finetune::gguf::{ErrorKind, GgufError, GgufFile, GgufHeader, GgufWriter, Value};
use rayon::prelude::*;

fn parse(bytes: &[u8]) -> Result<GgufHeader, GgufError> {
    match catch_unwind(AssertUnwindSafe(|| GgufHeader::parse(Path::new("bad.gguf"), bytes))) {
        Ok(r) => r,
        Err(_) => panic!("reader panicked on a {}-byte input", bytes.len()),
    }
}

fn assert_clear(e: &GgufError) {
    let msg = e.to_string();
    assert!(msg.starts_with("bad.gguf: "), "error does not name the file: {msg}");
    assert!(msg.len() > 20, "error too terse: {msg}");
}

fn check_truncations(bytes: &[u8], cuts: &[usize]) {
    cuts.par_iter().for_each(|&k| {
        let e = parse(&bytes[..k]).err().unwrap_or_else(|| panic!("truncated at {k} but parsed"));
        assert_clear(&e);
        assert!(
            matches!(e.kind, ErrorKind::Truncated { .. } | ErrorKind::CountTooLarge { .. } | ErrorKind::DataPastEof { .. }),
            "cut at {k}: unexpected {e}"
        );
    });
}

/// SmolLM2 with its real metadata keys and its full real tensor table, but the tokenizer
/// arrays cut to 256 entries, so that *every* header offset can be tried quickly.
fn trimmed_smollm(dir: &Path) -> Vec<u8> {
    let src = GgufFile::open(common::smollm()).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in &src.metadata {
        let v = match v {
            Value::Array(t, items) if items.len() > 256 => Value::Array(*t, items[..256].to_vec()),
            v => v.clone(),
        };
        w.set(k.clone(), v);
    }
    for t in &src.tensors {
        w.add_tensor(&t.name, t.ty, &t.dims).unwrap();
    }
    let path = dir.join("trimmed.gguf");
    let mut sink = w.create(&path).unwrap();
    for t in &src.tensors {
        sink.write_tensor(src.view(t).data).unwrap();
    }
    sink.finish().unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn truncation_at_every_header_offset_is_a_clear_error() {
    let t0 = std::time::Instant::now();
    // 1. Every offset of the whole header (metadata + tensor-info table) of the real-derived file.
    let bytes = trimmed_smollm(&common::tmpdir("truncate"));
    let h = parse(&bytes).expect("trimmed file parses");
    let every: Vec<usize> = (0..h.data_offset as usize).collect();
    check_truncations(&bytes, &every);
    // 2. The untouched real file: every offset of its first 64 KiB, then sampled through the
    //    1.7 MB of tokenizer arrays and the tensor-info table, and into the tensor data.
    let real = std::fs::read(common::smollm()).unwrap();
    let h = parse(&real).expect("real file parses");
    let (ti, data) = (h.tensor_info_offset as usize, h.data_offset as usize);
    let mut cuts: Vec<usize> = (0..65_536).collect();
    cuts.extend((65_536..ti).step_by(997));
    cuts.extend((ti..data).step_by(31));
    cuts.extend((data..real.len()).step_by(1 << 20));
    check_truncations(&real, &cuts);
    eprintln!(
        "{} truncations of the real-derived header (every offset) and {} of the real file in {:?}",
        every.len(),
        cuts.len(),
        t0.elapsed()
    );
}

#[test]
fn random_byte_flips_never_panic() {
    let mut rng = Rng(99);
    let mut cases = 0;
    let mut errors = 0;
    for (path, n) in [(common::smollm(), 2500), (common::gemma(), 500)] {
        let mut bytes = std::fs::read(&path).unwrap();
        let h = parse(&bytes).unwrap();
        let (ti, data) = (h.tensor_info_offset as usize, h.data_offset as usize);
        for i in 0..n {
            // Half the flips hit the structure-dense parts: the first KiB and the tensor table.
            let pos = match i % 4 {
                0 => rng.below(1024) as usize,
                1 => ti + rng.below((data - ti) as u64) as usize,
                _ => rng.below(data as u64) as usize,
            };
            let width = 1 + rng.below(8) as usize;
            let end = (pos + width).min(bytes.len());
            let saved: Vec<u8> = bytes[pos..end].to_vec();
            for b in &mut bytes[pos..end] {
                *b ^= (rng.below(255) + 1) as u8;
            }
            if let Err(e) = parse(&bytes) {
                assert_clear(&e);
                errors += 1;
            }
            bytes[pos..end].copy_from_slice(&saved);
            cases += 1;
        }
    }
    eprintln!("{cases} flip cases, {errors} rejected with clear errors, {} still valid files", cases - errors);
    assert!(cases >= 2000);
}

/// A tiny hand-assembled GGUF, so fields can be set to anything.
struct Raw(Vec<u8>);

impl Raw {
    fn new(version: u32, n_tensors: u64, n_kv: u64) -> Self {
        let mut v = b"GGUF".to_vec();
        v.extend_from_slice(&version.to_le_bytes());
        v.extend_from_slice(&n_tensors.to_le_bytes());
        v.extend_from_slice(&n_kv.to_le_bytes());
        Raw(v)
    }
    fn u32(mut self, x: u32) -> Self {
        self.0.extend_from_slice(&x.to_le_bytes());
        self
    }
    fn u64(mut self, x: u64) -> Self {
        self.0.extend_from_slice(&x.to_le_bytes());
        self
    }
    fn bytes(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    fn str(self, s: &str) -> Self {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }
    fn kv_u32(self, k: &str, v: u32) -> Self {
        self.str(k).u32(4).u32(v)
    }
    /// One tensor info: name, dims, type id, offset.
    fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Self {
        let mut r = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            r = r.u64(d);
        }
        r.u32(ty).u64(offset)
    }
    fn pad_and_data(mut self, data_len: usize) -> Self {
        while self.0.len() % 32 != 0 {
            self.0.push(0);
        }
        self.0.resize(self.0.len() + data_len, 0);
        self
    }
}

fn expect(bytes: Vec<u8>, check: impl Fn(&ErrorKind) -> bool, what: &str) {
    match parse(&bytes) {
        Ok(_) => panic!("{what}: parsed"),
        Err(e) => {
            assert_clear(&e);
            assert!(check(&e.kind), "{what}: got {e}");
            eprintln!("{what}: {e}");
        }
    }
}

#[test]
fn hostile_headers_give_specific_errors() {
    let ok = Raw::new(3, 1, 1).kv_u32("a.b", 1).tensor("w", &[32, 2], 0, 0).pad_and_data(256);
    parse(&ok.0).expect("baseline file is valid");

    expect(b"GGML\x03\0\0\0".to_vec(), |k| matches!(k, ErrorKind::BadMagic(_)), "bad magic");
    expect(Raw::new(1, 0, 0).0, |k| matches!(k, ErrorKind::UnsupportedVersion(1)), "version 1");
    expect(Raw::new(4, 0, 0).0, |k| matches!(k, ErrorKind::UnsupportedVersion(4)), "version 4");
    expect(Raw::new(3u32.swap_bytes(), 0, 0).0, |k| matches!(k, ErrorKind::BigEndian(3)), "big-endian");
    expect(Raw::new(3, u64::MAX, 0).0, |k| matches!(k, ErrorKind::CountTooLarge { .. }), "tensor count u64::MAX");
    expect(Raw::new(3, 0, 1 << 40).0, |k| matches!(k, ErrorKind::CountTooLarge { .. }), "kv count 2^40");
    expect(Raw::new(3, 0, 1).u64(u64::MAX).bytes(&[0; 16]).0, |k| matches!(k, ErrorKind::Truncated { .. }), "key length u64::MAX");
    expect(Raw::new(3, 0, 1).str("").u32(4).u32(0).0, |k| matches!(k, ErrorKind::EmptyKey { .. }), "empty key");
    expect(Raw::new(3, 0, 1).u64(2).bytes(&[0xff, 0xfe]).u32(4).u32(0).0, |k| matches!(k, ErrorKind::InvalidUtf8 { .. }), "non-UTF-8 key");
    expect(
        Raw::new(3, 0, 1).str("k").u32(13).bytes(&[0; 8]).0,
        |k| matches!(k, ErrorKind::UnknownValueType { id: 13, .. }),
        "value type 13",
    );
    expect(Raw::new(3, 0, 1).str("k").u32(9).u32(9).u64(1).0, |k| matches!(k, ErrorKind::NestedArray { .. }), "array of arrays");
    expect(
        Raw::new(3, 0, 1).str("k").u32(9).u32(8).u64(1 << 61).0,
        |k| matches!(k, ErrorKind::CountTooLarge { .. }),
        "array of 2^61 strings",
    );
    expect(
        Raw::new(3, 0, 1).str("k").u32(8).u64(1 << 50).bytes(&[0; 8]).0,
        |k| matches!(k, ErrorKind::Truncated { .. }),
        "string of 2^50 bytes",
    );
    expect(Raw::new(3, 0, 2).kv_u32("k", 1).kv_u32("k", 2).0, |k| matches!(k, ErrorKind::DuplicateKey(_)), "duplicate key");
    expect(Raw::new(3, 0, 1).kv_u32("general.alignment", 3).0, |k| matches!(k, ErrorKind::BadAlignment(_)), "alignment 3");
    expect(Raw::new(3, 0, 1).str("general.alignment").u32(10).u64(32).0, |k| matches!(k, ErrorKind::BadAlignment(_)), "alignment as u64");
    let t = |dims: &[u64], ty: u32, off: u64| Raw::new(3, 1, 0).tensor("w", dims, ty, off).pad_and_data(256).0;
    expect(t(&[32, 1, 1, 1, 1], 0, 0), |k| matches!(k, ErrorKind::TooManyDims { n_dims: 5, .. }), "5 dims");
    expect(t(&[], 0, 0), |k| matches!(k, ErrorKind::TooManyDims { n_dims: 0, .. }), "0 dims");
    expect(t(&[32, 2], 4, 0), |k| matches!(k, ErrorKind::UnknownTensorType { removed: true, .. }), "removed type 4");
    expect(t(&[32, 2], 99, 0), |k| matches!(k, ErrorKind::UnknownTensorType { removed: false, .. }), "type 99");
    expect(t(&[33, 2], 2, 0), |k| matches!(k, ErrorKind::NotBlockMultiple { .. }), "ne0 33 for Q4_0");
    expect(t(&[1 << 40, 1 << 40], 0, 0), |k| matches!(k, ErrorKind::SizeOverflow { .. }), "size overflow");
    expect(t(&[32, 1 << 40], 0, 0), |k| matches!(k, ErrorKind::DataPastEof { .. }), "data past EOF");
    expect(t(&[32, 2], 0, 16), |k| matches!(k, ErrorKind::Misaligned { .. }), "misaligned offset");
    expect(t(&[32, 2], 0, u64::MAX - 31), |k| matches!(k, ErrorKind::DataPastEof { .. }), "offset near u64::MAX");
    expect(
        Raw::new(3, 1, 0).tensor(&"x".repeat(64), &[32], 0, 0).pad_and_data(128).0,
        |k| matches!(k, ErrorKind::NameTooLong(_)),
        "64-byte name",
    );
    expect(
        Raw::new(3, 2, 0).tensor("a", &[32, 2], 0, 0).tensor("b", &[32, 2], 0, 224).pad_and_data(512).0,
        |k| matches!(k, ErrorKind::Overlap { .. }),
        "overlapping tensors",
    );
    expect(
        Raw::new(3, 2, 0).tensor("a", &[32], 0, 0).tensor("a", &[32], 0, 128).pad_and_data(512).0,
        |k| matches!(k, ErrorKind::DuplicateTensor(_)),
        "duplicate tensor",
    );
    // Control: the same two tensors, disjoint, parse fine.
    parse(&Raw::new(3, 2, 0).tensor("a", &[32, 2], 0, 0).tensor("b", &[32, 2], 0, 256).pad_and_data(512).0).expect("two disjoint tensors");
}
