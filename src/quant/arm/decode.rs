//! NEON decoders. Every function here computes the same f32 operations in the same order as its
//! scalar twin (a multiply, then an add or subtract; never a fused multiply-add), so results are
//! bit-identical; `tests/simd_arm.rs` checks that under qemu. The kernel table
//! ([`crate::quant::kernels`]) lists them per type.

use std::arch::aarch64::*;

use crate::quant::iq4::KVALUES;
use crate::quant::kquants::{q3_k, q4_k};
use crate::quant::small::{e8m0_half, MXFP4_VALUES};
use crate::quant::util::f16_at;

macro_rules! wrap {
    ($name:ident, $imp:ident, $ts:expr, $bs:expr) => {
        /// The NEON decoder (whole blocks).
        pub(in crate::quant) fn $name(b: &[u8], y: &mut [f32]) {
            assert_eq!(b.len() % $ts, 0);
            assert!(y.len() >= b.len() / $ts * $bs, "decoder output too short");
            // SAFETY: NEON is baseline on AArch64; the kernels index only within whole blocks
            // of `b` and the matching elements of `y` (checked above).
            unsafe { $imp(b, y) }
        }
    };
}

wrap!(f16, f16_imp, 2, 1);
wrap!(bf16, bf16_imp, 2, 1);
wrap!(q4_0, q4_0_imp, 18, 32);
wrap!(q4_1, q4_1_imp, 20, 32);
wrap!(q5_0, q5_0_imp, 22, 32);
wrap!(q5_1, q5_1_imp, 24, 32);
wrap!(q8_0, q8_0_imp, 34, 32);
wrap!(q2_k, q2_k_imp, 84, 256);
wrap!(q3_k, q3_k_imp, 110, 256);
wrap!(q4_k, q4_k_imp, 144, 256);
wrap!(q5_k, q5_k_imp, 176, 256);
wrap!(q6_k, q6_k_imp, 210, 256);
wrap!(iq4_nl, iq4_nl_imp, 18, 32);
wrap!(iq4_xs, iq4_xs_imp, 136, 256);
wrap!(mxfp4, mxfp4_imp, 17, 32);
wrap!(tq2_0, tq2_0_imp, 66, 256);

// ---- helpers: 16 signed bytes → 16 f32, times a scale, plus/minus an offset -------------

#[inline(always)]
unsafe fn widen(q: int8x16_t) -> [float32x4_t; 4] {
    let lo = vmovl_s8(vget_low_s8(q));
    let hi = vmovl_high_s8(q);
    [
        vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))),
        vcvtq_f32_s32(vmovl_high_s16(lo)),
        vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))),
        vcvtq_f32_s32(vmovl_high_s16(hi)),
    ]
}

/// y[0..16] = d·q
#[inline(always)]
unsafe fn store_mul(y: *mut f32, q: int8x16_t, d: float32x4_t) {
    for (k, v) in widen(q).into_iter().enumerate() {
        vst1q_f32(y.add(4 * k), vmulq_f32(d, v));
    }
}

/// y[0..16] = d·q + m
#[inline(always)]
unsafe fn store_mul_add(y: *mut f32, q: int8x16_t, d: float32x4_t, m: float32x4_t) {
    for (k, v) in widen(q).into_iter().enumerate() {
        vst1q_f32(y.add(4 * k), vaddq_f32(vmulq_f32(d, v), m));
    }
}

/// y[0..16] = d·q − m
#[inline(always)]
unsafe fn store_mul_sub(y: *mut f32, q: int8x16_t, d: float32x4_t, m: float32x4_t) {
    for (k, v) in widen(q).into_iter().enumerate() {
        vst1q_f32(y.add(4 * k), vsubq_f32(vmulq_f32(d, v), m));
    }
}

#[inline(always)]
unsafe fn load16(p: *const u8) -> uint8x16_t {
    vld1q_u8(p)
}

