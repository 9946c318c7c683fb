//! Integer dot products of one weight row (quantized blocks, as stored in the GGUF) with one
//! quantized activation row ([`super::q8`]), as llama.cpp's `ggml_vec_dot_<w>_<act>` compute
//! them: integer products summed within a block, then the block's `d_w·d_a` applied in f32.
//!
//! These are the scalar references; `quant/x86/` holds the AVX2 twins, which give bit-identical
//! results because the summation structure is fixed here (the kernel table,
//! [`crate::quant::kernels`], lists both per type):
//!
//! * 32-element formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): eight lanes, lane `l` holding the
//!   integer sum over elements `4l..4l+4` of a block; each lane is accumulated across blocks as
//!   `acc[l] = fma(d_w·d_a, lane, acc[l])`; the lanes are added as [`hsum8`]; Q4_1/Q5_1 add
//!   `Σ m_w·s_a` (block order) at the end.
//! * Q6_K: the same eight lanes over each super-block (lane `l`: elements with `(e mod 32)/4 =
//!   l`), `acc[l] = fma(d_a·d_w, lane, acc[l])`, [`hsum8`] ([`dot_q6_k`]); for batches of 8 or
//!   more rows llama.cpp's tiled matmul order instead ([`dot_q6_k_tiled`]).
//! * Q4_K: the whole super-block's integer sum (scales applied, the minimum term from the
//!   activation's `bsums`), then `acc += (d_w·d_a)·sumi` in f32.

use super::kquants::q4_k::scale_min;
use super::q8::{BlockQ8, BlockQ8K};
use super::util::f16_at;

/// Dot of a weight row (whole 32-element blocks) with Q8_0/Q8_1 activation blocks.
pub type DotQ8 = fn(&[u8], &[BlockQ8]) -> f32;
/// Dot of a weight row (whole 256-element super-blocks) with Q8_K activation blocks.
pub type DotQ8K = fn(&[u8], &[BlockQ8K]) -> f32;

/// A dot kernel for one weight type, by activation format.
#[derive(Clone, Copy, Debug)]
pub enum DotKernel {
    /// Against Q8_0 / Q8_1 activations.
    Q8(DotQ8),
    /// Against Q8_K activations.
    Q8K(DotQ8K),
}

