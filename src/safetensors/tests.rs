//! Header validation, round trips and sharded directories.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// A fresh directory under the system temp dir.
fn tmpdir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!("finetune-st-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A file image with `header` (as given) and `data_len` data bytes.
fn image(header: &[u8], data_len: usize) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header);
    b.extend((0..data_len).map(|i| i as u8));
    b
}

/// The error of parsing `bytes` as `x.safetensors`.
fn err(bytes: Vec<u8>) -> String {
    SafetensorsFile::from_bytes("x.safetensors", bytes).unwrap_err().to_string()
}

fn has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "'{p}' not in: {msg}");
    }
}

#[test]
fn round_trip_floats_and_integers() {
    let mut w = SafetensorsWriter::new();
    w.set_metadata("format", "pt");
    w.add_f32("a", Dtype::F32, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    w.add_f32("b", Dtype::BF16, &[2], &[0.5, -2.0]).unwrap();
    w.add_f32("h", Dtype::F16, &[1], &[0.25]).unwrap();
    let q: Vec<u8> = [7i32, -1, 1 << 30].iter().flat_map(|v| v.to_le_bytes()).collect();
    w.add("q", Dtype::I32, &[3], q.clone()).unwrap();
    w.add("z", Dtype::U8, &[0], Vec::new()).unwrap();
    w.add("g", Dtype::I64, &[1], 5i64.to_le_bytes().to_vec()).unwrap();
    let bytes = w.to_bytes();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(n % 8, 0, "header padded to 8 bytes");
    assert!(std::str::from_utf8(&bytes[8..8 + n]).unwrap().starts_with("{\"__metadata__\":{\"format\":\"pt\"},\"a\":"));

    let f = SafetensorsFile::from_bytes("x.safetensors", bytes).unwrap();
    assert_eq!(f.metadata().get("format").map(String::as_str), Some("pt"));
    let names: Vec<&str> = f.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "h", "q", "z", "g"], "data order");
    let a = f.tensor("a").unwrap();
    assert_eq!((a.dtype, a.shape, a.numel()), (Dtype::F32, &[2usize, 3][..], 6));
    assert_eq!(a.to_f32().unwrap(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(f.tensor("b").unwrap().to_f32().unwrap(), [0.5, -2.0]);
    assert_eq!(f.tensor("h").unwrap().to_f32().unwrap(), [0.25]);
    let qv = f.tensor("q").unwrap();
    assert_eq!(qv.data, &q[..]);
    has(&qv.to_f32().unwrap_err().to_string(), &["x.safetensors", "tensor 'q'", "dtype I32 is not a floating-point type"]);
    assert_eq!(f.tensor("z").unwrap().data.len(), 0);
    assert_eq!(f.tensor("g").unwrap().data, 5i64.to_le_bytes());
    assert!(f.get("nope").is_none());
    has(&f.tensor("nope").unwrap_err().to_string(), &["x.safetensors", "no tensor named 'nope'"]);
    assert_eq!(f.views().count(), 6);
}

#[test]
fn writer_refuses_bad_tensors() {
    let mut w = SafetensorsWriter::new();
    has(&w.add_f32("a", Dtype::F32, &[2, 2], &[1.0; 3]).unwrap_err().to_string(), &["tensor 'a'", "shape [2, 2] but 3 values"]);
    has(&w.add("b", Dtype::I32, &[2], vec![0; 7]).unwrap_err().to_string(), &["tensor 'b'", "7 bytes"]);
    has(&w.add_f32("c", Dtype::I8, &[1], &[1.0]).unwrap_err().to_string(), &["tensor 'c'", "not a floating-point type"]);
    w.add_f32("d", Dtype::F32, &[1], &[1.0]).unwrap();
    has(&w.add_f32("d", Dtype::F32, &[1], &[1.0]).unwrap_err().to_string(), &["tensor 'd' appears twice"]);
    assert!(w.add("__metadata__", Dtype::U8, &[0], Vec::new()).is_err());
}

#[test]
fn dtypes() {
    for d in Dtype::ALL {
        assert_eq!(Dtype::from_name(d.name()), Some(d));
        assert_eq!(d.is_float(), d.ggml().is_some());
    }
    assert_eq!(Dtype::from_name("F64"), None);
    let sizes: Vec<usize> = Dtype::ALL.iter().map(|d| d.size()).collect();
    assert_eq!(sizes, [4, 2, 2, 8, 4, 2, 1, 4, 2, 1]);
}

#[test]
fn too_short_and_header_length() {
    has(&err(vec![1, 2, 3]), &["x.safetensors", "3 bytes is too short"]);
    let mut b = (1u64 << 40).to_le_bytes().to_vec();
    b.extend_from_slice(b"{}");
    has(&err(b), &["x.safetensors", "header length 1099511627776 does not fit the 10-byte file"]);
}

#[test]
fn oversize_header() {
    let n = MAX_HEADER + 8;
    let mut b = vec![b' '; 8 + n as usize];
    b[..8].copy_from_slice(&n.to_le_bytes());
    has(&err(b), &["x.safetensors", "header length", "over the 104857600-byte limit"]);
}

#[test]
fn header_not_utf8_json_or_object() {
    has(&err(image(b"{\"a\xff\": 1}", 0)), &["x.safetensors", "not valid UTF-8", "byte 3"]);
    has(&err(image(b"{{{{", 0)), &["x.safetensors", "not valid JSON"]);
    has(&err(image(b"[1, 2]  ", 0)), &["x.safetensors", "not a JSON object"]);
    has(&err(image(br#"{"__metadata__": [1]}"#, 0)), &["__metadata__ is not an object"]);
    has(&err(image(br#"{"__metadata__": {"k": 1}}"#, 0)), &["__metadata__ value of 'k' is not a string"]);
}

#[test]
fn bad_entries() {
    let cases: [(&[u8], usize, &[&str]); 8] = [
        (br#"{"t": 5}"#, 0, &["tensor 't'", "not an object"]),
        (br#"{"t": {"shape": [1], "data_offsets": [0, 4]}}"#, 4, &["tensor 't'", "no dtype"]),
        (
            br#"{"t": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}}"#,
            8,
            &["tensor 't'", "dtype F64 is not supported (F32, F16, BF16, I64"],
        ),
        (br#"{"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}"#, 4, &["tensor 't'", "shape is not a list of sizes"]),
        (br#"{"t": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}"#, 4, &["tensor 't'", "data_offsets is not [begin, end]"]),
        (
            br#"{"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}"#,
            4,
            &["tensor 't'", "shape [2] of F32 does not fill data_offsets [0, 4]"],
        ),
        (
            br#"{"t": {"dtype": "I16", "shape": [3], "data_offsets": [0, 6]}}"#,
            4,
            &["tensor 't'", "data_offsets [0, 6] outside the 4-byte data section"],
        ),
        (br#"{"t": {"dtype": "U8", "shape": [0], "data_offsets": [4, 0]}}"#, 4, &["tensor 't'", "end before they begin"]),
    ];
    for (h, n, want) in cases {
        let mut parts = vec!["x.safetensors"];
        parts.extend_from_slice(want);
        has(&err(image(h, n)), &parts);
    }
}

#[test]
fn ranges_must_tile_the_data() {
    let overlap =
        br#"{"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}, "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}"#;
    has(&err(image(overlap, 6)), &["x.safetensors", "tensor 'b'", "overlap", "tensor 'a'"]);
    let gap =
        br#"{"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}, "b": {"dtype": "U8", "shape": [2], "data_offsets": [4, 6]}}"#;
    has(&err(image(gap, 6)), &["x.safetensors", "tensor 'b'", "leave bytes [2, 4) after tensor 'a' unused"]);
    let late = br#"{"a": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]}}"#;
    has(&err(image(late, 3)), &["tensor 'a'", "leave bytes [0, 1) after the header unused"]);
    let trailing = br#"{"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}"#;
    has(&err(image(trailing, 5)), &["x.safetensors", "3 bytes after the last tensor"]);
    // Out of order in the header but tiling the data: fine, listed in data order.
    let swapped =
        br#"{"b": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]}, "a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}"#;
    let f = SafetensorsFile::from_bytes("x.safetensors", image(swapped, 4)).unwrap();
    assert_eq!(f.tensors()[0].name, "a");
    assert_eq!(f.tensor("b").unwrap().data, [2, 3]);
}

#[test]
fn open_maps_a_file() {
    let d = tmpdir("open");
    let p = d.join("m.safetensors");
    let mut w = SafetensorsWriter::new();
    w.add_f32("w", Dtype::F16, &[2], &[1.0, -1.0]).unwrap();
    w.write(&p).unwrap();
    let f = SafetensorsFile::open(&p).unwrap();
    assert_eq!(f.path(), p);
    assert_eq!(f.tensor("w").unwrap().to_f32().unwrap(), [1.0, -1.0]);
    has(&SafetensorsFile::open(d.join("none.safetensors")).unwrap_err().to_string(), &["none.safetensors"]);
    std::fs::write(d.join("short.safetensors"), b"abc").unwrap();
    has(&SafetensorsFile::open(d.join("short.safetensors")).unwrap_err().to_string(), &["short.safetensors", "too short"]);
    let _ = std::fs::remove_dir_all(&d);
}

fn shard(path: &std::path::Path, names: &[(&str, f32)]) {
    let mut w = SafetensorsWriter::new();
    for (n, v) in names {
        w.add_f32(n, Dtype::F32, &[1], &[*v]).unwrap();
    }
    w.write(path).unwrap();
}

#[test]
fn sharded_directory() {
    let d = tmpdir("sharded");
    shard(&d.join("model-00001-of-00002.safetensors"), &[("a", 1.0), ("b", 2.0)]);
    shard(&d.join("model-00002-of-00002.safetensors"), &[("c", 3.0)]);
    let index = serde_json::json!({
        "metadata": {"total_size": 12},
        "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"}
    });
    std::fs::write(d.join(INDEX_FILE), index.to_string()).unwrap();
    let s = ShardedSafetensors::open(&d).unwrap();
    assert_eq!(s.shards().len(), 2);
    assert_eq!(s.len(), 3);
    assert_eq!(s.names().collect::<Vec<_>>(), ["a", "b", "c"]);
    assert_eq!(s.tensor("c").unwrap().to_f32().unwrap(), [3.0]);
    assert_eq!(s.get("b").unwrap().to_f32().unwrap(), [2.0]);
    has(&s.tensor("d").unwrap_err().to_string(), &[INDEX_FILE, "no tensor named 'd'"]);
    // The index file itself opens the same way.
    assert_eq!(ShardedSafetensors::open(d.join(INDEX_FILE)).unwrap().len(), 3);

    let bad = |name: &str, weight_map: serde_json::Value, want: &[&str]| {
        let b = tmpdir(name);
        for f in ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"] {
            std::fs::copy(d.join(f), b.join(f)).unwrap();
        }
        std::fs::write(b.join(INDEX_FILE), serde_json::json!({ "weight_map": weight_map }).to_string()).unwrap();
        has(&ShardedSafetensors::open(&b).unwrap_err().to_string(), want);
        let _ = std::fs::remove_dir_all(&b);
    };
    bad("wrong-shard", serde_json::json!({"c": "model-00001-of-00002.safetensors"}), &[INDEX_FILE, "tensor 'c'", "does not hold it"]);
    bad("missing-shard", serde_json::json!({"a": "model-00009.safetensors"}), &["model-00009.safetensors"]);
    bad("traversal", serde_json::json!({"a": "../model.safetensors"}), &[INDEX_FILE, "'../model.safetensors' is not a file name"]);
    bad("not-string", serde_json::json!({"a": 3}), &[INDEX_FILE, "weight_map['a'] is not a file name"]);
    bad("empty", serde_json::json!({}), &[INDEX_FILE, "empty"]);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn unsharded_directory() {
    let d = tmpdir("single");
    has(&ShardedSafetensors::open(&d).unwrap_err().to_string(), &["neither", INDEX_FILE]);
    shard(&d.join(SINGLE_FILE), &[("x", 5.0)]);
    let s = ShardedSafetensors::open(&d).unwrap();
    assert_eq!(s.tensor("x").unwrap().to_f32().unwrap(), [5.0]);
    assert_eq!(s.source(), d.join(SINGLE_FILE));
    let _ = std::fs::remove_dir_all(&d);
}
