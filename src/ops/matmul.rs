//! `y = x · Wᵀ` with W a frozen quantized weight `[n_out, n_in]` (GGUF ne = [n_in, n_out]),
//! read in place from the memory map.
//!
//! Many tokens: W is decoded a panel of rows at a time (≈192 KiB of f32, cache-resident),
//! packed as 16-row slivers laid out `[k][16]`, and fed to a 6×16 register-blocked micro-kernel
//! (AVX2+FMA, runtime-detected; a scalar twin otherwise). Panels run in parallel (rayon).
//! One or two tokens: each row is decoded and dotted with x directly.
//! Never more than one panel per thread is dequantized at a time.

use rayon::prelude::*;

use crate::quant::{self, GgmlType};

/// A quantized (or float) matrix view: `n_out` rows of `n_in` elements.
#[derive(Clone, Copy, Debug)]
pub struct QMatrix<'a> {
    /// Element type of the blocks.
    pub ty: GgmlType,
    /// Row length (ne0).
    pub n_in: usize,
    /// Number of rows (ne1).
    pub n_out: usize,
    /// Raw blocks, row-major.
    pub data: &'a [u8],
}

impl QMatrix<'_> {
    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.n_in / self.ty.block_size() * self.ty.type_size()
    }
    /// Raw bytes of rows `r0..r1`.
    pub fn rows(&self, r0: usize, r1: usize) -> &[u8] {
        let rb = self.row_bytes();
        &self.data[r0 * rb..r1 * rb]
    }
    /// Decode rows `r0..r1` into `out` (`(r1−r0)·n_in` values).
    pub fn decode_rows(&self, r0: usize, r1: usize, out: &mut [f32]) {
        quant::decode(self.ty, self.rows(r0, r1), out).expect("matrix sizes validated at load");
    }
}

const MR: usize = 6;
const NR: usize = 16;

struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// `y[t, o] = Σ_i x[t, i]·W[o, i]` for `t < x.len()/n_in`; `y` is overwritten.
pub fn matmul(w: &QMatrix, x: &[f32], y: &mut [f32]) {
    let k = w.n_in;
    let t = x.len() / k;
    assert_eq!(x.len(), t * k, "x is not a whole number of rows");
    assert_eq!(y.len(), t * w.n_out, "y has the wrong size");
    if t <= 2 {
        return gemv(w, x, t, y);
    }
    gemm(w, x, t, y)
}

fn gemm(w: &QMatrix, x: &[f32], t: usize, y: &mut [f32]) {
    let k = w.n_in;
    let n = w.n_out;
    let panel_rows = ((192 * 1024 / 4 / k).max(NR) / NR * NR).min(n.div_ceil(NR) * NR);
    let n_panels = n.div_ceil(panel_rows);
    let yp = SendPtr(y.as_mut_ptr());
    let yp = &yp;
    (0..n_panels).into_par_iter().for_each_init(
        || (vec![0f32; panel_rows * k], vec![0f32; panel_rows * k]),
        |(rows, packed), p| {
            let o0 = p * panel_rows;
            let o1 = (o0 + panel_rows).min(n);
            let nrows = o1 - o0;
            w.decode_rows(o0, o1, &mut rows[..nrows * k]);
            let n_sl = nrows.div_ceil(NR);
            pack_slivers(&rows[..nrows * k], nrows, k, &mut packed[..n_sl * NR * k]);
            for m0 in (0..t).step_by(MR) {
                let mr = MR.min(t - m0);
                for s in 0..n_sl {
                    let nr = NR.min(nrows - s * NR);
                    let bp = &packed[s * NR * k..(s + 1) * NR * k];
                    // SAFETY: each panel writes only columns o0..o1 of y; panels are disjoint.
                    unsafe {
                        let c = yp.0.add(m0 * n + o0 + s * NR);
                        kernel(mr, nr, k, &x[m0 * k..], k, bp, c, n);
                    }
                }
            }
        },
    );
}

