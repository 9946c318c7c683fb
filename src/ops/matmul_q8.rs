//! `y = x · Wᵀ` with llama.cpp's CPU numerics, for inference: each activation row is quantized
//! once to the weight type's `vec_dot_type` (Q8_0 / Q8_1 / Q8_K, [`crate::quant::q8`]), then
//! every (weight row, activation row) pair is an integer block dot product
//! ([`crate::quant::vecdot`]). The kernels come from the type's entry in the kernel table
//! ([`crate::quant::kernels`]). Weight types without an integer kernel fall back to the f32
//! [`matmul`].
//!
//! Work split: rayon over chunks of weight rows; a chunk walks all activation rows, so its
//! weight rows stay in L1 while the (small) quantized activations stream from L2.
//! [`matmul_q8_many`] splits the chunks of several matrices in one parallel region.

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
    matmul_q8_many(&[*w], x, &mut [y]);
}

/// [`matmul_q8`] of several matrices on the same `x` (a block's q, k, v or gate, up) in ONE
/// parallel region: the row chunks of all of them are split over the threads together, so a
/// one-token forward pays one fork/join instead of one per matrix. Each output element is the
/// same kernel call as in [`matmul_q8`], so the bits are the same.
pub fn matmul_q8_many(ws: &[QMatrix], x: &[f32], ys: &mut [&mut [f32]]) {
    assert_eq!(ws.len(), ys.len(), "one output per matrix");
    let mut quantized = Vec::new();
    for (w, y) in ws.iter().zip(ys.iter_mut()) {
        let k = w.n_in;
        let t = x.len() / k.max(1);
        assert_eq!(x.len(), t * k, "x is not a whole number of rows");
        assert_eq!(y.len(), t * w.n_out, "y has the wrong size");
        if !has_q8_path(w) || t == 0 {
            matmul(w, x, y);
        } else {
            quantized.push((w, &mut **y));
        }
    }
    let acts: Vec<Acts> = quantized.iter().map(|(w, _)| quantize_for(w, x)).collect();
    let jobs: Vec<Job> = quantized.into_iter().zip(&acts).map(|((w, y), a)| job(w, a, x.len() / w.n_in, y)).collect();
    let tasks: Vec<(usize, usize, usize)> = jobs
        .iter()
        .enumerate()
        .flat_map(|(j, job)| (0..job.n.div_ceil(job.chunk)).map(move |c| (j, c * job.chunk, ((c + 1) * job.chunk).min(job.n))))
        .collect();
    tasks.into_par_iter().for_each(|(j, r0, r1)| (jobs[j].rows)(r0, r1));
}

/// A matrix's activations, quantized for its kernels.
enum Acts {
    /// llama.cpp's 4-row interleaved Q8_K (for repacked weights).
    Repacked(Vec<quant::q8::BlockQ8K>),
    /// One row of the weight's `vec_dot_type` per activation row.
    Rows(Q8Rows),
}

fn quantize_for(w: &QMatrix, x: &[f32]) -> Acts {
    let kern = quant::kernels(w.ty);
    if let (Some(_), 0) = (kern.repacked, w.n_out % 8) {
        return Acts::Repacked(quant::quantize_rows_4x8(x, w.n_in));
    }
    Acts::Rows(quant::quantize_rows(kern.vec_dot_type.expect("checked by has_q8_path"), x, w.n_in))
}

/// One matrix's work: `rows(r0, r1)` writes output columns `r0..r1` of every token row.
struct Job<'a> {
    n: usize,
    chunk: usize,
    rows: Box<dyn Fn(usize, usize) + Sync + 'a>,
}

