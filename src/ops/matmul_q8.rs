//! `y = x · Wᵀ` with llama.cpp's CPU numerics, for inference: each activation row is quantized
//! once to the weight type's `vec_dot_type` (Q8_0 / Q8_1 / Q8_K, [`crate::quant::q8`]), then
//! every (weight row, activation row) pair is an integer block dot product
//! ([`crate::quant::vecdot`]). The kernels come from the type's entry in the kernel table
//! ([`crate::quant::kernels`]). Weight types without an integer kernel fall back to the f32
//! [`matmul`].
//!
//! Work split: rayon over chunks of weight rows; a chunk walks all activation rows, so its
//! weight rows stay in L1 while the (small) quantized activations stream from L2.

use rayon::prelude::*;

use super::matmul::{matmul, QMatrix};
use super::send_ptr::SendPtr;
use crate::quant;
use crate::quant::kernels::{DotKernelN, Repacked};
use crate::quant::q8::Q8Rows;
use crate::quant::vecdot::DotKernel;

/// Whether [`matmul_q8`] takes the integer path for `w` (else it computes in f32).
pub fn has_q8_path(w: &QMatrix) -> bool {
    let k = quant::kernels(w.ty);
    match k.vec_dot_type {
        Some(act) => w.n_in % act.block_size() == 0 && k.vec_dot.is_some(),
        None => false,
    }
}

/// `y[t, o] = Σ_i x[t, i]·W[o, i]` with activations quantized as llama.cpp does; `y` is
/// overwritten.
pub fn matmul_q8(w: &QMatrix, x: &[f32], y: &mut [f32]) {
    let k = w.n_in;
    let t = x.len() / k.max(1);
    assert_eq!(x.len(), t * k, "x is not a whole number of rows");
    assert_eq!(y.len(), t * w.n_out, "y has the wrong size");
    if !has_q8_path(w) || t == 0 {
        return matmul(w, x, y);
    }
    let kern = quant::kernels(w.ty);
    if let (Some(Repacked { gemv, gemm4 }), 0) = (kern.repacked, w.n_out % 8) {
        // llama.cpp repacks these (CPU_REPACK): 4-row groups by its gemm, the t % 4 rest by gemv.
        let a = quant::quantize_rows_4x8(x, k);
        let r = |tt: usize| &a[tt * k / 256..(tt + 1) * k / 256];
        return run_n(w, t, y, |row, tt| gemv(row, r(tt)), |row, tt| gemm4(row, [r(tt), r(tt + 1), r(tt + 2), r(tt + 3)]));
    }
    let act = kern.vec_dot_type.expect("checked by has_q8_path");
    let one = kern.vec_dot.expect("checked by has_q8_path");
    let qa = quant::quantize_rows(act, x, k);
    let bpr = k / act.block_size();
    match (one, &qa) {
        (DotKernel::Q8(f), Q8Rows::Q8(a)) => {
            let r = |tt: usize| &a[tt * bpr..(tt + 1) * bpr];
            match (kern.vec_dot4, kern.vec_dot8) {
                (_, Some(DotKernelN::Q8(f8))) if t >= 8 => {
                    run_n(w, t, y, |row, tt| f(row, r(tt)), |row, tt| f8(row, std::array::from_fn(|k| r(tt + k))))
                }
                (Some(DotKernelN::Q8(f4)), _) if t > 2 => {
                    run_n(w, t, y, |row, tt| f(row, r(tt)), |row, tt| f4(row, [r(tt), r(tt + 1), r(tt + 2), r(tt + 3)]))
                }
                _ => run(w, t, y, |row, tt| f(row, r(tt))),
            }
        }
        (DotKernel::Q8K(f), Q8Rows::Q8K(a)) => {
            let r = |tt: usize| &a[tt * bpr..(tt + 1) * bpr];
            // llama.cpp's tiled K-quant matmul takes batches of 8 or more rows, in its own order.
            if let (Some(f1), true) = (kern.tiled, t >= 8) {
                return match kern.tiled8 {
                    Some(f8) => run_n(w, t, y, |row, tt| f1(row, [r(tt)])[0], |row, tt| f8(row, std::array::from_fn(|k| r(tt + k)))),
                    None => run(w, t, y, |row, tt| f1(row, [r(tt)])[0]),
                };
            }
            match (kern.vec_dot4, kern.vec_dot8) {
                (_, Some(DotKernelN::Q8K(f8))) if t >= 8 => {
                    run_n(w, t, y, |row, tt| f(row, r(tt)), |row, tt| f8(row, std::array::from_fn(|k| r(tt + k))))
                }
                (Some(DotKernelN::Q8K(f4)), _) if t > 2 => {
                    run_n(w, t, y, |row, tt| f(row, r(tt)), |row, tt| f4(row, [r(tt), r(tt + 1), r(tt + 2), r(tt + 3)]))
                }
                _ => run(w, t, y, |row, tt| f(row, r(tt))),
            }
        }
        _ => unreachable!("vec_dot_type and kernel disagree for {}", w.ty),
    }
}

