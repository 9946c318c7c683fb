//! Decode throughput per type, single thread: our scalar reference, our AVX2 path, and ggml's C
//! `dequantize_row_*` (the anchor, from the llama.cpp build in the oracle venv) on the same
//! blocks in the same run. Run: `cargo bench --bench quant_decode`.
//! Set FINETUNE_PYTHON to the oracle venv's python, or run `bash tests/oracle/setup.sh` first.
#[path = "../tests/common/random_blocks.rs"]
mod random_blocks;
#[path = "../tests/common/rng.rs"]
mod rng;
#[allow(unused_imports)]
use rng::Rng;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use finetune::quant::{self, GgmlType, Isa};

fn best_of(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn oracle_python() -> PathBuf {
    if let Ok(p) = std::env::var("FINETUNE_PYTHON") {
        return p.into();
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let cache = std::env::var("FINETUNE_CACHE").unwrap_or(format!("{home}/.cache/finetune"));
    PathBuf::from(cache).join("venv/bin/python")
}

fn main() {
    let mut rng = Rng(1);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-decode");
    std::fs::create_dir_all(&dir).unwrap();
    let target_bytes = 8 << 20;
    let mut rows = Vec::new();
    for ty in random_blocks::decodable_types() {
        let n_blocks = target_bytes / ty.type_size();
        let bytes = random_blocks::random_blocks(ty, n_blocks, &mut rng);
        std::fs::write(dir.join(format!("blocks.{}.bin", ty.name())), &bytes).unwrap();
        let n = n_blocks * ty.block_size();
        let mut out = vec![0f32; n];
        let scalar = best_of(5, || quant::decode_scalar(ty, &bytes, &mut out).unwrap());
        let simd = quant::kernels_for(Isa::Avx2, ty)
            .filter(|k| k.path == "avx2")
            .and_then(|k| k.decode)
            .map(|f| best_of(5, || f(&bytes, &mut out)));
        rows.push((ty, bytes.len(), n, scalar, simd));
    }
    let py = oracle_python();
    let out = Command::new(&py)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/oracle.py"))
        .args(["bench-ggml", dir.to_str().unwrap()])
        .output()
        .unwrap_or_else(|e| panic!("anchor missing: {} ({e}); run bash tests/oracle/setup.sh", py.display()));
    assert!(out.status.success(), "anchor failed: {}", String::from_utf8_lossy(&out.stderr));
    let ggml: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();

    println!("decode throughput, 1 thread, 8 MiB of blocks per type (GB/s of quantized input; Melem/s in brackets)");
    println!("| type | scalar | AVX2 | ggml C (anchor) | AVX2 / ggml | AVX2 / scalar |");
    println!("|---|---|---|---|---|---|");
    let gbs = |bytes: usize, s: f64| bytes as f64 / s / 1e9;
    for (ty, bytes, n, scalar, simd) in rows {
        let anchor = ggml.get(ty.name()).map(|v| v["seconds"].as_f64().unwrap());
        let fmt = |s: Option<f64>| match s {
            Some(s) => format!("{:.2} ({:.0})", gbs(bytes, s), n as f64 / s / 1e6),
            None => "–".to_string(),
        };
        let best = simd.unwrap_or(scalar);
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            ty.name(),
            fmt(Some(scalar)),
            fmt(simd),
            fmt(anchor),
            anchor.map_or("–".into(), |a| format!("{:.2}×", a / best)),
            simd.map_or("–".into(), |s| format!("{:.2}×", scalar / s)),
        );
    }
    let _ = GgmlType::F32;
}
