//! Q4_K matmuls against llama.cpp's repacked CPU path, bit for bit: ggml's exported
//! `ggml_quantize_mat_q8_K_4x8` / `quantize_row_q8_K` activations and `ggml_gemm_q4_K_8x8_q8_K` /
//! `ggml_gemv_q4_K_8x8_q8_K` outputs (tests/oracle/q4k_oracle.py, through ctypes) against
//! `finetune::quant::q4k_ggml` (scalar and SIMD kernels) and `matmul_q8` itself.
mod common;

use common::{f32_bytes, gemma, oracle, read_f32, tmpdir, Rng};
use finetune::gguf::GgufFile;
use finetune::ops::matmul::QMatrix;
use finetune::ops::matmul_q8::matmul_q8;
use finetune::quant::q4k_ggml::{gemm4_scalar, gemv_scalar, to_ggml_x4};
use finetune::quant::GgmlType;

/// Activation rows: standard normal times `scale`; with `outliers`, a few large values per row and
/// a block holding both `−amax` (first) and `+amax`, where the two Q8_K quantizers differ.
fn activations(rng: &mut Rng, t: usize, k: usize, scale: f32, outliers: bool) -> Vec<f32> {
    let mut x: Vec<f32> = (0..t * k).map(|_| rng.normal() * scale).collect();
    if outliers {
        for r in 0..t {
            for _ in 0..4 {
                let i = rng.below(k as u64) as usize;
                x[r * k + i] = (rng.normal() * 60.0).clamp(-300.0, 300.0);
            }
            let b = 256 * rng.below((k / 256) as u64) as usize;
            x[r * k + b + 7] = -400.0;
            x[r * k + b + 100] = 400.0;
        }
    }
    x
}

/// One comparison: the oracle's activation bytes and outputs against ours, bit for bit.
fn check(tag: &str, w: &[u8], k: usize, n: usize, x: &[f32]) -> usize {
    let t = x.len() / k;
    let dir = tmpdir(&format!("q4k-{tag}"));
    std::fs::write(dir.join("w.bin"), w).unwrap();
    std::fs::write(dir.join("x.f32"), f32_bytes(x)).unwrap();
    std::fs::write(dir.join("meta.json"), format!("{{\"k\": {k}, \"n\": {n}, \"t\": {t}}}")).unwrap();
    let res = oracle(&["q4k-gemm", dir.to_str().unwrap()]);
    let t4 = t - t % 4;
    assert_eq!(res["gemm_rows"].as_u64(), Some(t4 as u64), "{tag}: oracle's gemm rows");
    assert_eq!(res["chunked_same"].as_bool(), Some(true), "{tag}: ggml's 8-column calls differ from the full-width ones");

    let bpr = k / 256;
    let a = finetune::quant::quantize_rows_4x8(x, k);
    let row = |i: usize| &a[i * bpr..(i + 1) * bpr];
    let mut ours4 = Vec::new();
    for g in 0..t4 / 4 {
        to_ggml_x4([row(4 * g), row(4 * g + 1), row(4 * g + 2), row(4 * g + 3)], &mut ours4);
    }
    let mut ours1 = Vec::new();
    (t4..t).for_each(|i| row(i).iter().for_each(|b| b.to_ggml(&mut ours1)));
    for (name, ours) in [("act4.bin", &ours4), ("act1.bin", &ours1)] {
        let theirs = std::fs::read(dir.join(name)).unwrap();
        assert_eq!(ours.len(), theirs.len(), "{tag}: {name} size");
        let first = ours.iter().zip(&theirs).position(|(p, q)| p != q);
        assert!(first.is_none(), "{tag}: {name} differs from ggml at byte {first:?}");
    }

    let want = read_f32(&dir.join("y.f32"));
    let rb = w.len() / n;
    let mut scalar = vec![0f32; t * n];
    for o in 0..n {
        let wr = &w[o * rb..(o + 1) * rb];
        for g in 0..t4 / 4 {
            let v = gemm4_scalar(wr, [row(4 * g), row(4 * g + 1), row(4 * g + 2), row(4 * g + 3)]);
            (0..4).for_each(|m| scalar[(4 * g + m) * n + o] = v[m]);
        }
        (t4..t).for_each(|i| scalar[i * n + o] = gemv_scalar(wr, row(i)));
    }
    let mut fast = vec![0f32; t * n];
    matmul_q8(&QMatrix { ty: GgmlType::Q4_K, n_in: k, n_out: n, data: w }, x, &mut fast);
    for (what, got) in [("scalar kernels", &scalar), ("matmul_q8", &fast)] {
        let bad = (0..t * n).filter(|&i| got[i].to_bits() != want[i].to_bits()).count();
        let first = (0..t * n).find(|&i| got[i].to_bits() != want[i].to_bits());
        assert_eq!(
            bad,
            0,
            "{tag}: {what}: {bad} of {} outputs differ from ggml; first at {first:?}: {:?} vs {:?}",
            t * n,
            first.map(|i| got[i]),
            first.map(|i| want[i])
        );
    }
    t * n
}

#[test]
fn repacked_q4k_matmul_matches_ggml_on_gemma_tensors() {
    let f = GgufFile::open(gemma()).unwrap();
    let mut rng = Rng(0x4B4B);
    for name in ["blk.0.attn_output.weight", "blk.2.ffn_down.weight"] {
        let v = f.tensor(name).unwrap();
        assert_eq!(v.info.ty, GgmlType::Q4_K, "{name}");
        let (k, n) = (v.info.dims[0] as usize, v.info.dims[1] as usize);
        for t in [1usize, 3, 4, 9] {
            for (scale, outliers) in [(1.0f32, false), (0.05, true)] {
                let x = activations(&mut rng, t, k, scale, outliers);
                let m = check(&format!("{name}-{t}-{outliers}"), v.data, k, n, &x);
                eprintln!("{name}: t = {t}, outliers {outliers}: {m} outputs bit-identical to ggml");
            }
        }
    }
}

#[test]
fn repacked_q4k_matmul_matches_ggml_on_random_rows() {
    let mut rng = Rng(0x51D);
    let (k, n) = (768usize, 24usize);
    let mut w = vec![0u8; n * k / 256 * 144];
    rng.bytes(&mut w);
    for blk in w.chunks_exact_mut(144) {
        // d and dmin: positive normal f16 in about [2^-14, 2^-2]; everything else random bits.
        for o in [0, 2] {
            let h = 0x0400 + rng.below(0x3000 - 0x0400) as u16;
            blk[o..o + 2].copy_from_slice(&h.to_le_bytes());
        }
    }
    // 17 rows: a 16-row gemm block (ggml's widest path), and a remainder row.
    for t in [1usize, 2, 5, 17] {
        let x = activations(&mut rng, t, k, 2.0, t > 2);
        let m = check(&format!("random-{t}"), &w, k, n, &x);
        eprintln!("random Q4_K rows: t = {t}: {m} outputs bit-identical to ggml");
    }
}
