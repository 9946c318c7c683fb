//! The tiled Q4_0 / Q5_0 / Q8_0 GEMM (`quant::gemm_q0`) at every level this CPU has gives the
//! bits of the scalar one-row kernel (`vecdot`, llama.cpp's `ggml_vec_dot_<w>_q8_0` order, which
//! tests/forward.rs ties to llama.cpp) for every (weight row, activation row), on odd shapes,
//! tile remainders and random weight bytes (Q8_0 codes of −128 included); and `matmul_q8`,
//! which takes it from 8 activation rows, equals the one-row path on 1–3 threads.

mod common;

use common::int8::{bits, in_pool, normals};
use common::random_blocks::random_blocks;
use common::Rng;
use finetune::ops::matmul::QMatrix;
use finetune::ops::matmul_q8::matmul_q8;
use finetune::quant::gemm_q0::gemm_q0_for;
use finetune::quant::q8::Q8Rows;
use finetune::quant::vecdot::DotKernel;
use finetune::quant::{self, GgmlType, Isa};

const TYPES: [GgmlType; 3] = [GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q8_0];

/// Random weight bytes with moderate f16 scales (the codes are every byte value).
fn weights(ty: GgmlType, rows: usize, k: usize, rng: &mut Rng) -> Vec<u8> {
    let mut w = random_blocks(ty, rows * k / 32, rng);
    for blk in w.chunks_exact_mut(ty.type_size()) {
        let d = half::f16::from_f32(rng.normal() * 0.01);
        blk[..2].copy_from_slice(&d.to_le_bytes());
    }
    w
}

fn q8_rows(x: &[f32], k: usize) -> Vec<quant::q8::BlockQ8> {
    match quant::quantize_rows(GgmlType::Q8_0, x, k) {
        Q8Rows::Q8(a) => a,
        Q8Rows::Q8K(_) => unreachable!("Q8_0 activations"),
    }
}

#[test]
fn every_level_gives_the_one_row_kernel_bits() {
    let mut rng = Rng(17);
    let levels: Vec<Isa> = [Isa::Scalar, Isa::Avx2, Isa::Avx2Vnni].into_iter().filter(|i| i.supported()).collect();
    let mut checked = 0usize;
    for ty in TYPES {
        let DotKernel::Q8(one) = quant::scalar_kernels(ty).vec_dot.expect("a one-row kernel") else { panic!("{ty}: not a Q8 kernel") };
        for (rows, k, t) in [(1usize, 32usize, 8usize), (13, 96, 9), (7, 640, 31), (21, 160, 70), (9, 64, 1), (4, 640, 12)] {
            let w = weights(ty, rows, k, &mut rng);
            let x: Vec<f32> = normals(t * k, &mut rng).iter().map(|v| v * if rng.below(8) == 0 { 40.0 } else { 1.0 }).collect();
            let a = q8_rows(&x, k);
            let rb = w.len() / rows;
            let want: Vec<f32> = (0..t * rows)
                .map(|o| one(&w[(o % rows) * rb..(o % rows + 1) * rb], &a[(o / rows) * k / 32..(o / rows + 1) * k / 32]))
                .collect();
            assert!(want.iter().any(|v| *v != 0.0), "{ty}: degenerate test data");
            for &isa in &levels {
                let g = gemm_q0_for(isa, ty).expect("a GEMM for the Q0 types");
                let got = g.rows(&w, &a, t);
                assert_eq!(bits(&got), bits(&want), "{ty} {isa:?}: rows {rows}, k {k}, t {t}");
                checked += 1;
            }
        }
    }
    assert!(checked >= TYPES.len() * 6, "every type and shape ran on at least the scalar level");
    assert!(gemm_q0_for(Isa::Scalar, GgmlType::Q4_K).is_none(), "only the symmetric 32-element formats");
}

#[test]
fn matmul_q8_batches_equal_the_one_row_path_on_1_to_3_threads() {
    let mut rng = Rng(5);
    for ty in TYPES {
        for (n, k) in [(37usize, 640usize), (130, 96)] {
            let w = weights(ty, n, k, &mut rng);
            let qm = QMatrix { ty, n_in: k, n_out: n, data: &w };
            for t in [8usize, 13, 70] {
                let x = normals(t * k, &mut rng);
                let mut want = vec![0f32; t * n];
                for tt in 0..t {
                    matmul_q8(&qm, &x[tt * k..(tt + 1) * k], &mut want[tt * n..(tt + 1) * n]);
                }
                for threads in 1..=3 {
                    let mut got = vec![f32::NAN; t * n];
                    in_pool(threads, || matmul_q8(&qm, &x, &mut got));
                    assert_eq!(bits(&got), bits(&want), "{ty}: n {n}, k {k}, t {t}, {threads} threads");
                }
            }
        }
    }
}
