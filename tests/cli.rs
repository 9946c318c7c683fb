//! The `finetune` binary: `inspect` on both real models (text and JSON facts checked against
//! the files' own metadata), `--tensor … --out x.npy` checked bit for bit with numpy + gguf,
//! and bad input giving a clear error and a non-zero exit instead of a panic.
mod common;

use std::process::Command;

use common::{bin, oracle, tmpdir};

fn run(args: &[&str]) -> (bool, String, String, Option<i32>) {
    let o = Command::new(bin()).args(args).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into(), o.status.code())
}

#[test]
fn inspect_smollm2_text() {
    let m = common::smollm();
    let (ok, out, err, _) = run(&["inspect", m.to_str().unwrap()]);
    assert!(ok, "{err}");
    for want in [
        "architecture:  llama",
        "file type:     MOSTLY_Q4_1 (3)",
        "134.52 M (134515008), 272 tensors",
        "Q4_1       210 tensors",
        "llama.block_count = 30",
        "llama.embedding_length = 576",
        "llama.attention.head_count_kv = 3",
        "model = gpt2, pre = smollm",
        "vocab = 49152, merges = 48900",
        "bos=1, eos=2",
        "chat template: present",
        "all tensor types are supported",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

#[test]
fn inspect_gemma3_json() {
    let m = common::gemma();
    let (ok, out, err, _) = run(&["inspect", m.to_str().unwrap(), "--json", "--tensors"]);
    assert!(ok, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["architecture"], "gemma3");
    assert_eq!(j["file_type"]["name"], "MOSTLY_Q4_K_M");
    assert_eq!(j["parameters"], 268_098_176u64);
    assert_eq!(j["n_tensors"], 236);
    assert_eq!(j["tensors"].as_array().unwrap().len(), 236);
    for t in ["F32", "Q5_0", "Q8_0", "Q4_K", "Q6_K"] {
        assert_eq!(j["tensor_types"][t]["supported"], true, "{t}");
    }
    assert_eq!(j["hparams"]["gemma3.attention.key_length"], 256);
    assert_eq!(j["hparams"]["gemma3.attention.sliding_window"], 512);
    assert_eq!(j["tokenizer"]["model"], "llama");
    assert_eq!(j["tokenizer"]["vocab_size"], 262_144);
    assert_eq!(j["tokenizer"]["special_ids"]["bos"], 2);
    assert_eq!(j["unsupported_types"].as_array().unwrap().len(), 0);
    // Per-type byte totals add up to the tensor bytes.
    let sum: u64 = j["tensor_types"].as_object().unwrap().values().map(|v| v["bytes"].as_u64().unwrap()).sum();
    assert_eq!(sum, j["tensor_bytes"].as_u64().unwrap());
}

#[test]
fn inspect_tensor_to_npy_matches_gguf_dequantize() {
    let dir = tmpdir("npy");
    for (model, tensor) in [
        (common::smollm(), "blk.0.attn_q.weight"),   // Q4_1
        (common::smollm(), "token_embd.weight"),     // Q8_0, 49152 × 576
        (common::gemma(), "blk.3.ffn_down.weight"),  // a k-quant
        (common::gemma(), "blk.0.attn_norm.weight"), // F32, 1-D
    ] {
        let out = dir.join(format!("{tensor}.npy"));
        let (ok, _, err, _) = run(&["inspect", model.to_str().unwrap(), "--tensor", tensor, "--out", out.to_str().unwrap()]);
        assert!(ok, "{err}");
        let r = oracle(&["npy-compare", model.to_str().unwrap(), tensor, out.to_str().unwrap()]);
        assert_eq!(r["dtype"], "float32");
        assert_eq!(r["shape"], r["want_shape"], "{tensor}");
        assert_eq!(r["bit_equal"], true, "{tensor}: {r}");
    }
}

#[test]
fn bad_input_is_a_clear_error_not_a_panic() {
    let dir = tmpdir("cli-bad");
    let junk = dir.join("junk.gguf");
    std::fs::write(&junk, b"this is not a gguf file at all").unwrap();
    let trunc = dir.join("trunc.gguf");
    std::fs::write(&trunc, &std::fs::read(common::smollm()).unwrap()[..5000]).unwrap();
    let m = common::smollm();
    let npy = dir.join("x.npy");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["inspect", junk.to_str().unwrap()], "not a GGUF file"),
        (vec!["inspect", trunc.to_str().unwrap()], "truncated"),
        (vec!["inspect", "/nonexistent/model.gguf"], "No such file"),
        (vec!["inspect", m.to_str().unwrap(), "--tensor", "nope", "--out", npy.to_str().unwrap()], "no tensor named 'nope'"),
    ];
    for (args, want) in cases {
        let (ok, _, err, code) = run(&args);
        assert!(!ok, "{args:?} succeeded");
        assert_eq!(code, Some(1), "{args:?}: exit code {code:?} (101 would be a panic):\n{err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{err}");
    }
    assert!(!npy.exists(), "no partial output file");
}
