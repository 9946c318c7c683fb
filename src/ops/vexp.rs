//! Vectorised `exp` for softmax rows (attention, cross-entropy): AVX2+FMA when available
//! (runtime-detected), NEON on AArch64 (the same operations on the same eight lanes, so the
//! same bits as AVX2), else the standard library's `f32::exp`. On AArch64 also [`ggml_exp_row`]:
//! llama.cpp's `ggml_v_expf` four lanes at a time, the bits of the scalar
//! [`crate::ops::attention::ggml_expf`].

/// `x ← exp(x − c)` over a slice; returns the sum of the results (f32, fixed order).
pub fn exp_sub(x: &mut [f32], c: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if crate::quant::simd_enabled() {
        // SAFETY: AVX2/FMA presence checked by simd_enabled().
        return unsafe { exp_sub_avx2(x, c) };
    }
    #[cfg(target_arch = "aarch64")]
    if crate::quant::simd_enabled() {
        return neon::exp_sub(x, c);
    }
    x.iter_mut().fold(0.0, |acc, v| {
        *v = (*v - c).exp();
        acc + *v
    })
}

/// Cephes-style single-precision `exp` on 8 lanes (relative error ≈ 2 ulp); `exp(x) = 0`
/// below −87.3 (so −∞ gives 0), inputs above 88 are clamped.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp256(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let under = _mm256_cmp_ps(x, _mm256_set1_ps(-87.336_55), _CMP_LT_OQ);
    let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.336_55)), _mm256_set1_ps(88.0));
    let n = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E), _mm256_set1_ps(0.5)));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.987_569_1e-4);
    for coef in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(coef));
    }
    let y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0));
    let pow2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
    _mm256_andnot_ps(under, _mm256_mul_ps(y, pow2))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_sub_avx2(x: &mut [f32], c: f32) -> f32 {
    use std::arch::x86_64::*;
    let n = x.len();
    let p = x.as_mut_ptr();
    let cv = _mm256_set1_ps(c);
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        let e = exp256(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), cv));
        _mm256_storeu_ps(p.add(i), e);
        acc = _mm256_add_ps(acc, e);
        i += 8;
    }
    if i < n {
        let mut tail = [f32::NEG_INFINITY; 8];
        tail[..n - i].copy_from_slice(&x[i..]);
        let e = exp256(_mm256_sub_ps(_mm256_loadu_ps(tail.as_ptr()), cv));
        _mm256_storeu_ps(tail.as_mut_ptr(), e);
        x[i..].copy_from_slice(&tail[..n - i]);
        acc = _mm256_add_ps(acc, e);
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), acc);
    lanes.iter().sum()
}

/// The AVX2 kernels' operations, lane for lane, on two NEON vectors (lanes 0..4, 4..8):
/// `floor` → `frintm`, `fmadd` → `fmla`, `fnmadd` → `fmls` (all fused as there), `max`/`min`
/// → `fmaxnm`/`fminnm` (a NaN gives the bound, as `maxps` with the constant second does).
#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    #[inline(always)]
    unsafe fn exp4(x: float32x4_t) -> float32x4_t {
        let under = vcltq_f32(x, vdupq_n_f32(-87.336_55));
        let x = vminnmq_f32(vmaxnmq_f32(x, vdupq_n_f32(-87.336_55)), vdupq_n_f32(88.0));
        let n = vrndmq_f32(vfmaq_f32(vdupq_n_f32(0.5), x, vdupq_n_f32(std::f32::consts::LOG2_E)));
        let r = vfmsq_f32(x, n, vdupq_n_f32(0.693_359_4));
        let r = vfmsq_f32(r, n, vdupq_n_f32(-2.121_944_4e-4));
        let mut p = vdupq_n_f32(1.987_569_1e-4);
        for coef in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
            p = vfmaq_f32(vdupq_n_f32(coef), p, r);
        }
        let y = vaddq_f32(vfmaq_f32(r, p, vmulq_f32(r, r)), vdupq_n_f32(1.0));
        let pow2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127)), 23));
        vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(vmulq_f32(y, pow2)), under))
    }

    /// [`super::exp_sub`]: eight-lane chunks, a `−∞`-padded tail, lanes summed in order.
    pub(super) fn exp_sub(x: &mut [f32], c: f32) -> f32 {
        let n = x.len();
        let p = x.as_mut_ptr();
        // SAFETY: NEON is baseline on AArch64; loads and stores stay within x (i + 8 ≤ n) or
        // the local tail.
        unsafe {
            let cv = vdupq_n_f32(c);
            let (mut a0, mut a1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
            let mut i = 0;
            while i + 8 <= n {
                let e0 = exp4(vsubq_f32(vld1q_f32(p.add(i)), cv));
                let e1 = exp4(vsubq_f32(vld1q_f32(p.add(i + 4)), cv));
                vst1q_f32(p.add(i), e0);
                vst1q_f32(p.add(i + 4), e1);
                (a0, a1) = (vaddq_f32(a0, e0), vaddq_f32(a1, e1));
                i += 8;
            }
            if i < n {
                let mut tail = [f32::NEG_INFINITY; 8];
                tail[..n - i].copy_from_slice(&x[i..]);
                let e0 = exp4(vsubq_f32(vld1q_f32(tail.as_ptr()), cv));
                let e1 = exp4(vsubq_f32(vld1q_f32(tail.as_ptr().add(4)), cv));
                vst1q_f32(tail.as_mut_ptr(), e0);
                vst1q_f32(tail.as_mut_ptr().add(4), e1);
                x[i..].copy_from_slice(&tail[..n - i]);
                (a0, a1) = (vaddq_f32(a0, e0), vaddq_f32(a1, e1));
            }
            let mut lanes = [0f32; 8];
            vst1q_f32(lanes.as_mut_ptr(), a0);
            vst1q_f32(lanes.as_mut_ptr().add(4), a1);
            lanes.iter().sum()
        }
    }
}

