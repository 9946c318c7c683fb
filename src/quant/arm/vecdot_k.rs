//! NEON Q6_K kernels against Q8_K activations: ggml's vec_dot order (eight lanes, lane `l`
//! holding the elements with `(e mod 32)/4 = l`; [`crate::quant::vecdot::dot_q6_k`]) and
//! llama.cpp's tiled-matmul order ([`crate::quant::vecdot::dot_q6_k_tiled`]), for one or `N`
//! activation rows with the weight super-block unpacked once. The integer lanes are exact; the
//! f32 steps are the references', so results are bit-identical (`tests/simd_arm.rs`).

use std::arch::aarch64::*;

use super::dot16;
use super::vecdot::hsum8v;
use crate::quant::q8::BlockQ8K;
use crate::quant::util::f16_at;

/// The sixteen 16-code vectors of a Q6_K super-block, element order (codes 0..63).
#[inline(always)]
pub(in crate::quant) fn q6_k_codes(b: &[u8]) -> [int8x16_t; 16] {
    assert!(b.len() >= 210);
    // SAFETY: all loads within the 210-byte block (checked); NEON is baseline.
    unsafe {
        let p = b.as_ptr();
        let (m4, m3) = (vdupq_n_u8(15), vdupq_n_u8(3));
        let mut out = [vdupq_n_s8(0); 16];
        for n in 0..2 {
            for i in 0..2 {
                let l = 16 * i;
                let ql0 = vld1q_u8(p.add(64 * n + l));
                let ql1 = vld1q_u8(p.add(64 * n + 32 + l));
                let qh = vld1q_u8(p.add(128 + 32 * n + l));
                let hb = |h: uint8x16_t| vshlq_n_u8(vandq_u8(h, m3), 4);
                let q = [
                    vorrq_u8(vandq_u8(ql0, m4), hb(qh)),
                    vorrq_u8(vandq_u8(ql1, m4), hb(vshrq_n_u8(qh, 2))),
                    vorrq_u8(vshrq_n_u8(ql0, 4), hb(vshrq_n_u8(qh, 4))),
                    vorrq_u8(vshrq_n_u8(ql1, 4), hb(vshrq_n_u8(qh, 6))),
                ];
                // Element 128n + 32m + l → vector (128n + 32m + l) / 16.
                for (m, v) in q.into_iter().enumerate() {
                    out[8 * n + 2 * m + i] = vreinterpretq_s8_u8(v);
                }
            }
        }
        out
    }
}

/// The eight integer lanes (two vectors) of a super-block against one activation block:
/// `Σ scale·q·a` per lane minus `32·(bsum_{2l}·scale_{2l} + bsum_{2l+1}·scale_{2l+1})`.
#[inline(always)]
fn q6_k_lanes<const DOT: bool>(q: &[int8x16_t; 16], sc: &[u8], ab: &BlockQ8K) -> (int32x4_t, int32x4_t) {
    // SAFETY: qs holds 256 codes; NEON is baseline.
    unsafe {
        let (mut lo, mut hi) = (vdupq_n_s32(0), vdupq_n_s32(0));
        for j in 0..8 {
            // 32 elements: the first 16 → lanes 0..4 (scale 2j), the next 16 → lanes 4..8 (2j+1).
            let a0 = vld1q_s8(ab.qs.as_ptr().add(32 * j));
            let a1 = vld1q_s8(ab.qs.as_ptr().add(32 * j + 16));
            lo = vmlaq_n_s32(lo, dot16::<DOT>(q[2 * j], a0), sc[2 * j] as i8 as i32);
            hi = vmlaq_n_s32(hi, dot16::<DOT>(q[2 * j + 1], a1), sc[2 * j + 1] as i8 as i32);
        }
        let off: [i32; 8] = std::array::from_fn(|l| {
            (ab.bsums[2 * l] as i32 * sc[2 * l] as i8 as i32 + ab.bsums[2 * l + 1] as i32 * sc[2 * l + 1] as i8 as i32) << 5
        });
        (vsubq_s32(lo, vld1q_s32(off.as_ptr())), vsubq_s32(hi, vld1q_s32(off.as_ptr().add(4))))
    }
}

fn check<const N: usize>(w: &[u8], a: &[&[BlockQ8K]; N]) {
    for r in a {
        assert_eq!(w.len(), r.len() * 210, "weight row and activation row differ in length");
    }
}

/// Q6_K against `N` Q8_K rows, vec_dot order.
pub(in crate::quant) fn q6_k_n<const N: usize, const DOT: bool>(w: &[u8], a: [&[BlockQ8K]; N]) -> [f32; N] {
    check(w, &a);
    // SAFETY: NEON is baseline.
    let zero = unsafe { vdupq_n_f32(0.0) };
    let mut acc = [(zero, zero); N];
    for (ib, b) in w.chunks_exact(210).enumerate() {
        let q = q6_k_codes(b);
        let dw = f16_at(b, 208);
        for t in 0..N {
            let ab = &a[t][ib];
            let (lo, hi) = q6_k_lanes::<DOT>(&q, &b[192..208], ab);
            // SAFETY: NEON is baseline.
            unsafe {
                let d = vdupq_n_f32(ab.d * dw);
                acc[t].0 = vfmaq_f32(acc[t].0, d, vcvtq_f32_s32(lo));
                acc[t].1 = vfmaq_f32(acc[t].1, d, vcvtq_f32_s32(hi));
            }
        }
    }
    // SAFETY: NEON is baseline.
    std::array::from_fn(|t| unsafe { hsum8v(acc[t].0, acc[t].1) })
}

/// Q6_K one-row kernel, vec_dot order.
pub(in crate::quant) fn q6_k<const DOT: bool>(w: &[u8], a: &[BlockQ8K]) -> f32 {
    q6_k_n::<1, DOT>(w, [a])[0]
}

/// Q6_K against `N` Q8_K rows, tiled-matmul order: per super-block the exact integer sum `s`,
/// then `acc = fma(d_w·f32(s), d_a, acc)`.
pub(in crate::quant) fn q6_k_tiled_n<const N: usize, const DOT: bool>(w: &[u8], a: [&[BlockQ8K]; N]) -> [f32; N] {
    check(w, &a);
    let mut acc = [0f32; N];
    for (ib, b) in w.chunks_exact(210).enumerate() {
        let q = q6_k_codes(b);
        let d = f16_at(b, 208);
        for t in 0..N {
            let ab = &a[t][ib];
            let (lo, hi) = q6_k_lanes::<DOT>(&q, &b[192..208], ab);
            // SAFETY: NEON is baseline.
            let sumi = unsafe { vaddvq_s32(vaddq_s32(lo, hi)) };
            acc[t] = (d * sumi as f32).mul_add(ab.d, acc[t]);
        }
    }
    acc
}
