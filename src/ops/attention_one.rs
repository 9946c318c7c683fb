//! AVX2/FMA kernels of the one-token (decoding) attention products in llama.cpp's order
//! (`ggml_vec_dot_f16` of an AVX-512 build, see [`super::attention`]'s `mod vecdot`, the scalar
//! reference): a dot product in steps of 64 elements, element `i` of a step into accumulator
//! `(i/16) mod 4`, lane `i mod 16`, each a chain of fused multiply-adds; accumulators 0+2 and
//! 1+3, then their sum, then the 16-lane tree (lanes `i` and `i+8`, `i` and `i+4`, then
//! `(0+2) + (1+3)`). The 16 lanes of an accumulator live in two `__m256`; every lane sees the
//! same operations as in the reference, so the bits are the same (unit tests below and
//! `tests/forward.rs`).

use std::arch::x86_64::*;

/// The 16-lane tree of `lo` (lanes 0..8) and `hi` (8..16).
#[inline(always)]
unsafe fn reduce16(lo: __m256, hi: __m256) -> f32 {
    let t3 = _mm256_add_ps(hi, lo);
    let t6 = _mm_add_ps(_mm256_extractf128_ps::<1>(t3), _mm256_castps256_ps128(t3));
    let s = _mm_add_ps(t6, _mm_movehl_ps(t6, t6));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
}

/// `out[j − lo] = q·K[j]`, `K[j] = k[j·kw..][..q.len()]`, in the reference's order (the tail
/// past the last whole step of 64 added in f64).
///
/// # Safety
/// AVX2 and FMA present; `k` holds rows `lo..lo + out.len()` of width `q.len()` at stride `kw`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn scores(q: &[f32], k: &[f32], kw: usize, lo: usize, out: &mut [f32]) {
    let n = q.len();
    let np = n & !63;
    let qp = q.as_ptr();
    for (jj, o) in out.iter_mut().enumerate() {
        let kr = &k[(lo + jj) * kw..(lo + jj) * kw + n];
        let kp = kr.as_ptr();
        let mut s = [_mm256_setzero_ps(); 8];
        for i in (0..np).step_by(64) {
            for (h, a) in s.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(i + 8 * h)), _mm256_loadu_ps(kp.add(i + 8 * h)), *a);
            }
        }
        // Accumulator j is s[2j] (lanes 0..8) and s[2j + 1] (8..16).
        let x0 = [_mm256_add_ps(s[0], s[4]), _mm256_add_ps(s[1], s[5])];
        let x1 = [_mm256_add_ps(s[2], s[6]), _mm256_add_ps(s[3], s[7])];
        let mut sum = reduce16(_mm256_add_ps(x0[0], x1[0]), _mm256_add_ps(x0[1], x1[1])) as f64;
        for i in np..n {
            sum += (q[i] * kr[i]) as f64;
        }
        *o = sum as f32;
    }
}

/// `o = Σ_j p[j − lo]·V[j]`, `V[j] = v[j·vw..][..o.len()]`, key position `j` in accumulator
/// `(j/16) mod 4`, lane `j mod 16` (one chain per slot and output element), then the fold;
/// `acc` is scratch. `o.len()` must be a multiple of 8.
///
/// # Safety
/// AVX2 and FMA present; `v` holds rows `lo..lo + p.len()` of width `o.len()` at stride `vw`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn weighted_sum(p: &[f32], v: &[f32], vw: usize, lo: usize, o: &mut [f32], acc: &mut Vec<f32>) {
    let n = o.len();
    assert!(n % 8 == 0, "weighted_sum: width {n} is not a multiple of 8");
    acc.clear();
    acc.resize(64 * n, 0.0);
    let ap = acc.as_mut_ptr();
    for (jj, &pj) in p.iter().enumerate() {
        let j = lo + jj;
        let slot = (j / 16) % 4 * 16 + j % 16;
        let vr = &v[j * vw..j * vw + n];
        let pv = _mm256_set1_ps(pj);
        let a = ap.add(slot * n);
        for d in (0..n).step_by(8) {
            _mm256_storeu_ps(a.add(d), _mm256_fmadd_ps(pv, _mm256_loadu_ps(vr.as_ptr().add(d)), _mm256_loadu_ps(a.add(d))));
        }
    }
    // Per element d: x[l] = (s0[l] + s2[l]) + (s1[l] + s3[l]) with s_a[l] = slot 16a + l, then
    // the tree over l — eight elements d at a time.
    let at = |slot: usize, d: usize| _mm256_loadu_ps(ap.add(slot * n + d));
    for d in (0..n).step_by(8) {
        let x: [__m256; 16] =
            std::array::from_fn(|l| _mm256_add_ps(_mm256_add_ps(at(l, d), at(32 + l, d)), _mm256_add_ps(at(16 + l, d), at(48 + l, d))));
        let t3: [__m256; 8] = std::array::from_fn(|i| _mm256_add_ps(x[i + 8], x[i]));
        let t6: [__m256; 4] = std::array::from_fn(|i| _mm256_add_ps(t3[i + 4], t3[i]));
        let r = _mm256_add_ps(_mm256_add_ps(t6[0], t6[2]), _mm256_add_ps(t6[1], t6[3]));
        _mm256_storeu_ps(o.as_mut_ptr().add(d), r);
    }
}