/// Plain f32 GEMM on one thread: `C[m×n] = A[m×k] · Bᵀ` where `B` is given as `n` rows of
/// length `k` (row stride `ldb`), A with row stride `lda`, C with row stride `ldc`.
/// Uses the same packing and micro-kernel as [`matmul`]; `packed` is scratch space.
#[allow(clippy::too_many_arguments)]
pub fn gemm_f32_bt(
    a: &[f32],
    lda: usize,
    m: usize,
    b: &[f32],
    ldb: usize,
    n: usize,
    k: usize,
    c: &mut [f32],
    ldc: usize,
    packed: &mut Vec<f32>,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(a.len() >= (m - 1) * lda + k && b.len() >= (n - 1) * ldb + k && c.len() >= (m - 1) * ldc + n);
    let n_sl = n.div_ceil(NR);
    packed.resize(n_sl * NR * k, 0.0);
    for (s, sl) in packed.chunks_exact_mut(NR * k).enumerate() {
        for r in 0..NR {
            let src = s * NR + r;
            if src < n {
                let row = &b[src * ldb..src * ldb + k];
                for (kk, &v) in row.iter().enumerate() {
                    sl[kk * NR + r] = v;
                }
            } else {
                for kk in 0..k {
                    sl[kk * NR + r] = 0.0;
                }
            }
        }
    }
    for m0 in (0..m).step_by(MR) {
        let mr = MR.min(m - m0);
        for s in 0..n_sl {
            let nr = NR.min(n - s * NR);
            // SAFETY: the assert above bounds rows m0..m0+mr, columns s·16..s·16+nr of c.
            unsafe { kernel(mr, nr, k, &a[m0 * lda..], lda, &packed[s * NR * k..(s + 1) * NR * k], c.as_mut_ptr().add(m0 * ldc + s * NR), ldc) };
        }
    }
}

/// Repack `nrows` rows of length k into slivers of 16 rows, each `[k][16]`, zero-padded.
fn pack_slivers(rows: &[f32], nrows: usize, k: usize, out: &mut [f32]) {
    for (s, sl) in out.chunks_exact_mut(NR * k).enumerate() {
        for r in 0..NR {
            let src = s * NR + r;
            if src < nrows {
                let row = &rows[src * k..(src + 1) * k];
                for (kk, &v) in row.iter().enumerate() {
                    sl[kk * NR + r] = v;
                }
            } else {
                for kk in 0..k {
                    sl[kk * NR + r] = 0.0;
                }
            }
        }
    }
}

