//! Q4_K matmuls with the numerics of llama.cpp's *repacked* CPU path.
//!
//! On AVX2 machines llama.cpp does not run `ggml_vec_dot_q4_K_q8_K` for Q4_K weights whose row
//! count is a multiple of 8: it repacks them (`block_q4_Kx8`, 8 rows interleaved 8 bytes at a
//! time) and its `forward_mul_mat` splits the `t` activation rows as
//!
//! * rows `0 .. t − t%4`, four at a time: quantized by `ggml_quantize_mat_q8_K_4x8`, multiplied by
//!   `ggml_gemm_q4_K_8x8_q8_K`;
//! * the `t%4` remaining rows: quantized by `quantize_row_q8_K`, multiplied by
//!   `ggml_gemv_q4_K_8x8_q8_K`.
//!
//! The layout change does not change any integer, only the float accumulation order, so this
//! module reads the original `block_q4_K` rows in place. Per output, with `S_j` the integer dot of
//! sub-block `j`'s codes with the activation codes, `sc_j`/`m_j` its 6-bit scale/min and `B_j` the
//! activation's code sum over it (two `bsums`):
//!
//! * gemv: per super-block `acc = fma(Σ_j sc_j·S_j, d·d_a, acc)`, `accm = fma(Σ_j m_j·B_j, dmin·d_a,
//!   accm)`; result `acc − accm`.
//! * gemm: the same but one `fma` per *pair* of sub-blocks `(2s, 2s+1)`, four per super-block.
//!
//! The 4-row quantizer equals `quantize_row_q8_K` except for the sign of the scale when a block
//! holds both `+amax` and `−amax`: ggml's reference takes the first, the 4x8 AVX2 quantizer prefers
//! `+amax` ([`quantize_q8k_4x8`]).
//!
//! [`gemv_scalar`] / [`gemm4_scalar`] are the references; the AVX2 twins (`quant/x86/q4k.rs`) are
//! bit-identical because only the integer sums are vectorized. The activation rows of this path
//! come from [`crate::quant::quantize_rows_4x8`]; the kernel table lists the kernels
//! ([`crate::quant::TypeKernels::repacked`]).

use super::kquants::q4_k::scale_min;
use super::q8::BlockQ8K;
use super::util::{f16_at, nearest_int};

/// One weight row (whole Q4_K blocks) against one Q8_K activation row, gemv numerics.
pub type GemvFn = fn(&[u8], &[BlockQ8K]) -> f32;
/// One weight row against four Q8_K activation rows, gemm numerics.
pub type Gemm4Fn = fn(&[u8], [&[BlockQ8K]; 4]) -> [f32; 4];

/// Q8_K quantization of whole 256-element blocks as `ggml_quantize_mat_q8_K_4x8` (AVX2) does it:
/// `iscale = −127/amax` when some element equals `+amax`, else `127/amax`;
/// `q = round_half_even(iscale·x)` saturated to i8; `d = 1/iscale` (all 0 when `amax = 0`).
pub fn quantize_q8k_4x8(x: &[f32], out: &mut [BlockQ8K]) {
    assert_eq!(x.len(), out.len() * 256, "quantize_q8k_4x8: x must hold 256 values per block");
    for (xb, b) in x.chunks_exact(256).zip(out.iter_mut()) {
        let amax = xb.iter().fold(0f32, |m, &v| m.max(v.abs()));
        if amax == 0.0 {
            *b = BlockQ8K::default();
            continue;
        }
        let iscale = if xb.contains(&amax) { -127.0 / amax } else { 127.0 / amax };
        for (q, &v) in b.qs.iter_mut().zip(xb) {
            *q = nearest_int(iscale * v).clamp(-128, 127) as i8;
        }
        for (g, s) in b.bsums.iter_mut().enumerate() {
            *s = b.qs[16 * g..16 * g + 16].iter().map(|&q| q as i16).sum();
        }
        b.d = 1.0 / iscale;
    }
}

/// ggml's `block_q8_Kx4` bytes (1168 per block column) of four quantized rows, for comparisons:
/// `d[4]`, the codes 8 at a time from each row in turn, `bsums[16·g + 4·r + s]` = row `r`'s
/// `bsums[4·g + s]`.
pub fn to_ggml_x4(rows: [&[BlockQ8K]; 4], out: &mut Vec<u8>) {
    for b in 0..rows[0].len() {
        for r in rows {
            out.extend_from_slice(&r[b].d.to_le_bytes());
        }
        for c in 0..32 {
            for r in rows {
                out.extend(r[b].qs[8 * c..8 * c + 8].iter().map(|&q| q as u8));
            }
        }
        for g in 0..4 {
            for r in rows {
                for s in 0..4 {
                    out.extend_from_slice(&r[b].bsums[4 * g + s].to_le_bytes());
                }
            }
        }
    }
}