#[inline(always)]
unsafe fn s8(x: uint8x16_t) -> int8x16_t {
    vreinterpretq_s8_u8(x)
}

#[inline(always)]
unsafe fn low_nibbles(x: uint8x16_t) -> uint8x16_t {
    vandq_u8(x, vdupq_n_u8(15))
}

#[inline(always)]
unsafe fn high_nibbles(x: uint8x16_t) -> uint8x16_t {
    vshrq_n_u8(x, 4)
}

/// Bytes (x >> shift) & mask, for shift < 8.
#[inline(always)]
unsafe fn bits(x: uint8x16_t, shift: i32, mask: u8) -> uint8x16_t {
    vandq_u8(vshlq_u8(x, vdupq_n_s8(-shift as i8)), vdupq_n_u8(mask))
}

/// 16 bytes, byte j = 0x10 if bit (`first` + j) of `h` is set, else 0.
#[inline(always)]
pub(in crate::quant) unsafe fn bits_to_16(h: u32, first: u32) -> uint8x16_t {
    let v = h >> first;
    let bytes = vcombine_u8(vdup_n_u8(v as u8), vdup_n_u8((v >> 8) as u8));
    let mask = vreinterpretq_u8_u64(vdupq_n_u64(0x8040_2010_0804_0201));
    vandq_u8(vtstq_u8(bytes, mask), vdupq_n_u8(0x10))
}

#[inline(always)]
unsafe fn lut16(table: &[i8; 16]) -> int8x16_t {
    vld1q_s8(table.as_ptr())
}

/// Four f16 (raw bits) widened to f32 (`fcvtl`, exact). Inline assembly: the intrinsic's
/// `float16x4_t` argument type is not stable Rust.
#[inline(always)]
pub(crate) unsafe fn f16x4_to_f32(h: uint16x4_t) -> float32x4_t {
    let out: float32x4_t;
    std::arch::asm!("fcvtl {o:v}.4s, {i:v}.4h", o = lateout(vreg) out, i = in(vreg) h, options(pure, nomem, nostack));
    out
}

// ---- kernels ------------------------------------------------------------------------

unsafe fn f16_imp(b: &[u8], y: &mut [f32]) {
    let n = b.len() / 2;
    let mut i = 0;
    while i + 8 <= n {
        let h = vld1q_u16(b.as_ptr().add(2 * i) as *const u16);
        vst1q_f32(y.as_mut_ptr().add(i), f16x4_to_f32(vget_low_u16(h)));
        vst1q_f32(y.as_mut_ptr().add(i + 4), f16x4_to_f32(vget_high_u16(h)));
        i += 8;
    }
    crate::quant::float::decode_f16(&b[2 * i..], &mut y[i..n]);
}

unsafe fn bf16_imp(b: &[u8], y: &mut [f32]) {
    let n = b.len() / 2;
    let mut i = 0;
    while i + 8 <= n {
        let h = vld1q_u16(b.as_ptr().add(2 * i) as *const u16);
        vst1q_f32(y.as_mut_ptr().add(i), vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16)));
        vst1q_f32(y.as_mut_ptr().add(i + 4), vreinterpretq_f32_u32(vshll_high_n_u16(h, 16)));
        i += 8;
    }
    crate::quant::float::decode_bf16(&b[2 * i..], &mut y[i..n]);
}

unsafe fn q4_0_imp(b: &[u8], y: &mut [f32]) {
    let eight = vdupq_n_s8(8);
    for (blk, out) in b.chunks_exact(18).zip(y.chunks_exact_mut(32)) {
        let d = vdupq_n_f32(f16_at(blk, 0));
        let qs = load16(blk.as_ptr().add(2));
        let o = out.as_mut_ptr();
        store_mul(o, vsubq_s8(s8(low_nibbles(qs)), eight), d);
        store_mul(o.add(16), vsubq_s8(s8(high_nibbles(qs)), eight), d);
    }
}

