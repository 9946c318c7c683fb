//! The GGUF writer and reader against the real references: a rewrite of a real model is
//! byte-identical; our metadata and tensor table equal `gguf.GGUFReader`'s; files we write
//! (a rewrite, a 3-way split, a Q4_1→Q8_0 transcode made by our encoder) load in llama.cpp
//! (llama-cpp-python, in a subprocess) and predict the same next token.
mod common;

use std::path::{Path, PathBuf};

use common::{oracle, tmpdir};
use finetune::gguf::{GgufFile, GgufModel, GgufWriter, Value};
use finetune::quant::{self, GgmlType};
use sha2::{Digest, Sha256};

fn sha256_file(p: &Path) -> String {
    let mut h = Sha256::new();
    h.update(std::fs::read(p).unwrap());
    format!("{:x}", h.finalize())
}

/// Copy `src` through our writer, optionally transforming each tensor (type, bytes).
fn rewrite(src: &GgufFile, dst: &Path, transform: impl Fn(&str, GgmlType, &[u8]) -> (GgmlType, Vec<u8>)) {
    let mut w = GgufWriter::new();
    for (k, v) in &src.metadata {
        w.set(k.clone(), v.clone());
    }
    let mut payloads = Vec::new();
    for info in &src.tensors {
        let (ty, bytes) = transform(&info.name, info.ty, src.view(info).data);
        w.add_tensor(&info.name, ty, &info.dims).unwrap();
        payloads.push(bytes);
    }
    let mut sink = w.create(dst).unwrap();
    for p in &payloads {
        sink.write_tensor(p).unwrap();
    }
    sink.finish().unwrap();
}

/// Write `src` as `n` shards the way llama.cpp's gguf-split does: all metadata plus split keys
/// in the first shard, only split keys in the others.
fn write_split(src: &GgufFile, dir: &Path, prefix: &str, n: u32) -> PathBuf {
    let per = src.tensors.len().div_ceil(n as usize);
    for (k, chunk) in src.tensors.chunks(per).enumerate() {
        let mut w = GgufWriter::new();
        if k == 0 {
            for (key, v) in &src.metadata {
                w.set(key.clone(), v.clone());
            }
        }
        w.set("split.no", Value::U16(k as u16));
        w.set("split.count", Value::U16(n as u16));
        w.set("split.tensors.count", Value::I32(src.tensors.len() as i32));
        for info in chunk {
            w.add_tensor(&info.name, info.ty, &info.dims).unwrap();
        }
        let path = finetune::gguf::split::split_path(dir, prefix, k as u32 + 1, n);
        let mut sink = w.create(&path).unwrap();
        for info in chunk {
            sink.write_tensor(src.view(info).data).unwrap();
        }
        sink.finish().unwrap();
    }
    finetune::gguf::split::split_path(dir, prefix, 1, n)
}

fn json_of(v: &Value) -> serde_json::Value {
    match v {
        Value::Array(_, items) => items.iter().map(json_of).collect(),
        Value::F32(x) => serde_json::json!(*x as f64),
        other => other.to_json(usize::MAX),
    }
}

