//! Helpers shared by the integration tests: where the oracles and models are, running the
//! Python oracle, scratch directories and a deterministic RNG. A missing oracle or model is a
//! test failure with the command that fixes it, never a skip.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub mod int8;
pub mod lora;
pub mod rng;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn cache_dir() -> PathBuf {
    if let Ok(c) = std::env::var("FINETUNE_CACHE") {
        return PathBuf::from(c);
    }
    let base = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache"));
    base.join("finetune")
}

/// The oracle venv's python (FINETUNE_PYTHON overrides).
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("FINETUNE_PYTHON") {
        return PathBuf::from(p);
    }
    let p = cache_dir().join("venv/bin/python");
    assert!(
        p.exists() && cache_dir().join("venv/.oracle-v2").exists(),
        "ORACLE MISSING: {} not set up. Run `bash tests/oracle/setup.sh` (the README's test command does).",
        p.display()
    );
    p
}

/// Run `tests/oracle/oracle.py ARGS…` and parse its JSON stdout; any failure panics with stderr.
pub fn oracle(args: &[&str]) -> serde_json::Value {
    let out = Command::new(python()).arg(root().join("tests/oracle/oracle.py")).args(args).output().expect("run python oracle");
    assert!(out.status.success(), "oracle {:?} failed ({}):\n{}", args, out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("oracle {:?} printed non-JSON ({e}):\n{}", args, String::from_utf8_lossy(&out.stdout)))
}

/// The llama-cpp-python release whose vendored llama.cpp `tests/oracle/setup.sh` builds the
/// command-line tools from (the same llama.cpp as the Python oracle's).
pub const LLAMA_CPP_PYTHON: &str = "0.3.36";

/// A llama.cpp command-line tool (`llama-completion`, `llama-server`, `llama-export-lora`, …) as
/// built by `tests/oracle/setup.sh`; missing → a failure naming the command that builds it.
pub fn llama_tool(name: &str) -> PathBuf {
    let p = cache_dir().join(format!("llama.cpp-{LLAMA_CPP_PYTHON}/bin")).join(name);
    assert!(p.is_file(), "ORACLE MISSING: {} not built. Run `bash tests/oracle/setup.sh` (the README's test command does).", p.display());
    p
}

pub fn model(name: &str) -> PathBuf {
    let p = root().join("models").join(name);
    assert!(p.exists(), "MODEL MISSING: {} — run `bash models/fetch.sh`", p.display());
    p
}

pub fn smollm() -> PathBuf {
    model("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// SmolLM2-135M-Instruct as Hugging Face directories re-saved by transformers from the Q4_1 GGUF
/// (`tests/oracle/hf_fixture.py`: `f32/`, `sharded/`, `bf16/`), made once into the cache.
pub fn hf_smollm_dirs() -> PathBuf {
    static ONCE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    let out = cache_dir().join("hf/smollm2-135m");
    if !out.join(".stamp-v1").exists() {
        let o = Command::new(python()).arg(root().join("tests/oracle/hf_fixture.py")).arg(smollm()).arg(&out).output().unwrap();
        assert!(o.status.success(), "hf_fixture.py failed:\n{}", String::from_utf8_lossy(&o.stderr));
    }
    out
}

pub fn gemma() -> PathBuf {
    model("gemma-3-270m-q4_k_m.gguf")
}

/// A fresh, empty directory for one call (unique per process and call, so tests running in
/// parallel threads of one test binary never share or wipe each other's files).
pub fn tmpdir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = root().join("target/test-tmp").join(format!("{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_finetune"))
}

pub fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[allow(unused_imports)]
pub use rng::Rng;
pub mod random_blocks;

/// Whether llama.cpp as built here is the build our llama.cpp-numerics mode reproduces bit for
/// bit: its AVX-512 build (ggml's 16-lane `GGML_F32x16` reductions in the f16 dots and softmax,
/// llamafile's 16-wide tiles, the AVX-512 repacked kernels). The oracle compiles llama.cpp for
/// this CPU, so on an x86 CPU without AVX-512F it is the AVX2 build (8-lane reductions), whose
/// summation orders the ggml mode does not follow: there the llama.cpp-numerics tests check
/// closeness (the f32 mode's bounds) instead of bit-identity and print that they did.
#[allow(dead_code)]
pub fn llama_cpp_is_its_avx512_build() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The notice a llama.cpp-numerics test prints when it cannot check bit-identity here.
#[allow(dead_code)]
pub fn note_not_bit_identical(what: &str) {
    eprintln!(
        "NOTE: {what}: exact equality with llama.cpp NOT checked on this CPU (no AVX-512F: llama.cpp here is its \
         AVX2 build, whose reduction orders the llama.cpp-numerics mode does not reproduce); a closeness bound \
         checked instead"
    );
}

/// A greedy text of ours against llama.cpp's: equal where llama.cpp here is its AVX-512 build (the
/// one whose numerics ours reproduce, [`llama_cpp_is_its_avx512_build`]). Its AVX2 build rounds
/// differently and parts from ours at near ties (measured on an AVX2-only Zen 4: after 7–9
/// words with one set of adapters, after 4–5 with the same data trained by a build whose SiLU
/// exp rounds differently), so there the texts must agree on their first 3 words, and the test
/// says it did not check equality. (The callers check separately that the adapters change the
/// texts; a teacher-forced check — llama.cpp's tokens within a small logit gap of our argmax —
/// would be the stronger bound here.)
#[allow(dead_code)]
pub fn assert_same_text(name: &str, tool: &str, theirs: &str, mine: &str) {
    if llama_cpp_is_its_avx512_build() || theirs == mine {
        return assert_eq!(theirs, mine, "{name}: {tool} and finetune differ");
    }
    let common_words = theirs.split_whitespace().zip(mine.split_whitespace()).take_while(|(a, b)| a == b).count();
    note_not_bit_identical(&format!("{name} ({tool}): texts agree on their first {common_words} words"));
    assert!(common_words >= 3, "{name}: {tool} and finetune part after {common_words} words: {theirs:?} vs {mine:?}");
}