unsafe fn q4_1_imp(b: &[u8], y: &mut [f32]) {
    for (blk, out) in b.chunks_exact(20).zip(y.chunks_exact_mut(32)) {
        let d = vdupq_n_f32(f16_at(blk, 0));
        let m = vdupq_n_f32(f16_at(blk, 2));
        let qs = load16(blk.as_ptr().add(4));
        let o = out.as_mut_ptr();
        store_mul_add(o, s8(low_nibbles(qs)), d, m);
        store_mul_add(o.add(16), s8(high_nibbles(qs)), d, m);
    }
}

unsafe fn q5_0_imp(b: &[u8], y: &mut [f32]) {
    let sixteen = vdupq_n_s8(16);
    for (blk, out) in b.chunks_exact(22).zip(y.chunks_exact_mut(32)) {
        let d = vdupq_n_f32(f16_at(blk, 0));
        let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
        let qs = load16(blk.as_ptr().add(6));
        let lo = vorrq_u8(low_nibbles(qs), bits_to_16(qh, 0));
        let hi = vorrq_u8(high_nibbles(qs), bits_to_16(qh, 16));
        let o = out.as_mut_ptr();
        store_mul(o, vsubq_s8(s8(lo), sixteen), d);
        store_mul(o.add(16), vsubq_s8(s8(hi), sixteen), d);
    }
}

unsafe fn q5_1_imp(b: &[u8], y: &mut [f32]) {
    for (blk, out) in b.chunks_exact(24).zip(y.chunks_exact_mut(32)) {
        let d = vdupq_n_f32(f16_at(blk, 0));
        let m = vdupq_n_f32(f16_at(blk, 2));
        let qh = u32::from_le_bytes([blk[4], blk[5], blk[6], blk[7]]);
        let qs = load16(blk.as_ptr().add(8));
        let lo = vorrq_u8(low_nibbles(qs), bits_to_16(qh, 0));
        let hi = vorrq_u8(high_nibbles(qs), bits_to_16(qh, 16));
        let o = out.as_mut_ptr();
        store_mul_add(o, s8(lo), d, m);
        store_mul_add(o.add(16), s8(hi), d, m);
    }
}

unsafe fn q8_0_imp(b: &[u8], y: &mut [f32]) {
    for (blk, out) in b.chunks_exact(34).zip(y.chunks_exact_mut(32)) {
        let d = vdupq_n_f32(f16_at(blk, 0));
        let o = out.as_mut_ptr();
        store_mul(o, s8(load16(blk.as_ptr().add(2))), d);
        store_mul(o.add(16), s8(load16(blk.as_ptr().add(18))), d);
    }
}

unsafe fn q2_k_imp(b: &[u8], y: &mut [f32]) {
    for (blk, out) in b.chunks_exact(84).zip(y.chunks_exact_mut(256)) {
        let d = f16_at(blk, 80);
        let dmin = f16_at(blk, 82);
        let o = out.as_mut_ptr();
        for n in 0..2 {
            for h in 0..2 {
                let q = load16(blk.as_ptr().add(16 + 32 * n + 16 * h));
                for j in 0..4 {
                    let sc = blk[8 * n + 2 * j + h];
                    let dl = vdupq_n_f32(d * (sc & 15) as f32);
                    let ml = vdupq_n_f32(dmin * (sc >> 4) as f32);
                    store_mul_sub(o.add(128 * n + 32 * j + 16 * h), s8(bits(q, 2 * j as i32, 3)), dl, ml);
                }
            }
        }
    }
}