fn check_metadata_against_gguf_py(path: &Path) {
    let ours = GgufFile::open(path).unwrap();
    let theirs = oracle(&["meta", path.to_str().unwrap()]);
    let kv = theirs["kv"].as_array().unwrap();
    assert_eq!(kv.len(), ours.metadata.len(), "metadata count");
    for (i, ((k, v), t)) in ours.metadata.iter().zip(kv).enumerate() {
        assert_eq!(k, t["key"].as_str().unwrap(), "key #{i}");
        let types: Vec<&str> = t["types"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
        assert_eq!(
            v.value_type().name().to_uppercase(),
            types[0].replace("UINT", "U").replace("INT", "I").replace("FLOAT", "F"),
            "type of {k}"
        );
        if let Value::Array(et, _) = v {
            if let Some(sub) = types.get(1) {
                assert_eq!(
                    et.name().to_uppercase(),
                    sub.replace("UINT", "U").replace("INT", "I").replace("FLOAT", "F"),
                    "element type of {k}"
                );
            }
        }
        assert_eq!(json_of(v), t["value"], "value of {k}");
    }
    let tensors = theirs["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), ours.tensors.len());
    for (a, b) in ours.tensors.iter().zip(tensors) {
        assert_eq!(a.name, b["name"].as_str().unwrap());
        assert_eq!(a.ty.name(), b["type"].as_str().unwrap(), "{}", a.name);
        let ne: Vec<u64> = b["ne"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
        assert_eq!(a.dims, ne, "{}", a.name);
        assert_eq!(a.offset, b["offset"].as_u64().unwrap(), "{}", a.name);
        assert_eq!(a.n_bytes(), b["n_bytes"].as_u64().unwrap(), "{}", a.name);
    }
    assert_eq!(ours.data_offset, theirs["data_offset"].as_u64().unwrap());
    assert_eq!(ours.alignment, theirs["alignment"].as_u64().unwrap());
}

#[test]
fn metadata_and_tensor_table_match_gguf_reader() {
    check_metadata_against_gguf_py(&common::smollm());
    check_metadata_against_gguf_py(&common::gemma());
}

#[test]
fn rewriting_real_models_is_byte_identical() {
    let dir = tmpdir("rewrite");
    for src_path in [common::smollm(), common::gemma()] {
        let src = GgufFile::open(&src_path).unwrap();
        let dst = dir.join("copy.gguf");
        rewrite(&src, &dst, |_, ty, b| (ty, b.to_vec()));
        assert_eq!(sha256_file(&dst), sha256_file(&src_path), "rewrite of {} differs", src_path.display());
        // …and gguf-py reads our file identically.
        check_metadata_against_gguf_py(&dst);
    }
}

#[test]
fn files_we_write_load_in_llama_cpp() {
    let dir = tmpdir("llama-load");
    let prompt = "The capital of France is";
    let src_path = common::smollm();
    let src = GgufFile::open(&src_path).unwrap();
    let base = oracle(&["llama-top", src_path.to_str().unwrap(), prompt]);
    assert_eq!(base["top_piece"].as_str().unwrap(), " Paris", "llama.cpp on the original file: {base}");

    // 1. A plain rewrite.
    let copy = dir.join("copy.gguf");
    rewrite(&src, &copy, |_, ty, b| (ty, b.to_vec()));
    let r = oracle(&["llama-top", copy.to_str().unwrap(), prompt]);
    assert_eq!(r["logits_sha256"], base["logits_sha256"], "rewrite: logits differ");

    // 2. A 3-way split, read back by our reader and by llama.cpp.
    let first = write_split(&src, &dir, "smol", 3);
    let m = GgufModel::open(&first).unwrap();
    assert_eq!(m.shards.len(), 3);
    assert_eq!(m.n_tensors(), src.tensors.len());
    for info in &src.tensors {
        assert_eq!(m.tensor(&info.name).unwrap().data, src.view(info).data, "{}", info.name);
    }
    let r = oracle(&["llama-top", first.to_str().unwrap(), prompt]);
    assert_eq!(r["logits_sha256"], base["logits_sha256"], "split: logits differ");

    // 3. Every Q4_1 tensor re-encoded to Q8_0 by our encoder: a complete model we quantized.
    let q8 = dir.join("smol-q8_0.gguf");
    rewrite(&src, &q8, |_, ty, b| {
        if ty != GgmlType::Q4_1 {
            return (ty, b.to_vec());
        }
        let n = b.len() / ty.type_size() * ty.block_size();
        let mut x = vec![0f32; n];
        quant::decode(ty, b, &mut x).unwrap();
        let mut out = vec![0u8; n / 32 * 34];
        quant::encode_par(GgmlType::Q8_0, &x, &mut out).unwrap();
        (GgmlType::Q8_0, out)
    });
    let r = oracle(&["llama-top", q8.to_str().unwrap(), prompt]);
    assert_eq!(r["top_piece"].as_str().unwrap(), " Paris", "Q8_0 transcode: {r}");
}