/// The fixed lane reduction shared by the scalar and AVX2 kernels (ggml's `hsum_float_8`
/// order): `((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7))`.
#[inline(always)]
pub fn hsum8(a: [f32; 8]) -> f32 {
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

/// Shared body of the 32-element formats: `unpack(block) → (d_w, m_w, codes)`; `m_w` is
/// `None` for the symmetric formats.
#[inline(always)]
fn legacy_dot(w: &[u8], a: &[BlockQ8], ts: usize, unpack: impl Fn(&[u8]) -> (f32, Option<f32>, [i32; 32])) -> f32 {
    assert_eq!(w.len(), a.len() * ts, "weight row and activation row differ in length");
    let mut acc = [0f32; 8];
    let mut summs = 0f32;
    for (blk, ab) in w.chunks_exact(ts).zip(a) {
        let (d, m, q) = unpack(blk);
        let dd = d * ab.d;
        for (l, acc_l) in acc.iter_mut().enumerate() {
            let lane: i32 = (4 * l..4 * l + 4).map(|e| q[e] * ab.qs[e] as i32).sum();
            *acc_l = dd.mul_add(lane as f32, *acc_l);
        }
        if let Some(m) = m {
            summs += m * ab.s;
        }
    }
    hsum8(acc) + summs
}

fn nibbles(qs: &[u8], off: i32) -> [i32; 32] {
    let mut q = [0i32; 32];
    for j in 0..16 {
        q[j] = (qs[j] & 15) as i32 - off;
        q[j + 16] = (qs[j] >> 4) as i32 - off;
    }
    q
}

fn five_bits(qs: &[u8], qh: u32, off: i32) -> [i32; 32] {
    let mut q = [0i32; 32];
    for j in 0..16 {
        q[j] = ((qs[j] & 15) as i32 | (((qh >> j) & 1) << 4) as i32) - off;
        q[j + 16] = ((qs[j] >> 4) as i32 | (((qh >> (j + 16)) & 1) << 4) as i32) - off;
    }
    q
}

fn qh_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Q4_0 · Q8_0.
pub fn dot_q4_0(w: &[u8], a: &[BlockQ8]) -> f32 {
    legacy_dot(w, a, 18, |b| (f16_at(b, 0), None, nibbles(&b[2..18], 8)))
}

/// Q4_1 · Q8_1.
pub fn dot_q4_1(w: &[u8], a: &[BlockQ8]) -> f32 {
    legacy_dot(w, a, 20, |b| (f16_at(b, 0), Some(f16_at(b, 2)), nibbles(&b[4..20], 0)))
}

/// Q5_0 · Q8_0.
pub fn dot_q5_0(w: &[u8], a: &[BlockQ8]) -> f32 {
    legacy_dot(w, a, 22, |b| (f16_at(b, 0), None, five_bits(&b[6..22], qh_at(b, 2), 16)))
}

/// Q5_1 · Q8_1.
pub fn dot_q5_1(w: &[u8], a: &[BlockQ8]) -> f32 {
    legacy_dot(w, a, 24, |b| (f16_at(b, 0), Some(f16_at(b, 2)), five_bits(&b[8..24], qh_at(b, 4), 0)))
}

/// Q8_0 · Q8_0.
pub fn dot_q8_0(w: &[u8], a: &[BlockQ8]) -> f32 {
    legacy_dot(w, a, 34, |b| {
        let mut q = [0i32; 32];
        q.iter_mut().zip(&b[2..34]).for_each(|(v, &c)| *v = c as i8 as i32);
        (f16_at(b, 0), None, q)
    })
}

/// Q4_K · Q8_K.
pub fn dot_q4_k(w: &[u8], a: &[BlockQ8K]) -> f32 {
    assert_eq!(w.len(), a.len() * 144, "weight row and activation row differ in length");
    let (mut acc, mut accm) = (0f32, 0f32);
    for (b, ab) in w.chunks_exact(144).zip(a) {
        let s = &b[4..16];
        let qs = &b[16..144];
        let (mut sumi, mut summ) = (0i32, 0i32);
        for c in 0..4 {
            let (sc0, m0) = scale_min(2 * c, s);
            let (sc1, m1) = scale_min(2 * c + 1, s);
            let q = &qs[32 * c..32 * c + 32];
            let a8 = &ab.qs[64 * c..64 * c + 64];
            let s0: i32 = (0..32).map(|l| (q[l] & 15) as i32 * a8[l] as i32).sum();
            let s1: i32 = (0..32).map(|l| (q[l] >> 4) as i32 * a8[32 + l] as i32).sum();
            sumi += sc0 as i32 * s0 + sc1 as i32 * s1;
            let bs = &ab.bsums[4 * c..4 * c + 4];
            summ += m0 as i32 * (bs[0] as i32 + bs[1] as i32) + m1 as i32 * (bs[2] as i32 + bs[3] as i32);
        }
        acc += (f16_at(b, 0) * ab.d) * sumi as f32;
        accm += (f16_at(b, 2) * ab.d) * summ as f32;
    }
    acc - accm
}

/// The 6-bit codes (0..63) of one Q6_K super-block, in element order.
#[inline(always)]
pub(crate) fn q6_k_codes(b: &[u8]) -> [i32; 256] {
    let mut q = [0i32; 256];
    for n in 0..2 {
        let ql = &b[64 * n..64 * n + 64];
        let qh = &b[128 + 32 * n..128 + 32 * n + 32];
        for l in 0..32 {
            let e = 128 * n + l;
            q[e] = ((ql[l] & 15) | ((qh[l] & 3) << 4)) as i32;
            q[e + 32] = ((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) as i32;
            q[e + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32;
            q[e + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32;
        }
    }
    q
}

/// Q6_K · Q8_K as `ggml_vec_dot_q6_K_q8_K` (AVX2) sums it: eight lanes, lane `l` holding the
/// scaled integer sum `Σ scale·q·a` over the elements `e` of the super-block with
/// `(e mod 32) / 4 = l`, minus `32·(bsum_{2l}·scale_{2l} + bsum_{2l+1}·scale_{2l+1})` (the
/// offset of the codes, taken from the activation's 16-element sums); each lane accumulated
/// across super-blocks as `acc[l] = fma(d_a·d_w, lane, acc[l])`, then [`hsum8`]. llama.cpp takes
/// this path for batches of fewer than 8 activation rows.
pub fn dot_q6_k(w: &[u8], a: &[BlockQ8K]) -> f32 {
    assert_eq!(w.len(), a.len() * 210, "weight row and activation row differ in length");
    let mut acc = [0f32; 8];
    for (b, ab) in w.chunks_exact(210).zip(a) {
        let q = q6_k_codes(b);
        let sc = &b[192..208];
        let mut lanes = [0i32; 8];
        for (e, &qe) in q.iter().enumerate() {
            lanes[(e % 32) / 4] += sc[e / 16] as i8 as i32 * (qe * ab.qs[e] as i32);
        }
        for (l, lane) in lanes.iter_mut().enumerate() {
            let sub = ab.bsums[2 * l] as i32 * sc[2 * l] as i8 as i32 + ab.bsums[2 * l + 1] as i32 * sc[2 * l + 1] as i8 as i32;
            *lane -= sub << 5;
        }
        let d = ab.d * f16_at(b, 208);
        for l in 0..8 {
            acc[l] = d.mul_add(lanes[l] as f32, acc[l]);
        }
    }
    hsum8(acc)
}

/// The exact integer sum `Σ_g scale_g·Σ_{e∈g} (q_e − 32)·a_e` of one Q6_K super-block.
#[inline(always)]
fn q6_k_sumi(b: &[u8], ab: &BlockQ8K) -> i32 {
    let q = q6_k_codes(b);
    let sc = &b[192..208];
    (0..16)
        .map(|g| {
            let raw: i32 = (16 * g..16 * g + 16).map(|e| q[e] * ab.qs[e] as i32).sum();
            sc[g] as i8 as i32 * (raw - 32 * ab.bsums[g] as i32)
        })
        .sum()
}

/// Q6_K · Q8_K as llama.cpp's tiled K-quant matmul (`ggml-cpu/tiled`, AVX2 micro-kernel) sums
/// it, which serves batches of 8 or more activation rows: per super-block the exact integer sum
/// `s` ([`q6_k_sumi`]), `r = d_w·f32(s)`, and `acc = fma(r, d_a, acc)` in super-block order.
pub fn dot_q6_k_tiled(w: &[u8], a: &[BlockQ8K]) -> f32 {
    assert_eq!(w.len(), a.len() * 210, "weight row and activation row differ in length");
    let mut acc = 0f32;
    for (b, ab) in w.chunks_exact(210).zip(a) {
        let r = f16_at(b, 208) * q6_k_sumi(b, ab) as f32;
        acc = r.mul_add(ab.d, acc);
    }
    acc
}
