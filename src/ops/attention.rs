//! Causal multi-head attention with grouped KV heads (GQA) and an optional sliding window.
//! Queries arrive pre-scaled; the KV cache holds keys/values for positions `0..n_past + T`.

use rayon::prelude::*;

use super::attention_seq as seq;
use super::matmul::{dot, gemm_f32_bt};
use super::send_ptr::SendPtr;

/// Shapes of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (divides n_head).
    pub n_head_kv: usize,
    /// Key (and query) head width.
    pub head_dim: usize,
    /// Value head width.
    pub v_dim: usize,
    /// Sliding window: key j is visible to query i only if i − j < window.
    pub window: Option<usize>,
    /// Soft-capping of scores (gemma2): c·tanh(s/c).
    pub softcap: Option<f32>,
}

/// How scores are turned into probabilities.
#[derive(Clone, Copy, Debug)]
struct Softmax {
    /// Multiplier of the raw scores (after soft-capping), as ggml's `soft_max_ext` scale.
    scale: f32,
    /// llama.cpp's numerics: the row sum in f64 and the probabilities rounded to f16 before
    /// `P·V` (its V cache is f16, so `P` is converted to V's `vec_dot_type`, f16).
    ggml: bool,
}

impl Softmax {
    /// In-place softmax of `row` (already soft-capped); `row[0]` is the score of key position
    /// `pos0` (the ggml mode groups the row sum by absolute position, see [`ggml_softmax`]).
    #[inline]
    fn apply(self, row: &mut [f32], pos0: usize) {
        if self.scale != 1.0 {
            row.iter_mut().for_each(|d| *d *= self.scale);
        }
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if self.ggml {
            ggml_softmax(row, pos0, max);
        } else {
            let mut sum = 0f32;
            for d in row.iter_mut() {
                *d = (*d - max).exp();
                sum += *d;
            }
            let inv = 1.0 / sum;
            row.iter_mut().for_each(|d| *d *= inv);
        }
    }
}

