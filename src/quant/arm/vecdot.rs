//! NEON twins of [`crate::quant::q8`]'s activation quantizers and [`crate::quant::vecdot`]'s
//! integer dot kernels for the 32-element formats and Q4_K (one weight row against one, four or
//! eight activation rows, the weight block unpacked once). Lane `l` of a block's integer sum holds
//! elements `4l..4l+4`, which is exactly what one `sdot` (or [`dot16`]'s widening path) gives per
//! 16 bytes, so the eight f32 lanes of the scalar reference are two NEON vectors accumulated with
//! `fmla` (the reference's `mul_add`) and reduced as [`hsum8`]. Every `DOT` build gives the same
//! bits (`tests/simd_arm.rs`).

use std::arch::aarch64::*;

use super::decode::bits_to_16;
use super::{dot16, dot16_acc};
use crate::quant::kquants::q4_k::scale_min;
use crate::quant::q8::{self, BlockQ8, BlockQ8K};
use crate::quant::util::{f16_at, f16_round};
use crate::quant::vecdot::hsum8;

/// Q8_0 (`SUM = false`) or Q8_1 (`SUM = true`) quantization.
pub fn quantize_q8<const SUM: bool>(x: &[f32], out: &mut [BlockQ8]) {
    assert_eq!(x.len(), out.len() * 32, "quantize_q8: x must hold 32 values per block");
    if !super::available() {
        return q8::quantize_q8_scalar::<SUM>(x, out);
    }
    for (xb, b) in x.chunks_exact(32).zip(out.iter_mut()) {
        // SAFETY: NEON present; each block reads 32 floats of xb and writes 32 codes of b.
        unsafe {
            let p = xb.as_ptr();
            let v: [float32x4_t; 8] = std::array::from_fn(|k| vld1q_f32(p.add(4 * k)));
            let amax = abs_max(&v);
            let d = amax / 127.0;
            let id = vdupq_n_f32(if amax != 0.0 { 127.0 / amax } else { 0.0 });
            let i: [int32x4_t; 8] = v.map(|x| vcvtnq_s32_f32(vmulq_f32(x, id)));
            pack_store(&i, b.qs.as_mut_ptr());
            b.d = f16_round(d);
            b.s = if SUM {
                let s = i.iter().fold(vdupq_n_s32(0), |a, &x| vaddq_s32(a, x));
                f16_round(d * vaddvq_s32(s) as f32)
            } else {
                0.0
            };
        }
    }
}

/// Q8_K quantization.
pub fn quantize_q8k(x: &[f32], out: &mut [BlockQ8K]) {
    assert_eq!(x.len(), out.len() * 256, "quantize_q8k: x must hold 256 values per block");
    if !super::available() {
        return q8::quantize_q8k_scalar(x, out);
    }
    for (xb, b) in x.chunks_exact(256).zip(out.iter_mut()) {
        // SAFETY: NEON present; each block reads 256 floats of xb and writes one block.
        unsafe {
            let p = xb.as_ptr();
            let v: [float32x4_t; 64] = std::array::from_fn(|k| vld1q_f32(p.add(4 * k)));
            let amax = abs_max(&v);
            if amax == 0.0 {
                *b = BlockQ8K::default();
                continue;
            }
            // The first element of that magnitude, with its sign (the reference's choice).
            let max = *xb.iter().find(|x| x.abs() == amax).expect("amax is some element's magnitude");
            let iscale = -127.0 / max;
            let is = vdupq_n_f32(iscale);
            let top = vdupq_n_s32(127);
            let i: [int32x4_t; 64] = v.map(|x| vminq_s32(vcvtnq_s32_f32(vmulq_f32(x, is)), top));
            for c in 0..8 {
                pack_store(i[8 * c..8 * c + 8].try_into().expect("eight vectors"), b.qs.as_mut_ptr().add(32 * c));
            }
            for g in 0..16 {
                b.bsums[g] = vaddlvq_s8(vld1q_s8(b.qs.as_ptr().add(16 * g)));
            }
            b.d = 1.0 / iscale;
        }
    }
}

/// max |v| over the lanes (`fmaxnm`: a NaN lane is ignored, as `f32::max` does).
#[inline(always)]
unsafe fn abs_max(v: &[float32x4_t]) -> f32 {
    vmaxnmvq_f32(v.iter().fold(vdupq_n_f32(0.0), |m, &x| vmaxnmq_f32(m, vabsq_f32(x))))
}

/// 32 i32 (eight vectors, element order) → 32 saturated i8 at `dst` (the reference's clamp).
#[inline(always)]
unsafe fn pack_store(i: &[int32x4_t; 8], dst: *mut i8) {
    for h in 0..2 {
        let a = vcombine_s16(vqmovn_s32(i[4 * h]), vqmovn_s32(i[4 * h + 1]));
        let b = vcombine_s16(vqmovn_s32(i[4 * h + 2]), vqmovn_s32(i[4 * h + 3]));
        vst1q_s8(dst.add(16 * h), vcombine_s8(vqmovn_s16(a), vqmovn_s16(b)));
    }
}

