//! `y = x · Wᵀ` with llama.cpp's CPU numerics, for inference: each activation row is quantized
//! once to the weight type's `vec_dot_type` (Q8_0 / Q8_1 / Q8_K, [`crate::quant::q8`]), then
//! every (weight row, activation row) pair is an integer block dot product
//! ([`crate::quant::vecdot`]). Weight types without an integer kernel fall back to the f32
//! [`matmul`].
//!
//! Work split: rayon over chunks of weight rows; a chunk walks all activation rows, so its
//! weight rows stay in L1 while the (small) quantized activations stream from L2.

use rayon::prelude::*;

use super::matmul::{matmul, QMatrix};
use super::send_ptr::SendPtr;
use crate::quant::q4k_ggml;
use crate::quant::q8::{self, Q8Rows};
use crate::quant::vecdot::{self, DotKernel};

/// Whether [`matmul_q8`] takes the integer path for `w` (else it computes in f32).
pub fn has_q8_path(w: &QMatrix) -> bool {
    match q8::vec_dot_type(w.ty) {
        Some(act) => w.n_in % act.block_size() == 0 && vecdot::kernel(w.ty).is_some(),
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
    if w.ty == crate::quant::GgmlType::Q4_K && w.n_out % 8 == 0 {
        // llama.cpp repacks these (CPU_REPACK): 4-row groups by its gemm, the t % 4 rest by gemv.
        let a = q4k_ggml::quantize_rows(x, k);
        let (r, (gemv, gemm4)) = (|tt: usize| &a[tt * k / 256..(tt + 1) * k / 256], q4k_ggml::kernels());
        return run_n(w, t, y, |row, tt| gemv(row, r(tt)), |row, tt| gemm4(row, [r(tt), r(tt + 1), r(tt + 2), r(tt + 3)]));
    }
    let act = q8::vec_dot_type(w.ty).expect("checked by has_q8_path");
    let kern = vecdot::kernel(w.ty).expect("checked by has_q8_path");
    let qa = q8::quantize_rows(act, x, k);
    let bpr = k / act.block_size();
    let four = if crate::quant::simd_enabled() { crate::quant::vecdot_avx2::kernel4(w.ty) } else { None };
    match (kern, &qa) {
        (DotKernel::Q8(f), Q8Rows::Q8(a)) => {
            let r = |tt: usize| &a[tt * bpr..(tt + 1) * bpr];
            let eight = if crate::quant::simd_enabled() { crate::quant::vecdot_avx2::kernel8(w.ty) } else { None };
            match (four, eight) {
                (_, Some(f8)) if t >= 8 => run_n(w, t, y, |row, tt| f(row, r(tt)), |row, tt| f8(row, std::array::from_fn(|k| r(tt + k)))),
                (Some(f4), _) if t > 2 => run_n(w, t, y, |row, tt| f(row, r(tt)), |row, tt| f4(row, [r(tt), r(tt + 1), r(tt + 2), r(tt + 3)])),
                _ => run(w, t, y, |row, tt| f(row, r(tt))),
            }
        }
        (DotKernel::Q8K(f), Q8Rows::Q8K(a)) => {
            let r = |tt: usize| &a[tt * bpr..(tt + 1) * bpr];
            let simd = crate::quant::simd_enabled();
            // llama.cpp's tiled K-quant matmul takes batches of 8 or more rows, in its own order.
            if t >= 8 {
                if let Some(g) = vecdot::kernel_tiled_scalar(w.ty) {
                    use crate::quant::vecdot_avx2_k4::kernel_tiled;
                    return match (kernel_tiled::<1>(w.ty).filter(|_| simd), kernel_tiled::<8>(w.ty).filter(|_| simd)) {
                        (Some(f1), Some(f8)) => run_n(w, t, y, |row, tt| f1(row, [r(tt)])[0], |row, tt| f8(row, std::array::from_fn(|k| r(tt + k)))),
                        _ => run(w, t, y, |row, tt| g(row, r(tt))),
                    };
                }
            }
            let four = if simd { crate::quant::vecdot_avx2_k4::kernel4k(w.ty) } else { None };
            let eight = if simd { crate::quant::vecdot_avx2_k4::kernel8k(w.ty) } else { None };
            match (four, eight) {
                (_, Some(f8)) if t >= 8 => run_n(w, t, y, |row, tt| f(row, r(tt)), |row, tt| f8(row, std::array::from_fn(|k| r(tt + k)))),
                (Some(f4), _) if t > 2 => run_n(w, t, y, |row, tt| f(row, r(tt)), |row, tt| f4(row, [r(tt), r(tt + 1), r(tt + 2), r(tt + 3)])),
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
fn run_n<const N: usize>(w: &QMatrix, t: usize, y: &mut [f32], dot: impl Fn(&[u8], usize) -> f32 + Sync, dotn: impl Fn(&[u8], usize) -> [f32; N] + Sync) {
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
    use crate::quant::{self, GgmlType};

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
            let tiled = crate::quant::vecdot::kernel_tiled_scalar(ty);
            for tt in 0..t {
                let mut one = vec![0f32; n];
                matmul_q8(&qm, &x[tt * k..(tt + 1) * k], &mut one);
                let same = one.iter().zip(&b[tt * n..(tt + 1) * n]).all(|(p, q)| p.to_bits() == q.to_bits());
                assert!(same || tiled.is_some(), "{ty}: row {tt} differs batched");
                if let Some(g) = tiled {
                    // The batch equals the tiled-order reference instead.
                    let Q8Rows::Q8K(qa) = q8::quantize_rows(q8::vec_dot_type(ty).unwrap(), &x[tt * k..(tt + 1) * k], k) else { unreachable!() };
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