unsafe fn q3_k_imp(b: &[u8], y: &mut [f32]) {
    let four = vdupq_n_u8(4);
    for (blk, out) in b.chunks_exact(110).zip(y.chunks_exact_mut(256)) {
        let sc = q3_k::scales(&blk[96..108]);
        let d = f16_at(blk, 108);
        let o = out.as_mut_ptr();
        for h in 0..2 {
            let hm = load16(blk.as_ptr().add(16 * h));
            for n in 0..2 {
                let q = load16(blk.as_ptr().add(32 + 32 * n + 16 * h));
                for j in 0..4 {
                    let set = vtstq_u8(hm, vdupq_n_u8(1u8 << (4 * n + j)));
                    let v = vsubq_s8(s8(bits(q, 2 * j as i32, 3)), s8(vbicq_u8(four, set)));
                    let dl = vdupq_n_f32(d * sc[8 * n + 2 * j + h] as f32);
                    store_mul(o.add(128 * n + 32 * j + 16 * h), v, dl);
                }
            }
        }
    }
}

unsafe fn q4_k_imp(b: &[u8], y: &mut [f32]) {
    for (blk, out) in b.chunks_exact(144).zip(y.chunks_exact_mut(256)) {
        let d = f16_at(blk, 0);
        let dmin = f16_at(blk, 2);
        let s = &blk[4..16];
        let o = out.as_mut_ptr();
        for c in 0..4 {
            let (sc0, m0) = q4_k::scale_min(2 * c, s);
            let (sc1, m1) = q4_k::scale_min(2 * c + 1, s);
            let d0 = vdupq_n_f32(d * sc0 as f32);
            let dm0 = vdupq_n_f32(dmin * m0 as f32);
            let d1 = vdupq_n_f32(d * sc1 as f32);
            let dm1 = vdupq_n_f32(dmin * m1 as f32);
            for half in 0..2 {
                let q = load16(blk.as_ptr().add(16 + 32 * c + 16 * half));
                store_mul_sub(o.add(64 * c + 16 * half), s8(low_nibbles(q)), d0, dm0);
                store_mul_sub(o.add(64 * c + 32 + 16 * half), s8(high_nibbles(q)), d1, dm1);
            }
        }
    }
}

unsafe fn q5_k_imp(b: &[u8], y: &mut [f32]) {
    for (blk, out) in b.chunks_exact(176).zip(y.chunks_exact_mut(256)) {
        let d = f16_at(blk, 0);
        let dmin = f16_at(blk, 2);
        let s = &blk[4..16];
        let o = out.as_mut_ptr();
        for c in 0..4 {
            let (sc0, m0) = q4_k::scale_min(2 * c, s);
            let (sc1, m1) = q4_k::scale_min(2 * c + 1, s);
            let d0 = vdupq_n_f32(d * sc0 as f32);
            let dm0 = vdupq_n_f32(dmin * m0 as f32);
            let d1 = vdupq_n_f32(d * sc1 as f32);
            let dm1 = vdupq_n_f32(dmin * m1 as f32);
            for half in 0..2 {
                let qh = load16(blk.as_ptr().add(16 + 16 * half));
                let h0 = vshlq_n_u8(bits(qh, 2 * c as i32, 1), 4);
                let h1 = vshlq_n_u8(bits(qh, 2 * c as i32 + 1, 1), 4);
                let q = load16(blk.as_ptr().add(48 + 32 * c + 16 * half));
                store_mul_sub(o.add(64 * c + 16 * half), s8(vorrq_u8(low_nibbles(q), h0)), d0, dm0);
                store_mul_sub(o.add(64 * c + 32 + 16 * half), s8(vorrq_u8(high_nibbles(q), h1)), d1, dm1);
            }
        }
    }
}