/// The eight f32 lanes (two vectors) reduced in [`hsum8`]'s order.
#[inline(always)]
pub(in crate::quant) unsafe fn hsum8v(lo: float32x4_t, hi: float32x4_t) -> f32 {
    let mut l = [0f32; 8];
    vst1q_f32(l.as_mut_ptr(), lo);
    vst1q_f32(l.as_mut_ptr().add(4), hi);
    hsum8(l)
}

#[inline(always)]
unsafe fn act(ab: &BlockQ8) -> (int8x16_t, int8x16_t) {
    (vld1q_s8(ab.qs.as_ptr()), vld1q_s8(ab.qs.as_ptr().add(16)))
}

/// The 32-element body for `N` activation rows: `codes(block)` gives the 32 weight codes as
/// signed bytes (elements 0..16, 16..32); per row and block, lanes 0..4 and 4..8 of the integer
/// sum, `acc = fma(d_w·d_a, lane, acc)`; Q4_1/Q5_1 (`has_m`) add `Σ m_w·s_a` in block order.
#[inline(always)]
fn legacy_n<const N: usize, const DOT: bool>(
    w: &[u8],
    a: [&[BlockQ8]; N],
    ts: usize,
    has_m: bool,
    codes: impl Fn(&[u8]) -> (int8x16_t, int8x16_t),
) -> [f32; N] {
    for r in &a {
        assert_eq!(w.len(), r.len() * ts, "weight row and activation row differ in length");
    }
    // SAFETY: NEON is baseline; every activation row has one block per weight block (checked).
    unsafe {
        let zero = vdupq_n_f32(0.0);
        let mut acc = [(zero, zero); N];
        let mut summs = [0f32; N];
        for (ib, blk) in w.chunks_exact(ts).enumerate() {
            let (q0, q1) = codes(blk);
            let dw = f16_at(blk, 0);
            let m = if has_m { f16_at(blk, 2) } else { 0.0 };
            for t in 0..N {
                let ab = a[t].get_unchecked(ib);
                let (a0, a1) = act(ab);
                let dd = vdupq_n_f32(dw * ab.d);
                acc[t].0 = vfmaq_f32(acc[t].0, dd, vcvtq_f32_s32(dot16::<DOT>(q0, a0)));
                acc[t].1 = vfmaq_f32(acc[t].1, dd, vcvtq_f32_s32(dot16::<DOT>(q1, a1)));
                if has_m {
                    summs[t] += m * ab.s;
                }
            }
        }
        std::array::from_fn(|t| hsum8v(acc[t].0, acc[t].1) + summs[t])
    }
}

#[inline(always)]
fn nibbles(p: &[u8]) -> (uint8x16_t, uint8x16_t) {
    // SAFETY: callers pass at least 16 bytes.
    unsafe {
        assert!(p.len() >= 16);
        let t = vld1q_u8(p.as_ptr());
        (vandq_u8(t, vdupq_n_u8(15)), vshrq_n_u8(t, 4))
    }
}

#[inline(always)]
fn s8(x: uint8x16_t) -> int8x16_t {
    // SAFETY: a reinterpretation.
    unsafe { vreinterpretq_s8_u8(x) }
}

#[inline(always)]
fn minus(x: uint8x16_t, k: i8) -> int8x16_t {
    // SAFETY: NEON is baseline.
    unsafe { vsubq_s8(s8(x), vdupq_n_s8(k)) }
}

/// 32 five-bit codes: nibbles at `b[qs..qs + 16]`, high bits in the u32 at `b[qh..]`.
#[inline(always)]
fn five(b: &[u8], qh: usize, qs: usize) -> (uint8x16_t, uint8x16_t) {
    let h = u32::from_le_bytes([b[qh], b[qh + 1], b[qh + 2], b[qh + 3]]);
    let (lo, hi) = nibbles(&b[qs..]);
    // SAFETY: NEON is baseline.
    unsafe { (vorrq_u8(lo, bits_to_16(h, 0)), vorrq_u8(hi, bits_to_16(h, 16))) }
}

fn codes_q4_0(b: &[u8]) -> (int8x16_t, int8x16_t) {
    let (lo, hi) = nibbles(&b[2..18]);
    (minus(lo, 8), minus(hi, 8))
}
fn codes_q4_1(b: &[u8]) -> (int8x16_t, int8x16_t) {
    let (lo, hi) = nibbles(&b[4..20]);
    (s8(lo), s8(hi))
}
fn codes_q5_0(b: &[u8]) -> (int8x16_t, int8x16_t) {
    let (lo, hi) = five(b, 2, 6);
    (minus(lo, 16), minus(hi, 16))
}
fn codes_q5_1(b: &[u8]) -> (int8x16_t, int8x16_t) {
    let (lo, hi) = five(b, 4, 8);
    (s8(lo), s8(hi))
}
fn codes_q8_0(b: &[u8]) -> (int8x16_t, int8x16_t) {
    assert!(b.len() >= 34);
    // SAFETY: 32 bytes at offset 2 (checked).
    unsafe { (vld1q_s8(b.as_ptr().add(2) as *const i8), vld1q_s8(b.as_ptr().add(18) as *const i8)) }
}

