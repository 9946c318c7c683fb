//! Decode throughput per type, single thread: our scalar reference, our AVX2 path, our AVX-512
//! path (the hot types, where the CPU has AVX-512), and ggml's C
//! `dequantize_row_*` (the anchor, from the llama.cpp build in the oracle venv) on the same
//! blocks in the same run; then GPTQ and AWQ-GEMM decode (scalar and AVX2). Run: `cargo bench
//! --bench quant_decode` (`QUANT_DECODE_HF_ONLY=1`: only the GPTQ/AWQ part, no anchor needed).
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
    if std::env::var_os("QUANT_DECODE_HF_ONLY").is_some() {
        return hf_packed(&mut rng);
    }
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
        let wide = quant::kernels_for(Isa::Avx2Vnni, ty)
            .filter(|k| k.path == "avx512")
            .and_then(|k| k.decode)
            .map(|f| best_of(5, || f(&bytes, &mut out)));
        rows.push((ty, bytes.len(), n, scalar, simd, wide));
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
    println!("| type | scalar | AVX2 | AVX-512 | ggml C (anchor) | best / ggml | AVX2 / scalar | AVX-512 / AVX2 |");
    println!("|---|---|---|---|---|---|---|---|");
    let gbs = |bytes: usize, s: f64| bytes as f64 / s / 1e9;
    for (ty, bytes, n, scalar, simd, wide) in rows {
        let anchor = ggml.get(ty.name()).map(|v| v["seconds"].as_f64().unwrap());
        let fmt = |s: Option<f64>| match s {
            Some(s) => format!("{:.2} ({:.0})", gbs(bytes, s), n as f64 / s / 1e6),
            None => "–".to_string(),
        };
        let best = wide.or(simd).unwrap_or(scalar);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            ty.name(),
            fmt(Some(scalar)),
            fmt(simd),
            fmt(wide),
            fmt(anchor),
            anchor.map_or("–".into(), |a| format!("{:.2}×", a / best)),
            simd.map_or("–".into(), |s| format!("{:.2}×", scalar / s)),
            simd.zip(wide).map_or("–".into(), |(s, w)| format!("{:.2}×", s / w)),
        );
    }
    let _ = GgmlType::F32;
    cache_resident(&mut rng);
    hf_packed(&mut rng);
}

/// The types with an AVX-512 decoder, decoded as the matmul does: 8 MiB of blocks in pieces
/// whose f32 output (64 KiB) stays in L2, so the kernel is timed rather than the store bandwidth
/// to memory that dominates the table above.
fn cache_resident(rng: &mut Rng) {
    let wide_types: Vec<GgmlType> = random_blocks::decodable_types()
        .into_iter()
        .filter(|&ty| quant::kernels_for(Isa::Avx2Vnni, ty).is_some_and(|k| k.path == "avx512"))
        .collect();
    if wide_types.is_empty() {
        println!("\n(no AVX-512 decoders on this CPU: the L2-resident comparison is skipped)");
        return;
    }
    println!();
    println!("into an L2-resident 64 KiB output, 1 thread, 8 MiB of blocks per type (Melem/s)");
    println!("| type | AVX2 | AVX-512 | AVX-512 / AVX2 |");
    println!("|---|---|---|---|");
    for ty in wide_types {
        let n_blocks = (8 << 20) / ty.type_size();
        let bytes = random_blocks::random_blocks(ty, n_blocks, rng);
        let per = (16 << 10) / ty.block_size(); // blocks per 16 Ki-element (64 KiB) piece
        let mut out = vec![0f32; per * ty.block_size()];
        let time = |f: quant::DecodeFn, out: &mut [f32]| {
            best_of(5, || {
                for piece in bytes.chunks(per * ty.type_size()) {
                    f(piece, &mut out[..piece.len() / ty.type_size() * ty.block_size()]);
                }
            })
        };
        let avx2 = quant::kernels_for(Isa::Avx2, ty).and_then(|k| k.decode).expect("AVX2 decoder");
        let wide = quant::kernels_for(Isa::Avx2Vnni, ty).and_then(|k| k.decode).expect("AVX-512 decoder");
        let (a, w) = (time(avx2, &mut out), time(wide, &mut out));
        let n = (n_blocks * ty.block_size()) as f64;
        println!("| {} | {:.0} | {:.0} | {:.2}× |", ty.name(), n / a / 1e6, n / w / 1e6, a / w);
    }
}