fn run(w: &QMatrix, t: usize, y: &mut [f32], dot: impl Fn(&[u8], usize) -> f32 + Sync) {
    let n = w.n_out;
    let rb = w.row_bytes();
    let threads = rayon::current_num_threads().max(1);
    let chunk = if t <= 2 { n.div_ceil(8 * threads).clamp(8, 512) } else { 16 };
    let yp = SendPtr(y.as_mut_ptr());
    let yp = &yp;
    (0..n.div_ceil(chunk)).into_par_iter().for_each(|ci| {
        let (r0, r1) = (ci * chunk, ((ci + 1) * chunk).min(n));
        for tt in 0..t {
            for r in r0..r1 {
                let v = dot(&w.data[r * rb..(r + 1) * rb], tt);
                // SAFETY: chunks own disjoint rows r0..r1 of every output row; tt < t, r < n.
                unsafe { *yp.0.add(tt * n + r) = v };
            }
        }
    });
}

/// [`run`] with an `N`-activation-row kernel for whole groups of `N` rows (the remainder one at
/// a time); results are the same bits as [`run`].
fn run_n<const N: usize>(
    w: &QMatrix,
    t: usize,
    y: &mut [f32],
    dot: impl Fn(&[u8], usize) -> f32 + Sync,
    dotn: impl Fn(&[u8], usize) -> [f32; N] + Sync,
) {
    let n = w.n_out;
    let rb = w.row_bytes();
    let chunk = 16;
    let yp = SendPtr(y.as_mut_ptr());
    let yp = &yp;
    (0..n.div_ceil(chunk)).into_par_iter().for_each(|ci| {
        let (r0, r1) = (ci * chunk, ((ci + 1) * chunk).min(n));
        let mut tt = 0;
        while tt < t {
            for r in r0..r1 {
                let row = &w.data[r * rb..(r + 1) * rb];
                if tt + N <= t {
                    let v = dotn(row, tt);
                    for (k, &vk) in v.iter().enumerate() {
                        // SAFETY: chunks own disjoint rows r0..r1; tt + k < t, r < n.
                        unsafe { *yp.0.add((tt + k) * n + r) = vk };
                    }
                } else {
                    for k in tt..t {
                        // SAFETY: as above.
                        unsafe { *yp.0.add(k * n + r) = dot(row, k) };
                    }
                }
            }
            tt += N;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::GgmlType;

    #[test]
    fn q8_matmul_is_close_to_f32_for_every_kernel_type() {
        let mut seed = 7u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K] {
            // t = 11: a group of eight (or two of four) rows and a three-row remainder.
            let (k, n, t) = (512usize, 37usize, 11usize);
            let wf: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
            let mut wb = vec![0u8; k * n / ty.block_size() * ty.type_size()];
            quant::encode(ty, &wf, &mut wb).unwrap();
            let qm = QMatrix { ty, n_in: k, n_out: n, data: &wb };
            let x: Vec<f32> = (0..k * t).map(|_| rnd()).collect();
            let (mut a, mut b) = (vec![0f32; t * n], vec![0f32; t * n]);
            matmul(&qm, &x, &mut a);
            matmul_q8(&qm, &x, &mut b);
            // Row by row (the one-token path) gives the same bits as the batched call, except for
            // the types llama.cpp itself sums in another order for batches of 8+ rows (Q6_K).
            let tiled = quant::scalar_kernels(ty).tiled_scalar;
            for tt in 0..t {
                let mut one = vec![0f32; n];
                matmul_q8(&qm, &x[tt * k..(tt + 1) * k], &mut one);
                let same = one.iter().zip(&b[tt * n..(tt + 1) * n]).all(|(p, q)| p.to_bits() == q.to_bits());
                assert!(same || tiled.is_some(), "{ty}: row {tt} differs batched");
                if let Some(g) = tiled {
                    // The batch equals the tiled-order reference instead.
                    let Q8Rows::Q8K(qa) = quant::quantize_rows(quant::kernels(ty).vec_dot_type.unwrap(), &x[tt * k..(tt + 1) * k], k)
                    else {
                        unreachable!()
                    };
                    for (o, &got) in b[tt * n..(tt + 1) * n].iter().enumerate() {
                        let want = g(&wb[o * qm.row_bytes()..(o + 1) * qm.row_bytes()], &qa);
                        assert_eq!(got.to_bits(), want.to_bits(), "{ty}: batched row {tt} col {o} is not the tiled order");
                    }
                }
            }
            let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
            let err = a.iter().zip(&b).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
            // Q8 activations carry ≈ 0.4 % relative error per element; sums of 512 products
            // keep the error a small fraction of the output scale, and above zero.
            assert!(err > 0.0 && err < 0.02 * scale, "{ty}: max |Δ| {err} at scale {scale}");
        }
    }
}