/// The kernels llama.cpp runs for `w` on `t` activation rows `a`, writing into `y`.
fn job<'a>(w: &QMatrix<'a>, a: &'a Acts, t: usize, y: &'a mut [f32]) -> Job<'a> {
    let k = w.n_in;
    let kern = quant::kernels(w.ty);
    let qa = match (a, kern.repacked) {
        (Acts::Repacked(a), Some(Repacked { gemv, gemm4 })) => {
            // llama.cpp repacks these (CPU_REPACK): 4-row groups by its gemm, the t % 4 rest by gemv.
            let r = move |tt: usize| &a[tt * k / 256..(tt + 1) * k / 256];
            let (one, four) =
                (move |row: &[u8], tt| gemv(row, r(tt)), move |row: &[u8], tt| gemm4(row, [r(tt), r(tt + 1), r(tt + 2), r(tt + 3)]));
            if let Some(g2) = kern.repacked2x4 {
                return many2(w, t, y, one, four, move |rows, tt| g2(rows, [r(tt), r(tt + 1), r(tt + 2), r(tt + 3)]));
            }
            return many(w, t, y, one, four);
        }
        (Acts::Rows(qa), _) => qa,
        (Acts::Repacked(_), None) => unreachable!("repacked activations for a type without a repacked kernel"),
    };
    let act = kern.vec_dot_type.expect("checked by has_q8_path");
    let one = kern.vec_dot.expect("checked by has_q8_path");
    let bpr = k / act.block_size();
    match (one, qa) {
        (DotKernel::Q8(f), Q8Rows::Q8(a)) => {
            // Q4_0 / Q5_0 / Q8_0 batches: each task decodes its weight rows once and walks
            // register tiles (tinyBLAS's shape; the bits of the one-row kernel `f`).
            if let (Some(g), true) = (quant::gemm_q0::gemm_q0(w.ty), t >= 8) {
                let (n, rb, data, yp) = (w.n_out, w.row_bytes(), w.data, SendPtr(y.as_mut_ptr()));
                let chunk = g.chunk(n, k, rayon::current_num_threads());
                let rows = move |r0: usize, r1: usize| {
                    // The whole SendPtr, not its raw field.
                    let yp = &yp;
                    // SAFETY: tasks own disjoint rows r0..r1 (r1 ≤ n) of every output row, which
                    // are `yp + r0 + tt·n` for i < r1 − r0, tt < t; `y` is borrowed for the job.
                    unsafe { g.rows_raw(&data[r0 * rb..r1 * rb], a, t, yp.0.add(r0), n) }
                };
                return Job { n, chunk, rows: Box::new(rows) };
            }
            let r = move |tt: usize| &a[tt * bpr..(tt + 1) * bpr];
            match (kern.vec_dot4, kern.vec_dot8, kern.rows4) {
                (_, Some(DotKernelN::Q8(f8)), _) if t >= 8 => {
                    many(w, t, y, move |row, tt| f(row, r(tt)), move |row, tt| f8(row, std::array::from_fn(|k| r(tt + k))))
                }
                (Some(DotKernelN::Q8(f4)), _, _) if t > 2 => {
                    many(w, t, y, move |row, tt| f(row, r(tt)), move |row, tt| f4(row, [r(tt), r(tt + 1), r(tt + 2), r(tt + 3)]))
                }
                (_, _, Some(f4w)) => single_rows4(w, t, y, move |row, tt| f(row, r(tt)), move |rows, tt| f4w(rows, r(tt))),
                _ => single(w, t, y, move |row, tt| f(row, r(tt))),
            }
        }
        (DotKernel::Q8K(f), Q8Rows::Q8K(a)) => {
            let r = move |tt: usize| &a[tt * bpr..(tt + 1) * bpr];
            // llama.cpp's tiled K-quant matmul takes batches of 8 or more rows, in its own order.
            if let (Some(f1), true) = (kern.tiled, t >= 8) {
                return match (kern.tiled8, kern.tiled2x8) {
                    (Some(f8), Some(f2)) => many2(
                        w,
                        t,
                        y,
                        move |row, tt| f1(row, [r(tt)])[0],
                        move |row, tt| f8(row, std::array::from_fn(|k| r(tt + k))),
                        move |rows, tt| f2(rows, std::array::from_fn(|k| r(tt + k))),
                    ),
                    (Some(f8), None) => {
                        many(w, t, y, move |row, tt| f1(row, [r(tt)])[0], move |row, tt| f8(row, std::array::from_fn(|k| r(tt + k))))
                    }
                    (None, _) => single(w, t, y, move |row, tt| f1(row, [r(tt)])[0]),
                };
            }
            match (kern.vec_dot4, kern.vec_dot8) {
                (_, Some(DotKernelN::Q8K(f8))) if t >= 8 => {
                    many(w, t, y, move |row, tt| f(row, r(tt)), move |row, tt| f8(row, std::array::from_fn(|k| r(tt + k))))
                }
                (Some(DotKernelN::Q8K(f4)), _) if t > 2 => {
                    many(w, t, y, move |row, tt| f(row, r(tt)), move |row, tt| f4(row, [r(tt), r(tt + 1), r(tt + 2), r(tt + 3)]))
                }
                _ => single(w, t, y, move |row, tt| f(row, r(tt))),
            }
        }
        _ => unreachable!("vec_dot_type and kernel disagree for {}", w.ty),
    }
}