/// GPTQ and AWQ-GEMM decode on a 4096 × 4096 matrix of random codes, group 128, single thread,
/// as training asks for it: `decode_rows` in 16-row panels (forward) and `decode_cols` of
/// 512-column ranges of one row, and 32-row × 512-column blocks (the backward's
/// `decode_block`), scalar reference and AVX2 path.
fn hf_packed(rng: &mut Rng) {
    use finetune::safetensors::{Dtype, SafetensorsFile, SafetensorsWriter};
    use finetune::weights::{AwqMatrix, GptqMatrix, QuantWeight};
    let (k, n, g) = (4096usize, 4096usize, 128usize);
    let mut bytes = |len: usize| (0..len).map(|_| (rng.next_u64() >> 24) as u8).collect::<Vec<u8>>();
    let scales: Vec<u8> = (0..k / g * n).flat_map(|_| half::f16::from_f32(0.01).to_le_bytes()).collect();
    let mut w = SafetensorsWriter::new();
    w.add("g.qweight", Dtype::I32, &[k / 8, n], bytes(k / 8 * n * 4)).unwrap();
    w.add("g.qzeros", Dtype::I32, &[k / g, n / 8], bytes(k / g * n / 8 * 4)).unwrap();
    w.add("g.scales", Dtype::F16, &[k / g, n], scales.clone()).unwrap();
    w.add("a.qweight", Dtype::I32, &[k, n / 8], bytes(k * n / 8 * 4)).unwrap();
    w.add("a.qzeros", Dtype::I32, &[k / g, n / 8], bytes(k / g * n / 8 * 4)).unwrap();
    w.add("a.scales", Dtype::F16, &[k / g, n], scales).unwrap();
    let st = SafetensorsFile::from_bytes("bench.safetensors", w.to_bytes()).unwrap();
    let get = |name: &str| st.get(name);
    let q = serde_json::json!({"bits": 4, "group_size": g, "desc_act": false, "sym": false, "version": "gemm"});
    let gptq = |simd| Box::new(GptqMatrix::open(&get, "g", &q, k, n).unwrap().with_simd(simd)) as Box<dyn QuantWeight>;
    let awq = |simd| Box::new(AwqMatrix::open(&get, "a", &q, k, n).unwrap().with_simd(simd)) as Box<dyn QuantWeight>;
    println!();
    println!("Hugging Face packed weights, {n} × {k}, 1 thread (Melem/s): decode_rows in 16-row panels (forward), decode_cols 512 columns of one row, blocks of 32 rows × 512 columns (backward)");
    println!("| format | path | decode_rows | decode_cols | backward blocks |");
    println!("|---|---|---:|---:|---:|");
    let mut out = vec![0f32; 16 * k];
    for (name, simd, m) in [
        ("GPTQ 4-bit g128", false, gptq(false)),
        ("GPTQ 4-bit g128", true, gptq(true)),
        ("AWQ-GEMM 4-bit g128", false, awq(false)),
        ("AWQ-GEMM 4-bit g128", true, awq(true)),
    ] {
        let rows = best_of(3, || {
            for r in (0..n).step_by(16) {
                m.decode_rows(r, r + 16, &mut out);
            }
        });
        let cols = best_of(3, || {
            for c0 in (0..k).step_by(512) {
                for r in 0..n {
                    m.decode_cols(r, c0, c0 + 512, &mut out[..512]);
                }
            }
        });
        let back = best_of(3, || {
            for c0 in (0..k).step_by(512) {
                for r0 in (0..n).step_by(32) {
                    m.decode_block(r0, r0 + 32, c0, c0 + 512, &mut out);
                }
            }
        });
        let path = if simd { "AVX2" } else { "scalar" };
        let rate = |t: f64| format!("{:.0}", (n * k) as f64 / t / 1e6);
        println!("| {name} | {path} | {} | {} | {} |", rate(rows), rate(cols), rate(back));
    }
}