/// C[mr×nr] (row stride ldc) = A[mr×k] (row stride lda) · B (a packed `[k][16]` sliver).
///
/// # Safety
/// `c` must be valid for `mr` rows of `nr` writes at stride `ldc`.
#[allow(clippy::too_many_arguments)]
unsafe fn kernel(mr: usize, nr: usize, k: usize, a: &[f32], lda: usize, b: &[f32], c: *mut f32, ldc: usize) {
    let mut acc = [0f32; MR * NR];
    #[cfg(target_arch = "x86_64")]
    {
        if crate::quant::simd_enabled() {
            match mr {
                6 => avx2_kernel::<6>(k, a, lda, b, &mut acc),
                5 => avx2_kernel::<5>(k, a, lda, b, &mut acc),
                4 => avx2_kernel::<4>(k, a, lda, b, &mut acc),
                3 => avx2_kernel::<3>(k, a, lda, b, &mut acc),
                2 => avx2_kernel::<2>(k, a, lda, b, &mut acc),
                _ => avx2_kernel::<1>(k, a, lda, b, &mut acc),
            }
        } else {
            scalar_kernel(mr, k, a, lda, b, &mut acc);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    scalar_kernel(mr, k, a, lda, b, &mut acc);
    for i in 0..mr {
        for j in 0..nr {
            *c.add(i * ldc + j) = acc[i * NR + j];
        }
    }
}

/// Scalar twin of the micro-kernel (reference and fallback).
fn scalar_kernel(mr: usize, k: usize, a: &[f32], lda: usize, b: &[f32], acc: &mut [f32; MR * NR]) {
    for kk in 0..k {
        let bv = &b[kk * NR..kk * NR + NR];
        for i in 0..mr {
            let av = a[i * lda + kk];
            for j in 0..NR {
                acc[i * NR + j] += av * bv[j];
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_kernel<const M: usize>(k: usize, a: &[f32], lda: usize, b: &[f32], acc: &mut [f32; MR * NR]) {
    use std::arch::x86_64::*;
    assert!(a.len() >= (M - 1) * lda + k && b.len() >= k * NR);
    let mut c0 = [_mm256_setzero_ps(); M];
    let mut c1 = [_mm256_setzero_ps(); M];
    let ap = a.as_ptr();
    let bp = b.as_ptr();
    for kk in 0..k {
        let b0 = _mm256_loadu_ps(bp.add(kk * NR));
        let b1 = _mm256_loadu_ps(bp.add(kk * NR + 8));
        for i in 0..M {
            let av = _mm256_broadcast_ss(&*ap.add(i * lda + kk));
            c0[i] = _mm256_fmadd_ps(av, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(av, b1, c1[i]);
        }
    }
    for i in 0..M {
        _mm256_storeu_ps(acc.as_mut_ptr().add(i * NR), c0[i]);
        _mm256_storeu_ps(acc.as_mut_ptr().add(i * NR + 8), c1[i]);
    }
}

/// One or two tokens: decode each row and dot it with x (rows in parallel).
fn gemv(w: &QMatrix, x: &[f32], t: usize, y: &mut [f32]) {
    let k = w.n_in;
    let n = w.n_out;
    let chunk = (4096 / k.max(1)).max(1);
    let yp = SendPtr(y.as_mut_ptr());
    let yp = &yp;
    (0..n.div_ceil(chunk)).into_par_iter().for_each_init(
        || vec![0f32; chunk * k],
        |buf, ci| {
            let r0 = ci * chunk;
            let r1 = (r0 + chunk).min(n);
            let rows = &mut buf[..(r1 - r0) * k];
            w.decode_rows(r0, r1, rows);
            for (r, row) in rows.chunks_exact(k).enumerate() {
                for tt in 0..t {
                    // SAFETY: chunks write disjoint rows r0..r1 of each output row.
                    unsafe { *yp.0.add(tt * n + r0 + r) = dot(row, &x[tt * k..(tt + 1) * k]) };
                }
            }
        },
    );
}

/// f32 dot product: AVX2+FMA when available (runtime-detected), else a portable loop.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    #[cfg(target_arch = "x86_64")]
    if crate::quant::simd_enabled() {
        // SAFETY: AVX2/FMA presence checked by simd_enabled(); reads stay within n.
        return unsafe { dot_avx2(&a[..n], &b[..n]) };
    }
    dot_scalar(&a[..n], &b[..n])
}

/// Portable twin of the dot product (16 partial sums).
pub fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let n = a.len().min(b.len());
    let chunks = n / 16;
    for c in 0..chunks {
        let (aa, bb) = (&a[c * 16..c * 16 + 16], &b[c * 16..c * 16 + 16]);
        for l in 0..16 {
            acc[l] += aa[l] * bb[l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 16..n {
        s += a[i] * b[i];
    }
    s
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (l, acc_l) in acc.iter_mut().enumerate() {
            *acc_l = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8 * l)), _mm256_loadu_ps(pb.add(i + 8 * l)), *acc_l);
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc[0]);
        i += 8;
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), s);
    let mut total: f32 = lanes.iter().sum();
    while i < n {
        total += a[i] * b[i];
        i += 1;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(wf: &[f32], x: &[f32], k: usize, n: usize) -> Vec<f64> {
        let t = x.len() / k;
        let mut y = vec![0f64; t * n];
        for tt in 0..t {
            for o in 0..n {
                y[tt * n + o] = (0..k).map(|i| x[tt * k + i] as f64 * wf[o * k + i] as f64).sum();
            }
        }
        y
    }

    #[test]
    fn matmul_matches_f64_reference_for_odd_shapes() {
        let mut seed = 1u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        for &(k, n, t) in &[(64usize, 17usize, 1usize), (64, 33, 2), (96, 50, 3), (128, 100, 7), (256, 161, 13), (32, 16, 6)] {
            let wf: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
            let mut wb = vec![0u8; k * n / 32 * 34];
            quant::encode(GgmlType::Q8_0, &wf, &mut wb).unwrap();
            let mut wd = vec![0f32; k * n];
            quant::decode(GgmlType::Q8_0, &wb, &mut wd).unwrap();
            let x: Vec<f32> = (0..k * t).map(|_| rnd()).collect();
            let qm = QMatrix { ty: GgmlType::Q8_0, n_in: k, n_out: n, data: &wb };
            let mut y = vec![0f32; t * n];
            matmul(&qm, &x, &mut y);
            let r = reference(&wd, &x, k, n);
            for i in 0..y.len() {
                assert!((y[i] as f64 - r[i]).abs() < 1e-4 * (1.0 + r[i].abs()), "k{k} n{n} t{t} i{i}: {} vs {}", y[i], r[i]);
            }
        }
    }
}