/// One dot per (weight row, activation row).
fn single<'a>(w: &QMatrix<'a>, t: usize, y: &'a mut [f32], dot: impl Fn(&[u8], usize) -> f32 + Sync + 'a) -> Job<'a> {
    let (n, rb, data) = (w.n_out, w.row_bytes(), w.data);
    let threads = rayon::current_num_threads().max(1);
    let chunk = if t <= 2 { n.div_ceil(8 * threads).clamp(8, 512) } else { 16 };
    let yp = SendPtr(y.as_mut_ptr());
    let rows = move |r0: usize, r1: usize| {
        let yp = &yp; // the whole SendPtr, not its raw field
        for tt in 0..t {
            for r in r0..r1 {
                prefetch(data, (r + 1) * rb, rb);
                let v = dot(&data[r * rb..(r + 1) * rb], tt);
                // SAFETY: tasks own disjoint rows r0..r1 of every output row; tt < t, r < n; `y`
                // is borrowed for the job's lifetime.
                unsafe { *yp.0.add(tt * n + r) = v };
            }
        }
    };
    Job { n, chunk, rows: Box::new(rows) }
}

/// Hint the CPU to bring `data[at..at + len]` (clipped to `data`) into L1: decoding streams
/// each weight row once, and a row fetched while the previous one is summed hides the memory
/// latency the hardware prefetcher leaves (a hint: no effect on results).
#[inline(always)]
fn prefetch(data: &[u8], at: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for line in (at..(at + len).min(data.len())).step_by(64) {
        // SAFETY: `line < data.len()`, so the address is inside `data`; a prefetch reads nothing
        // architecturally and cannot fault.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(data.as_ptr().add(line) as *const i8) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (data, at, len);
}

/// [`single`] with a kernel of four consecutive weight rows against one activation row for the
/// whole groups of four rows of a chunk (the rest one at a time); the same bits as [`single`].
fn single_rows4<'a>(
    w: &QMatrix<'a>,
    t: usize,
    y: &'a mut [f32],
    dot: impl Fn(&[u8], usize) -> f32 + Sync + 'a,
    dot4: impl Fn(&[u8], usize) -> [f32; 4] + Sync + 'a,
) -> Job<'a> {
    let (n, rb, data) = (w.n_out, w.row_bytes(), w.data);
    let threads = rayon::current_num_threads().max(1);
    let chunk = n.div_ceil(8 * threads).clamp(8, 512).next_multiple_of(4);
    let yp = SendPtr(y.as_mut_ptr());
    let rows = move |r0: usize, r1: usize| {
        let yp = &yp; // the whole SendPtr, not its raw field
        for tt in 0..t {
            let mut r = r0;
            while r + 4 <= r1 {
                let v = dot4(&data[r * rb..(r + 4) * rb], tt);
                for (k, &vk) in v.iter().enumerate() {
                    // SAFETY: tasks own disjoint rows r0..r1 of every output row; tt < t,
                    // r + k < r1 ≤ n; `y` is borrowed for the job's lifetime.
                    unsafe { *yp.0.add(tt * n + r + k) = vk };
                }
                r += 4;
            }
            for r in r..r1 {
                // SAFETY: as above.
                unsafe { *yp.0.add(tt * n + r) = dot(&data[r * rb..(r + 1) * rb], tt) };
            }
        }
    };
    Job { n, chunk, rows: Box::new(rows) }
}

/// [`single`] with an `N`-activation-row kernel for whole groups of `N` rows (the remainder one
/// at a time); results are the same bits as [`single`].
fn many<'a, const N: usize>(
    w: &QMatrix<'a>,
    t: usize,
    y: &'a mut [f32],
    dot: impl Fn(&[u8], usize) -> f32 + Sync + 'a,
    dotn: impl Fn(&[u8], usize) -> [f32; N] + Sync + 'a,
) -> Job<'a> {
    let (n, rb, data) = (w.n_out, w.row_bytes(), w.data);
    let yp = SendPtr(y.as_mut_ptr());
    let rows = move |r0: usize, r1: usize| {
        let yp = &yp; // the whole SendPtr, not its raw field
        let mut tt = 0;
        while tt < t {
            for r in r0..r1 {
                let row = &data[r * rb..(r + 1) * rb];
                if tt + N <= t {
                    let v = dotn(row, tt);
                    for (k, &vk) in v.iter().enumerate() {
                        // SAFETY: tasks own disjoint rows r0..r1; tt + k < t, r < n.
                        unsafe { *yp.0.add((tt + k) * n + r) = vk };
                    }
                } else {
                    prefetch(data, (r + 1) * rb, rb);
                    for k in tt..t {
                        // SAFETY: as above.
                        unsafe { *yp.0.add(k * n + r) = dot(row, k) };
                    }
                }
            }
            tt += N;
        }
    };
    Job { n, chunk: 16, rows: Box::new(rows) }
}