/// Scales, mins and the per-pair min terms `Σ m_j·B_j` (`j = 2s, 2s+1`) of one weight block
/// against one activation block.
#[inline(always)]
fn scales_and_mins(blk: &[u8], a: &BlockQ8K) -> ([i32; 8], [i32; 4]) {
    let mut sc = [0i32; 8];
    let mut mins = [0i32; 4];
    for j in 0..8 {
        let (s, m) = scale_min(j, &blk[4..16]);
        sc[j] = s as i32;
        mins[j / 2] += m as i32 * (a.bsums[2 * j] as i32 + a.bsums[2 * j + 1] as i32);
    }
    (sc, mins)
}

/// Per sub-block pair `s`: `Σ_{j=2s,2s+1} sc_j·S_j` (scalar).
#[inline(always)]
fn pair_sums_scalar(blk: &[u8], a: &BlockQ8K, sc: &[i32; 8]) -> [i32; 4] {
    let qs = &blk[16..144];
    std::array::from_fn(|c| {
        let q = &qs[32 * c..32 * c + 32];
        let a8 = &a.qs[64 * c..64 * c + 64];
        let s0: i32 = (0..32).map(|l| (q[l] & 15) as i32 * a8[l] as i32).sum();
        let s1: i32 = (0..32).map(|l| (q[l] >> 4) as i32 * a8[32 + l] as i32).sum();
        sc[2 * c] * s0 + sc[2 * c + 1] * s1
    })
}

/// The float accumulation of the gemv: one `fma` per super-block.
#[inline(always)]
fn gemv_acc(blk: &[u8], a: &BlockQ8K, pairs: [i32; 4], mins: [i32; 4], acc: &mut (f32, f32)) {
    let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
    let isum: i32 = pairs.iter().sum();
    let imin: i32 = mins.iter().sum();
    acc.0 = (isum as f32).mul_add(d * a.d, acc.0);
    acc.1 = (imin as f32).mul_add(dmin * a.d, acc.1);
}

/// The float accumulation of the gemm: one `fma` per sub-block pair.
#[inline(always)]
fn gemm_acc(blk: &[u8], a: &BlockQ8K, pairs: [i32; 4], mins: [i32; 4], acc: &mut (f32, f32)) {
    let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
    let (dd, dm) = (d * a.d, dmin * a.d);
    for s in 0..4 {
        acc.0 = (pairs[s] as f32).mul_add(dd, acc.0);
        acc.1 = (mins[s] as f32).mul_add(dm, acc.1);
    }
}

pub(crate) fn check(w: &[u8], a: &[BlockQ8K]) {
    assert_eq!(w.len(), a.len() * 144, "weight row and activation row differ in length");
}

/// `ggml_gemv_q4_K_8x8_q8_K`'s result for one weight row (scalar reference).
pub fn gemv_scalar(w: &[u8], a: &[BlockQ8K]) -> f32 {
    check(w, a);
    let mut acc = (0f32, 0f32);
    for (blk, ab) in w.chunks_exact(144).zip(a) {
        let (sc, mins) = scales_and_mins(blk, ab);
        gemv_acc(blk, ab, pair_sums_scalar(blk, ab, &sc), mins, &mut acc);
    }
    acc.0 - acc.1
}

/// `ggml_gemm_q4_K_8x8_q8_K`'s result for one weight row and one activation row of a 4-row
/// group (scalar reference).
fn gemm_scalar(w: &[u8], a: &[BlockQ8K]) -> f32 {
    check(w, a);
    let mut acc = (0f32, 0f32);
    for (blk, ab) in w.chunks_exact(144).zip(a) {
        let (sc, mins) = scales_and_mins(blk, ab);
        gemm_acc(blk, ab, pair_sums_scalar(blk, ab, &sc), mins, &mut acc);
    }
    acc.0 - acc.1
}

/// [`gemm_scalar`] for the four rows of a group.
pub fn gemm4_scalar(w: &[u8], a: [&[BlockQ8K]; 4]) -> [f32; 4] {
    a.map(|r| gemm_scalar(w, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_by_eight_quantizer_prefers_the_positive_maximum() {
        let mut x = vec![0.5f32; 256];
        x[3] = -2.0;
        x[200] = 2.0;
        let (mut a, mut b) = ([BlockQ8K::default()], [BlockQ8K::default()]);
        quantize_q8k_4x8(&x, &mut a);
        crate::quant::q8::quantize_q8k_scalar(&x, &mut b);
        assert_eq!((a[0].qs[3], a[0].qs[200], a[0].d.is_sign_negative()), (127, -127, true));
        assert_eq!((b[0].qs[3], b[0].qs[200]), (-127, 127));
        x[3] = 1.0;
        quantize_q8k_4x8(&x, &mut a);
        crate::quant::q8::quantize_q8k_scalar(&x, &mut b);
        assert_eq!(a, b);
    }
}