macro_rules! legacy {
    ($one:ident, $n:ident, $ts:expr, $m:expr, $codes:ident) => {
        /// The NEON one-row kernel (`DOT`: with `sdot`; listed only where the CPU has it).
        pub(in crate::quant) fn $one<const DOT: bool>(w: &[u8], a: &[BlockQ8]) -> f32 {
            legacy_n::<1, DOT>(w, [a], $ts, $m, $codes)[0]
        }
        /// The NEON `N`-row kernel (same bits as the one-row kernel row by row).
        pub(in crate::quant) fn $n<const N: usize, const DOT: bool>(w: &[u8], a: [&[BlockQ8]; N]) -> [f32; N] {
            legacy_n::<N, DOT>(w, a, $ts, $m, $codes)
        }
    };
}
legacy!(q4_0, q4_0_n, 18, false, codes_q4_0);
legacy!(q4_1, q4_1_n, 20, true, codes_q4_1);
legacy!(q5_0, q5_0_n, 22, false, codes_q5_0);
legacy!(q5_1, q5_1_n, 24, true, codes_q5_1);
legacy!(q8_0, q8_0_n, 34, false, codes_q8_0);

/// The four 32-code sub-block pairs of a Q4_K super-block: `(lo, hi)` nibbles of bytes
/// `16 + 32c ..`, each as two 16-byte vectors.
#[inline(always)]
pub(in crate::quant) fn q4_k_codes(b: &[u8], c: usize) -> [int8x16_t; 4] {
    let (l0, h0) = nibbles(&b[16 + 32 * c..]);
    let (l1, h1) = nibbles(&b[32 + 32 * c..]);
    [s8(l0), s8(l1), s8(h0), s8(h1)]
}

/// The integer dots `S_{2c}` (low nibbles against elements `64c..64c+32`) and `S_{2c+1}` (high
/// nibbles against `64c+32..64c+64`) as i32 lanes (their lane sums are the dots).
#[inline(always)]
pub(in crate::quant) fn q4_k_pair<const DOT: bool>(q: &[int8x16_t; 4], ab: &BlockQ8K, c: usize) -> (int32x4_t, int32x4_t) {
    // SAFETY: qs holds 256 codes; 64c + 64 ≤ 256.
    unsafe {
        let p = ab.qs.as_ptr().add(64 * c);
        let a: [int8x16_t; 4] = std::array::from_fn(|k| vld1q_s8(p.add(16 * k)));
        (dot16_acc::<DOT>(dot16::<DOT>(q[0], a[0]), q[1], a[1]), dot16_acc::<DOT>(dot16::<DOT>(q[2], a[2]), q[3], a[3]))
    }
}

/// Q4_K against `N` Q8_K rows ([`crate::quant::vecdot::dot_q4_k`]'s steps per row).
pub(in crate::quant) fn q4_k_n<const N: usize, const DOT: bool>(w: &[u8], a: [&[BlockQ8K]; N]) -> [f32; N] {
    for r in &a {
        assert_eq!(w.len(), r.len() * 144, "weight row and activation row differ in length");
    }
    let (mut acc, mut accm) = ([0f32; N], [0f32; N]);
    for (ib, b) in w.chunks_exact(144).enumerate() {
        let s = &b[4..16];
        let ab: [&BlockQ8K; N] = std::array::from_fn(|t| &a[t][ib]);
        // SAFETY: NEON is baseline.
        let mut sumv = [unsafe { vdupq_n_s32(0) }; N];
        let mut summ = [0i32; N];
        for c in 0..4 {
            let (sc0, m0) = scale_min(2 * c, s);
            let (sc1, m1) = scale_min(2 * c + 1, s);
            let q = q4_k_codes(b, c);
            for t in 0..N {
                let (p0, p1) = q4_k_pair::<DOT>(&q, ab[t], c);
                // SAFETY: NEON is baseline.
                sumv[t] = unsafe { vmlaq_n_s32(vmlaq_n_s32(sumv[t], p0, sc0 as i32), p1, sc1 as i32) };
                let bs = &ab[t].bsums[4 * c..4 * c + 4];
                summ[t] += m0 as i32 * (bs[0] as i32 + bs[1] as i32) + m1 as i32 * (bs[2] as i32 + bs[3] as i32);
            }
        }
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        for t in 0..N {
            // SAFETY: NEON is baseline.
            let sumi = unsafe { vaddvq_s32(sumv[t]) };
            acc[t] += (d * ab[t].d) * sumi as f32;
            accm[t] += (dmin * ab[t].d) * summ[t] as f32;
        }
    }
    std::array::from_fn(|t| acc[t] - accm[t])
}

/// Q4_K one-row kernel.
pub(in crate::quant) fn q4_k<const DOT: bool>(w: &[u8], a: &[BlockQ8K]) -> f32 {
    q4_k_n::<1, DOT>(w, [a])[0]
}