/// ggml's AVX-512 `ggml_v_expf` (a polynomial after Arm's optimized routines) for one value:
/// the same fused multiply-adds, and `scalef` as one correctly rounded scaling by `2ⁿ`.
#[inline(always)]
pub fn ggml_expf(x: f32) -> f32 {
    let r = f32::from_bits(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(f32::from_bits(0x3fb8_aa3b), r); // 0x1.715476p+0
    let n = z - r;
    let b = (-n).mul_add(f32::from_bits(0x3f31_7200), x); // 0x1.62e4p-1
    let b = (-n).mul_add(f32::from_bits(0x35bf_be8e), b); // 0x1.7f7d1cp-20
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    let u = b * b;
    let p = f32::from_bits(0x3c07_2010).mul_add(b, f32::from_bits(0x3d2b_9f17)); // 0x1.0e4020p-7, 0x1.573e2ep-5
    let q = f32::from_bits(0x3e2a_af33).mul_add(b, f32::from_bits(0x3eff_fedb)); // 0x1.555e66p-3, 0x1.fffdb6p-2
    let w = f32::from_bits(0x3f7f_fff6).mul_add(b, 1.0); // 0x1.ffffecp-1
    let j = p.mul_add(u, q).mul_add(u, w);
    // 2ⁿ for |n| ≤ 192 built from its exponent bits: exact in f64, one rounding to f32.
    (j as f64 * f64::from_bits(((n as i64 + 1023) as u64) << 52)) as f32
}

/// llama.cpp's `soft_max` row on the CPU (AVX-512 build): `e = ggml_v_expf(s − max)`, summed
/// per 16 key positions (a tree within the 16, as `_mm512_reduce_add_ps`; masked positions add
/// 0) into an f64, then `p = e · f32(1/sum)`, rounded to f16 (V's `vec_dot_type`).
fn ggml_softmax(row: &mut [f32], pos0: usize, max: f32) {
    exp_row(row, max);
    let mut sum = 0f64;
    let end = pos0 + row.len();
    let mut c0 = pos0 / 16 * 16;
    while c0 < end {
        let mut a = [0f32; 16];
        for (l, v) in a.iter_mut().enumerate() {
            if (pos0..end).contains(&(c0 + l)) {
                *v = row[c0 + l - pos0];
            }
        }
        sum += seq::reduce16(&a) as f64;
        c0 += 16;
    }
    let inv = (1.0 / sum) as f32;
    row.iter_mut().for_each(|d| *d *= inv);
    super::f16::round_f16_inplace(row);
}

/// `row[i] = ggml_expf(row[i] − max)`, with hardware FMA where available.
fn exp_row(row: &mut [f32], max: f32) {
    #[cfg(target_arch = "aarch64")]
    if crate::quant::simd_enabled() {
        // NEON, four lanes at a time (the same bits).
        return super::vexp::ggml_exp_row(row, max);
    }
    #[cfg(target_arch = "x86_64")]
    if crate::quant::simd_enabled() {
        // SAFETY: AVX2/FMA checked by simd_enabled().
        return unsafe { exp_row_fma(row, max) };
    }
    row.iter_mut().for_each(|d| *d = ggml_expf(*d - max));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_row_fma(row: &mut [f32], max: f32) {
    row.iter_mut().for_each(|d| *d = ggml_expf(*d - max));
}

/// `out[t] = softmax(q[t]·Kᵀ) · V` for the T new tokens at positions `n_past..n_past+T`.
/// `q`: [T, n_head·head_dim]; `k_cache`: [n_ctx, n_head_kv·head_dim]; `v_cache`:
/// [n_ctx, n_head_kv·v_dim], valid for rows `0..n_past+T`; `out`: [T, n_head·v_dim].
pub fn causal_attention(s: AttnShape, q: &[f32], k_cache: &[f32], v_cache: &[f32], n_past: usize, out: &mut [f32]) {
    attention(s, Softmax { scale: 1.0, ggml: false }, q, k_cache, v_cache, n_past, out)
}

/// [`causal_attention`] with llama.cpp's (non-flash) CPU numerics, for inference: the caller
/// passes `q` and caches already rounded to f16 (its KV cache type, and the `vec_dot_type` `q`
/// is converted to); scores are multiplied by `score_scale` before the softmax, whose sum is
/// accumulated in f64 and whose probabilities are rounded to f16 before `P·V`.
pub fn causal_attention_ggml(s: AttnShape, score_scale: f32, q: &[f32], k_cache: &[f32], v_cache: &[f32], n_past: usize, out: &mut [f32]) {
    attention(s, Softmax { scale: score_scale, ggml: true }, q, k_cache, v_cache, n_past, out)
}

fn attention(s: AttnShape, sm: Softmax, q: &[f32], k_cache: &[f32], v_cache: &[f32], n_past: usize, out: &mut [f32]) {
    let t_new = q.len() / (s.n_head * s.head_dim);
    if t_new > 2 && !sm.ggml {
        return batched(s, sm, q, k_cache, v_cache, n_past, out);
    }
    let group = s.n_head / s.n_head_kv;
    let (qw, kw, vw, ow) = (s.n_head * s.head_dim, s.n_head_kv * s.head_dim, s.n_head_kv * s.v_dim, s.n_head * s.v_dim);
    // Multi-token ggml: the values transposed once, for the SIMD P·V kernel.
    let vcols = if sm.ggml && t_new > 1 { seq::VCols::new(v_cache, vw, s.n_head_kv, s.v_dim, n_past + t_new) } else { None };
    // One head of one token: scores, softmax, P·V into `o`.
    let head = |t: usize, h: usize, o: &mut [f32], scores: &mut Vec<f32>, acc: &mut Vec<f32>| {
        let pos = n_past + t;
        let lo = s.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        scores.clear();
        scores.resize(pos + 1 - lo, 0.0);
        let kvh = h / group;
        let qv = &q[t * qw + h * s.head_dim..t * qw + (h + 1) * s.head_dim];
        if sm.ggml && t_new == 1 {
            vecdot::scores(qv, &k_cache[kvh * s.head_dim..], kw, lo, scores);
        } else if sm.ggml {
            seq::scores(qv, &k_cache[kvh * s.head_dim..], kw, lo, scores);
        } else {
            for (j, sc) in (lo..=pos).zip(scores.iter_mut()) {
                let kv = &k_cache[j * kw + kvh * s.head_dim..j * kw + (kvh + 1) * s.head_dim];
                *sc = dot(qv, kv);
            }
        }
        if let Some(c) = s.softcap {
            scores.iter_mut().for_each(|d| *d = c * (*d / c).tanh());
        }
        sm.apply(scores, lo);
        o.fill(0.0);
        if sm.ggml && t_new == 1 {
            vecdot::weighted_sum(scores, &v_cache[kvh * s.v_dim..], vw, lo, o, acc);
        } else if let Some(vc) = &vcols {
            vc.weighted_sum(kvh, scores, lo, o);
        } else if sm.ggml {
            seq::weighted_sum(scores, &v_cache[kvh * s.v_dim..], vw, lo, o, acc);
        } else {
            for (j, &p) in (lo..=pos).zip(scores.iter()) {
                let vv = &v_cache[j * vw + kvh * s.v_dim..j * vw + (kvh + 1) * s.v_dim];
                o.iter_mut().zip(vv).for_each(|(a, &b)| *a += p * b);
            }
        }
    };
    if t_new == 1 {
        // One token (decoding): parallel over heads.
        out.par_chunks_mut(s.v_dim)
            .enumerate()
            .for_each_init(|| (Vec::new(), Vec::new()), |(scores, acc), (h, o)| head(0, h, o, scores, acc));
        return;
    }
    // Parallel over token rows of the output.
    out.par_chunks_mut(ow).enumerate().for_each(|(t, orow)| {
        let pos = n_past + t;
        let lo = s.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        let mut scores = vec![0f32; pos + 1 - lo];
        let mut acc = Vec::new();
        if let (Some(vc), true) = (&vcols, (2..=4).contains(&group) && s.head_dim % 16 == 0) {
            // The heads sharing a kv head together: K and Vᵀ read once for the group.
            let len = scores.len();
            let mut gs = vec![0f32; group * len];
            for kvh in 0..s.n_head_kv {
                let h0 = kvh * group;
                let qg = &q[t * qw + h0 * s.head_dim..t * qw + (h0 + group) * s.head_dim];
                let done = seq::scores_group(qg, s.head_dim, group, &k_cache[kvh * s.head_dim..], kw, lo, &mut gs);
                assert!(done, "grouped scores kernel refused a checked shape");
                for row in gs.chunks_exact_mut(len) {
                    if let Some(c) = s.softcap {
                        row.iter_mut().for_each(|d| *d = c * (*d / c).tanh());
                    }
                    sm.apply(row, lo);
                }
                let done = vc.weighted_sum_group(kvh, group, &gs, lo, &mut orow[h0 * s.v_dim..(h0 + group) * s.v_dim]);
                assert!(done, "grouped P·V kernel refused a checked shape");
            }
            return;
        }
        for (h, o) in orow.chunks_exact_mut(s.v_dim).enumerate() {
            head(t, h, o, &mut scores, &mut acc);
        }
    });
}

/// Many new tokens: per head, `S = Q·Kᵀ` and `O = P·V` as GEMMs on the matmul micro-kernel.
fn batched(s: AttnShape, sm: Softmax, q: &[f32], k_cache: &[f32], v_cache: &[f32], n_past: usize, out: &mut [f32]) {
    let t = q.len() / (s.n_head * s.head_dim);
    let l = n_past + t;
    let group = s.n_head / s.n_head_kv;
    let (qw, kw, vw, ow) = (s.n_head * s.head_dim, s.n_head_kv * s.head_dim, s.n_head_kv * s.v_dim, s.n_head * s.v_dim);
    let op = SendPtr(out.as_mut_ptr());
    let op = &op;
    (0..s.n_head).into_par_iter().for_each_init(
        || (Vec::new(), Vec::new(), Vec::new(), Vec::new()),
        |(scores, vt, packed, oh), h| {
            let kvh = h / group;
            scores.resize(t * l, 0.0);
            gemm_f32_bt(&q[h * s.head_dim..], qw, t, &k_cache[kvh * s.head_dim..], kw, l, s.head_dim, scores, l, packed);
            for (tt, row) in scores.chunks_exact_mut(l).enumerate() {
                let pos = n_past + tt;
                let lo = s.window.map_or(0, |w| (pos + 1).saturating_sub(w));
                row[..lo].fill(0.0);
                row[pos + 1..].fill(0.0);
                let live = &mut row[lo..=pos];
                if let Some(c) = s.softcap {
                    live.iter_mut().for_each(|d| *d = c * (*d / c).tanh());
                }
                sm.apply(live, lo);
            }
            // Vᵀ of this kv head: [v_dim, l].
            vt.resize(s.v_dim * l, 0.0);
            for j in 0..l {
                let src = &v_cache[j * vw + kvh * s.v_dim..j * vw + (kvh + 1) * s.v_dim];
                for (d, &v) in src.iter().enumerate() {
                    vt[d * l + j] = v;
                }
            }
            oh.resize(t * s.v_dim, 0.0);
            gemm_f32_bt(scores, l, t, vt, l, s.v_dim, l, oh, s.v_dim, packed);
            for tt in 0..t {
                // SAFETY: head h writes only its own v_dim columns of each output row.
                unsafe {
                    let dst = op.0.add(tt * ow + h * s.v_dim);
                    std::ptr::copy_nonoverlapping(oh.as_ptr().add(tt * s.v_dim), dst, s.v_dim);
                }
            }
        },
    );
}

/// llama.cpp-numerics attention products for a single new token. llamafile's sgemm serves only
/// batches of two or more rows, so one-token decoding goes through ggml's `ggml_vec_dot_f16`
/// (AVX-512 build): elements in steps of 64, element `i` of a step into accumulator `(i/16) mod
/// 4`, lane `i mod 16`, each a chain of fused multiply-adds; accumulators 0+2 and 1+3, then
/// their sum, then the 16-lane tree of [`seq::reduce16`]; a tail past the last full step added in
/// f64. For `P·V` the index is the key position over the padded cache (masked positions hold
/// probability 0 and add nothing).
mod vecdot {
    use super::seq::reduce16;

    /// Accumulators `[4][16]` folded as `GGML_F32x16_REDUCE` does.
    #[inline(always)]
    fn fold(s: &[[f32; 16]; 4]) -> f32 {
        let x0: [f32; 16] = std::array::from_fn(|l| s[0][l] + s[2][l]);
        let x1: [f32; 16] = std::array::from_fn(|l| s[1][l] + s[3][l]);
        let x: [f32; 16] = std::array::from_fn(|l| x0[l] + x1[l]);
        reduce16(&x)
    }

    #[inline(always)]
    fn dot(x: &[f32], y: &[f32]) -> f32 {
        let n = x.len();
        let np = n & !63;
        let mut s = [[0f32; 16]; 4];
        for i in (0..np).step_by(64) {
            for (j, sj) in s.iter_mut().enumerate() {
                for (l, a) in sj.iter_mut().enumerate() {
                    let e = i + 16 * j + l;
                    *a = x[e].mul_add(y[e], *a);
                }
            }
        }
        let mut sum = fold(&s) as f64;
        for i in np..n {
            sum += (x[i] * y[i]) as f64;
        }
        sum as f32
    }

    /// `out[j − lo] = q·K[j]` for `j = lo..lo + out.len()`, `K[j] = k[j·kw..][..q.len()]`.
    pub fn scores(q: &[f32], k: &[f32], kw: usize, lo: usize, out: &mut [f32]) {
        assert!(out.is_empty() || k.len() >= (lo + out.len() - 1) * kw + q.len());
        #[cfg(target_arch = "x86_64")]
        if crate::quant::simd_enabled() {
            // SAFETY: AVX2/FMA checked by simd_enabled(); slices bounded by the assert.
            return unsafe { scores_fma(q, k, kw, lo, out) };
        }
        for (jj, o) in out.iter_mut().enumerate() {
            *o = dot(q, &k[(lo + jj) * kw..(lo + jj) * kw + q.len()]);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn scores_fma(q: &[f32], k: &[f32], kw: usize, lo: usize, out: &mut [f32]) {
        super::super::attention_one::scores(q, k, kw, lo, out)
    }

    /// `o = Σ_j p[j − lo]·V[j]` over `j = lo..lo + p.len()`, `V[j] = v[j·vw..][..o.len()]`,
    /// key position `j` in accumulator `(j/16) mod 4`, lane `j mod 16`; `acc` is scratch.
    pub fn weighted_sum(p: &[f32], v: &[f32], vw: usize, lo: usize, o: &mut [f32], acc: &mut Vec<f32>) {
        assert!(p.is_empty() || v.len() >= (lo + p.len() - 1) * vw + o.len());
        #[cfg(target_arch = "x86_64")]
        if crate::quant::simd_enabled() {
            // SAFETY: AVX2/FMA checked by simd_enabled(); rows bounded by the assert.
            return unsafe { weighted_sum_fma(p, v, vw, lo, o, acc) };
        }
        weighted_sum_body(p, v, vw, lo, o, acc)
    }

    #[inline(always)]
    fn weighted_sum_body(p: &[f32], v: &[f32], vw: usize, lo: usize, o: &mut [f32], acc: &mut Vec<f32>) {
        let n = o.len();
        acc.clear();
        acc.resize(64 * n, 0.0);
        for (jj, &pj) in p.iter().enumerate() {
            let j = lo + jj;
            let slot = (j / 16) % 4 * 16 + j % 16;
            let vr = &v[j * vw..j * vw + n];
            acc[slot * n..(slot + 1) * n].iter_mut().zip(vr).for_each(|(a, &b)| *a = pj.mul_add(b, *a));
        }
        for (d, od) in o.iter_mut().enumerate() {
            let s: [[f32; 16]; 4] = std::array::from_fn(|a| std::array::from_fn(|l| acc[(a * 16 + l) * n + d]));
            *od = fold(&s);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn weighted_sum_fma(p: &[f32], v: &[f32], vw: usize, lo: usize, o: &mut [f32], acc: &mut Vec<f32>) {
        if o.len() % 8 == 0 {
            return super::super::attention_one::weighted_sum(p, v, vw, lo, o, acc);
        }
        weighted_sum_body(p, v, vw, lo, o, acc)
    }

    #[cfg(test)]
    mod tests {
        /// The SIMD kernels against the scalar reference, bit for bit: head widths with and
        /// without a tail past 64, windows (`lo > 0`), lengths around the 16/64 slot cycles.
        #[test]
        fn one_token_kernels_give_the_reference_bits() {
            let mut seed = 5u64;
            let mut rnd = || {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            };
            for (d, stride, lo, len) in
                [(64usize, 192usize, 0usize, 1usize), (64, 64, 3, 130), (256, 256, 0, 77), (80, 160, 5, 64), (20, 40, 1, 33)]
            {
                let q: Vec<f32> = (0..d).map(|_| rnd()).collect();
                let kv: Vec<f32> = (0..(lo + len) * stride).map(|_| rnd()).collect();
                let mut got = vec![0f32; len];
                super::scores(&q, &kv, stride, lo, &mut got);
                for (jj, g) in got.iter().enumerate() {
                    let want = super::dot(&q, &kv[(lo + jj) * stride..(lo + jj) * stride + d]);
                    assert_eq!(g.to_bits(), want.to_bits(), "scores d={d} key {jj}");
                }
                let p: Vec<f32> = (0..len).map(|_| rnd().abs()).collect();
                let (mut o, mut want, mut acc) = (vec![f32::NAN; d], vec![0f32; d], Vec::new());
                super::weighted_sum(&p, &kv, stride, lo, &mut o, &mut acc);
                super::weighted_sum_body(&p, &kv, stride, lo, &mut want, &mut acc);
                let same = o.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "weighted_sum d={d} len={len} differs from the reference");
            }
        }
    }
}
