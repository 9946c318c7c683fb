//! Activation quantization as llama.cpp's CPU backend does it before a quantized matmul: each
//! activation row is converted to the weight type's `vec_dot_type` (Q8_0 for Q4_0/Q5_0/Q8_0,
//! Q8_1 for Q4_1/Q5_1, Q8_K for the k-quants), then dotted with the weight blocks in integers.
//!
//! The scalar functions here restate ggml's CPU quantizers (the x86 `quantize_row_q8_0` /
//! `quantize_row_q8_1`, which llama.cpp runs on AVX/AVX2 machines, and `quantize_row_q8_K_ref`):
//!
//! * Q8_0 / Q8_1: `amax = max|x|`, `d = amax/127` (stored as f16), `id = 127/amax` (0 when
//!   amax = 0), `q = round_half_even(x·id)`; Q8_1 also stores `s = f16(d·Σq)` with the f32 `d`.
//! * Q8_K: `max` = the first element of largest magnitude (signed), `iscale = −127/max`,
//!   `q = min(127, nearest_int(iscale·x))`, `bsums[g] = Σ` of each 16 codes, `d = 1/iscale` (f32).
//!
//! The AVX2 twins live in `quant/x86/vecdot.rs` (x86-64 only); both are bit-identical, and
//! [`crate::quant::quantize_rows`] takes the fastest through the kernel table. Blocks are kept in an
//! unpacked form (the f16 scales already widened to f32); [`BlockQ8::to_ggml_q8_0`],
//! [`BlockQ8::to_ggml_q8_1`] and [`BlockQ8K::to_ggml`] give ggml's byte layout for comparisons.

use super::util::{f16_round, nearest_int, put_f16};

/// One 32-element Q8_0 or Q8_1 activation block.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ8 {
    /// The scale, rounded to f16 (as stored by ggml) and widened back to f32.
    pub d: f32,
    /// Q8_1 only: `d·Σqs` rounded to f16 and widened (0 for Q8_0).
    pub s: f32,
    /// The codes.
    pub qs: [i8; 32],
}

/// One 256-element Q8_K activation block.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ8K {
    /// The scale (f32).
    pub d: f32,
    /// The codes.
    pub qs: [i8; 256],
    /// Sums of each 16 consecutive codes.
    pub bsums: [i16; 16],
}

impl Default for BlockQ8 {
    fn default() -> Self {
        BlockQ8 { d: 0.0, s: 0.0, qs: [0; 32] }
    }
}

impl Default for BlockQ8K {
    fn default() -> Self {
        BlockQ8K { d: 0.0, qs: [0; 256], bsums: [0; 16] }
    }
}

impl BlockQ8 {
    /// ggml's `block_q8_0` bytes (34).
    pub fn to_ggml_q8_0(&self, out: &mut Vec<u8>) {
        let at = out.len();
        out.resize(at + 2, 0);
        put_f16(out, at, self.d);
        out.extend(self.qs.iter().map(|&q| q as u8));
    }
    /// ggml's `block_q8_1` bytes (36).
    pub fn to_ggml_q8_1(&self, out: &mut Vec<u8>) {
        let at = out.len();
        out.resize(at + 4, 0);
        put_f16(out, at, self.d);
        put_f16(out, at + 2, self.s);
        out.extend(self.qs.iter().map(|&q| q as u8));
    }
}

impl BlockQ8K {
    /// ggml's `block_q8_K` bytes (292).
    pub fn to_ggml(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.d.to_le_bytes());
        out.extend(self.qs.iter().map(|&q| q as u8));
        for b in self.bsums {
            out.extend_from_slice(&b.to_le_bytes());
        }
    }
}

/// Scalar Q8_0 (`SUM = false`) or Q8_1 (`SUM = true`) quantization of `x` (a multiple of 32).
pub fn quantize_q8_scalar<const SUM: bool>(x: &[f32], out: &mut [BlockQ8]) {
    assert_eq!(x.len(), out.len() * 32, "quantize_q8: x must hold 32 values per block");
    for (xb, b) in x.chunks_exact(32).zip(out.iter_mut()) {
        let amax = xb.iter().fold(0f32, |m, &v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in b.qs.iter_mut().zip(xb) {
            let r = (v * id).round_ties_even() as i32;
            *q = r.clamp(-128, 127) as i8;
            sum += r;
        }
        b.d = f16_round(d);
        b.s = if SUM { f16_round(d * sum as f32) } else { 0.0 };
    }
}

/// Scalar Q8_K quantization of `x` (a multiple of 256), ggml's `quantize_row_q8_K_ref`.
pub fn quantize_q8k_scalar(x: &[f32], out: &mut [BlockQ8K]) {
    assert_eq!(x.len(), out.len() * 256, "quantize_q8k: x must hold 256 values per block");
    for (xb, b) in x.chunks_exact(256).zip(out.iter_mut()) {
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            *b = BlockQ8K::default();
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in b.qs.iter_mut().zip(xb) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for (g, s) in b.bsums.iter_mut().enumerate() {
            *s = b.qs[16 * g..16 * g + 16].iter().map(|&q| q as i16).sum();
        }
        b.d = 1.0 / iscale;
    }
}

/// Quantized activation rows in the format a weight type needs.
#[derive(Clone, Debug)]
pub enum Q8Rows {
    /// Q8_0 or Q8_1 blocks, `blocks_per_row` per row.
    Q8(Vec<BlockQ8>),
    /// Q8_K blocks.
    Q8K(Vec<BlockQ8K>),
}
