//! llama.cpp's matmul numerics against ggml itself (its CPU backend through ctypes): activation
//! rows quantized to each weight type's `vec_dot_type` must be byte-identical to ggml's
//! `from_float`, and the integer dot products must equal ggml's `vec_dot` bit for bit (scalar
//! references and the AVX2 kernels), except Q4_K, which llama.cpp runs through its repacked
//! kernels instead (tests/q4k_ggml.rs) and which is compared up to f32 summation order here.
mod common;

use common::{f32_bytes, oracle, read_f32, tmpdir, Rng};
use finetune::quant::q8::Q8Rows;
use finetune::quant::vecdot::DotKernel;
use finetune::quant::{self, GgmlType};

const TYPES: [GgmlType; 7] =
    [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K];

#[test]
fn activation_quantization_and_dots_match_ggml_cpu() {
    let (k, rows, acts) = (512usize, 7usize, 4usize);
    let dir = tmpdir("q8-dot");
    let mut rng = Rng(0x0D07);
    // Activation rows of different magnitudes, one with exact halves (rounding ties) and zeros.
    let mut x: Vec<f32> = (0..k * acts).map(|i| rng.normal() * [0.01f32, 1.0, 30.0, 3.0][i / k]).collect();
    for (j, v) in x[3 * k..3 * k + 64].iter_mut().enumerate() {
        *v = if j < 32 { 0.0 } else { (j as f32 - 48.0) * 0.25 };
    }
    std::fs::write(dir.join("x.f32"), f32_bytes(&x)).unwrap();
    let mut weights = Vec::new();
    for ty in TYPES {
        let wf: Vec<f32> = (0..k * rows).map(|_| rng.normal() * 0.05).collect();
        let mut wb = vec![0u8; k * rows / ty.block_size() * ty.type_size()];
        quant::encode(ty, &wf, &mut wb).unwrap();
        std::fs::write(dir.join(format!("w.{ty}.bin")), &wb).unwrap();
        std::fs::write(dir.join(format!("k.{ty}")), k.to_string()).unwrap();
        weights.push((ty, wb));
    }
    let res = oracle(&["q8-dot", dir.to_str().unwrap()]);
    for (ty, wb) in &weights {
        let act = quant::scalar_kernels(*ty).vec_dot_type.unwrap();
        assert_eq!(res[ty.name()]["vec_dot_type"].as_str().unwrap(), act.name(), "{ty}: vec_dot_type");
        let qa = quant::quantize_rows(act, &x, k);
        let mut ours = Vec::new();
        match &qa {
            Q8Rows::Q8(b) if act == GgmlType::Q8_0 => b.iter().for_each(|b| b.to_ggml_q8_0(&mut ours)),
            Q8Rows::Q8(b) => b.iter().for_each(|b| b.to_ggml_q8_1(&mut ours)),
            Q8Rows::Q8K(b) => b.iter().for_each(|b| b.to_ggml(&mut ours)),
        }
        let theirs = std::fs::read(dir.join(format!("act.{ty}.bin"))).unwrap();
        assert_eq!(ours.len(), theirs.len(), "{ty}: activation bytes");
        let first = ours.iter().zip(&theirs).position(|(a, b)| a != b);
        assert!(first.is_none(), "{ty}: activation ({act}) differs from ggml at byte {first:?}");
        let want = read_f32(&dir.join(format!("dot.{ty}.f32")));
        let rb = wb.len() / rows;
        let bpr = k / act.block_size();
        let mut worst = 0f64;
        for a in 0..acts {
            for r in 0..rows {
                let row = &wb[r * rb..(r + 1) * rb];
                let dot = |kern: DotKernel| match (kern, &qa) {
                    (DotKernel::Q8(f), Q8Rows::Q8(b)) => f(row, &b[a * bpr..(a + 1) * bpr]),
                    (DotKernel::Q8K(f), Q8Rows::Q8K(b)) => f(row, &b[a * bpr..(a + 1) * bpr]),
                    _ => unreachable!(),
                };
                let got = dot(quant::kernels(*ty).vec_dot.unwrap());
                let scalar = dot(quant::scalar_kernels(*ty).vec_dot_scalar.unwrap());
                let w = want[a * rows + r];
                if *ty != GgmlType::Q4_K {
                    assert_eq!(got.to_bits(), w.to_bits(), "{ty} act {a} row {r}: ours {got} vs ggml {w} (bit for bit)");
                    assert_eq!(scalar.to_bits(), w.to_bits(), "{ty} act {a} row {r}: scalar {scalar} vs ggml {w} (bit for bit)");
                }
                let rel = (got - w).abs() as f64
                    / (w.abs() as f64).max(1e-3 * (x[a * k..(a + 1) * k].iter().fold(0f32, |m, v| m.max(v.abs())) as f64));
                worst = worst.max(rel);
                assert!(rel < 5e-5, "{ty} act {a} row {r}: ours {got} vs ggml {w}");
            }
        }
        eprintln!("{ty}·{act}: activations byte-identical, max relative dot difference {worst:.1e}");
    }
}