/// `row[i] = ggml_expf(row[i] − max)` ([`crate::ops::attention::ggml_expf`]): on AArch64 four
/// lanes at a time by `neon_ggml::exp4` (the same bits; `FINETUNE_SIMD=scalar` turns it off),
/// elsewhere the scalar function.
pub fn ggml_exp_row(row: &mut [f32], max: f32) {
    #[cfg(target_arch = "aarch64")]
    if crate::quant::simd_enabled() {
        return neon_ggml::exp_row(row, max);
    }
    row.iter_mut().for_each(|d| *d = crate::ops::attention::ggml_expf(*d - max));
}

/// `ggml_expf` on four lanes, operation for operation: `fmla`/`fmls` for its fused
/// multiply-adds, the `|n| > 192` cases selected, and the scaling by `2ⁿ` done as there, in f64
/// (exact) with one rounding to f32 (`fcvtn`, round to nearest even as `as f32`).
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon_ggml {
    use std::arch::aarch64::*;

    /// [`crate::ops::attention::ggml_expf`] of each lane.
    #[inline(always)]
    pub(crate) fn exp4(x: float32x4_t) -> float32x4_t {
        let c = |bits: u32| f32::from_bits(bits);
        // SAFETY: NEON (with its f64 lanes) is baseline on AArch64; no memory is touched.
        unsafe {
            let r = vdupq_n_f32(c(0x4b40_0000));
            let z = vfmaq_f32(r, x, vdupq_n_f32(c(0x3fb8_aa3b)));
            let n = vsubq_f32(z, r);
            let b = vfmsq_f32(x, n, vdupq_n_f32(c(0x3f31_7200)));
            let b = vfmsq_f32(b, n, vdupq_n_f32(c(0x35bf_be8e)));
            let u = vmulq_f32(b, b);
            let p = vfmaq_f32(vdupq_n_f32(c(0x3d2b_9f17)), vdupq_n_f32(c(0x3c07_2010)), b);
            let q = vfmaq_f32(vdupq_n_f32(c(0x3eff_fedb)), vdupq_n_f32(c(0x3e2a_af33)), b);
            let w = vfmaq_f32(vdupq_n_f32(1.0), vdupq_n_f32(c(0x3f7f_fff6)), b);
            let j = vfmaq_f32(w, vfmaq_f32(q, p, u), u);
            // 2ⁿ from its exponent bits (n integral; lanes with |n| > 192 are replaced below).
            let ni = vcvtq_s32_f32(vminnmq_f32(vmaxnmq_f32(n, vdupq_n_f32(-200.0)), vdupq_n_f32(200.0)));
            let pow = |e: int32x2_t| vreinterpretq_f64_s64(vshlq_n_s64(vaddq_s64(vmovl_s32(e), vdupq_n_s64(1023)), 52));
            let lo = vmulq_f64(vcvt_f64_f32(vget_low_f32(j)), pow(vget_low_s32(ni)));
            let hi = vmulq_f64(vcvt_high_f64_f32(j), pow(vget_high_s32(ni)));
            let y = vcvt_high_f32_f64(vcvt_f32_f64(lo), hi);
            let big = vcagtq_f32(n, vdupq_n_f32(192.0));
            let special = vbslq_f32(vcleq_f32(n, vdupq_n_f32(0.0)), vdupq_n_f32(0.0), vdupq_n_f32(f32::INFINITY));
            vbslq_f32(big, special, y)
        }
    }

    /// [`super::ggml_exp_row`]: four lanes at a time, the tail by the scalar function.
    pub(super) fn exp_row(row: &mut [f32], max: f32) {
        let mut chunks = row.chunks_exact_mut(4);
        for c in &mut chunks {
            // SAFETY: four floats in and out of a four-float chunk; NEON is baseline.
            unsafe { vst1q_f32(c.as_mut_ptr(), exp4(vsubq_f32(vld1q_f32(c.as_ptr()), vdupq_n_f32(max)))) };
        }
        for d in chunks.into_remainder() {
            *d = crate::ops::attention::ggml_expf(*d - max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::exp_sub;

    #[test]
    fn exp_sub_matches_f64_exp() {
        let mut x: Vec<f32> = (0..20001).map(|i| -95.0 + i as f32 * 0.00575).collect();
        x.push(f32::NEG_INFINITY);
        let orig = x.clone();
        let sum = exp_sub(&mut x, 3.0);
        let mut want_sum = 0f64;
        for (&o, &e) in orig.iter().zip(&x) {
            let want = ((o - 3.0) as f64).exp();
            want_sum += want;
            if want < 1e-37 {
                assert!(e.abs() <= 1e-37, "exp({o} - 3) = {e}, want {want}");
            } else {
                assert!(((e as f64 - want) / want).abs() < 4e-7, "exp({o} - 3) = {e}, want {want}");
            }
        }
        assert!(((sum as f64 - want_sum) / want_sum).abs() < 1e-5);
    }
}