unsafe fn q6_k_imp(b: &[u8], y: &mut [f32]) {
    let m32 = vdupq_n_s8(32);
    for (blk, out) in b.chunks_exact(210).zip(y.chunks_exact_mut(256)) {
        let d = f16_at(blk, 208);
        let o = out.as_mut_ptr();
        for n in 0..2 {
            let sc = &blk[192 + 8 * n..200 + 8 * n];
            for i in 0..2 {
                let l = 16 * i;
                let ql0 = load16(blk.as_ptr().add(64 * n + l));
                let ql1 = load16(blk.as_ptr().add(64 * n + 32 + l));
                let qh = load16(blk.as_ptr().add(128 + 32 * n + l));
                let q1 = vorrq_u8(low_nibbles(ql0), vshlq_n_u8(bits(qh, 0, 3), 4));
                let q2 = vorrq_u8(low_nibbles(ql1), vshlq_n_u8(bits(qh, 2, 3), 4));
                let q3 = vorrq_u8(high_nibbles(ql0), vshlq_n_u8(bits(qh, 4, 3), 4));
                let q4 = vorrq_u8(high_nibbles(ql1), vshlq_n_u8(bits(qh, 6, 3), 4));
                let base = o.add(128 * n + l);
                for (k, q) in [q1, q2, q3, q4].into_iter().enumerate() {
                    let dl = vdupq_n_f32(d * (sc[i + 2 * k] as i8) as f32);
                    store_mul(base.add(32 * k), vsubq_s8(s8(q), m32), dl);
                }
            }
        }
    }
}

unsafe fn iq4_nl_imp(b: &[u8], y: &mut [f32]) {
    let lut = lut16(&KVALUES);
    for (blk, out) in b.chunks_exact(18).zip(y.chunks_exact_mut(32)) {
        let d = vdupq_n_f32(f16_at(blk, 0));
        let qs = load16(blk.as_ptr().add(2));
        let o = out.as_mut_ptr();
        store_mul(o, vqtbl1q_s8(lut, low_nibbles(qs)), d);
        store_mul(o.add(16), vqtbl1q_s8(lut, high_nibbles(qs)), d);
    }
}

unsafe fn iq4_xs_imp(b: &[u8], y: &mut [f32]) {
    let lut = lut16(&KVALUES);
    for (blk, out) in b.chunks_exact(136).zip(y.chunks_exact_mut(256)) {
        let d = f16_at(blk, 0);
        let scales_h = u16::from_le_bytes([blk[2], blk[3]]);
        let o = out.as_mut_ptr();
        for ib in 0..8 {
            let ls = ((blk[4 + ib / 2] >> (4 * (ib % 2))) & 15) | ((((scales_h >> (2 * ib)) & 3) as u8) << 4);
            let dl = vdupq_n_f32(d * (ls as i32 - 32) as f32);
            let qs = load16(blk.as_ptr().add(8 + 16 * ib));
            store_mul(o.add(32 * ib), vqtbl1q_s8(lut, low_nibbles(qs)), dl);
            store_mul(o.add(32 * ib + 16), vqtbl1q_s8(lut, high_nibbles(qs)), dl);
        }
    }
}

unsafe fn mxfp4_imp(b: &[u8], y: &mut [f32]) {
    let lut = lut16(&MXFP4_VALUES);
    for (blk, out) in b.chunks_exact(17).zip(y.chunks_exact_mut(32)) {
        let d = vdupq_n_f32(e8m0_half(blk[0]));
        let qs = load16(blk.as_ptr().add(1));
        let o = out.as_mut_ptr();
        store_mul(o, vqtbl1q_s8(lut, low_nibbles(qs)), d);
        store_mul(o.add(16), vqtbl1q_s8(lut, high_nibbles(qs)), d);
    }
}

unsafe fn tq2_0_imp(b: &[u8], y: &mut [f32]) {
    let one = vdupq_n_s8(1);
    for (blk, out) in b.chunks_exact(66).zip(y.chunks_exact_mut(256)) {
        let d = vdupq_n_f32(f16_at(blk, 64));
        let o = out.as_mut_ptr();
        for a in 0..2 {
            for half in 0..2 {
                let q = load16(blk.as_ptr().add(32 * a + 16 * half));
                for l in 0..4 {
                    let v = vsubq_s8(s8(bits(q, 2 * l as i32, 3)), one);
                    store_mul(o.add(128 * a + 32 * l + 16 * half), v, d);
                }
            }
        }
    }
}