/// [`many`] with a kernel of two weight rows × `N` activation rows (`i8mm`'s tile shape) for
/// the pairs of weight rows of a chunk (an odd last row by `dotn`); the same bits as [`many`].
fn many2<'a, const N: usize>(
    w: &QMatrix<'a>,
    t: usize,
    y: &'a mut [f32],
    dot: impl Fn(&[u8], usize) -> f32 + Sync + 'a,
    dotn: impl Fn(&[u8], usize) -> [f32; N] + Sync + 'a,
    dot2n: impl Fn([&[u8]; 2], usize) -> [[f32; N]; 2] + Sync + 'a,
) -> Job<'a> {
    let (n, rb, data) = (w.n_out, w.row_bytes(), w.data);
    let yp = SendPtr(y.as_mut_ptr());
    let rows = move |r0: usize, r1: usize| {
        let yp = &yp; // the whole SendPtr, not its raw field
        let row = |r: usize| &data[r * rb..(r + 1) * rb];
        let put = |tt: usize, r: usize, v: f32| {
            debug_assert!(tt < t && (r0..r1).contains(&r));
            // SAFETY: called with token rows tt < t and r in this task's rows r0..r1 (r1 ≤ n);
            // tasks own disjoint rows; `y` is borrowed for the job's lifetime.
            unsafe { *yp.0.add(tt * n + r) = v }
        };
        let mut tt = 0;
        while tt + N <= t {
            let mut r = r0;
            while r + 2 <= r1 {
                let v = dot2n([row(r), row(r + 1)], tt);
                for (k, (&v0, &v1)) in v[0].iter().zip(&v[1]).enumerate() {
                    put(tt + k, r, v0);
                    put(tt + k, r + 1, v1);
                }
                r += 2;
            }
            if r < r1 {
                dotn(row(r), tt).iter().enumerate().for_each(|(k, &v)| put(tt + k, r, v));
            }
            tt += N;
        }
        for k in tt..t {
            (r0..r1).for_each(|r| put(k, r, dot(row(r), k)));
        }
    };
    Job { n, chunk: 16, rows: Box::new(rows) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::GgmlType;

    #[test]
    fn fused_matmuls_give_the_bits_of_separate_calls() {
        let mut seed = 11u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        // Mixed types and widths in one call (Q4_K with n_out % 8 == 0 takes the repacked
        // kernels, F32 has no integer path), as a block's q, k, v can be.
        let k = 512usize;
        let shapes = [(GgmlType::Q4_1, 40usize), (GgmlType::Q4_K, 24), (GgmlType::Q6_K, 37), (GgmlType::Q8_0, 9), (GgmlType::F32, 5)];
        let data: Vec<Vec<u8>> = shapes
            .iter()
            .map(|&(ty, n)| {
                let wf: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
                let mut wb = vec![0u8; k * n / ty.block_size() * ty.type_size()];
                quant::encode(ty, &wf, &mut wb).unwrap();
                wb
            })
            .collect();
        let ws: Vec<QMatrix> = shapes.iter().zip(&data).map(|(&(ty, n), d)| QMatrix { ty, n_in: k, n_out: n, data: d }).collect();
        for t in [1usize, 2, 3, 8, 13] {
            let x: Vec<f32> = (0..k * t).map(|_| rnd()).collect();
            let mut fused: Vec<Vec<f32>> = ws.iter().map(|w| vec![f32::NAN; t * w.n_out]).collect();
            let mut ys: Vec<&mut [f32]> = fused.iter_mut().map(|y| y.as_mut_slice()).collect();
            matmul_q8_many(&ws, &x, &mut ys);
            for (w, got) in ws.iter().zip(&fused) {
                let mut want = vec![0f32; t * w.n_out];
                matmul_q8(w, &x, &mut want);
                let same = got.iter().zip(&want).all(|(p, q)| p.to_bits() == q.to_bits());
                assert!(same, "{}: t = {t}: fused output differs from the separate call", w.ty);
            }
        }
    }

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
