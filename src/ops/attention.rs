//! Causal multi-head attention with grouped KV heads (GQA) and an optional sliding window.
//! Queries arrive pre-scaled; the KV cache holds keys/values for positions `0..n_past + T`.

use rayon::prelude::*;

use super::matmul::{dot, gemm_f32_bt};

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
    /// In-place softmax of `row` (already soft-capped).
    #[inline]
    fn apply(self, row: &mut [f32]) {
        if self.scale != 1.0 {
            row.iter_mut().for_each(|d| *d *= self.scale);
        }
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if self.ggml {
            let mut sum = 0f64;
            for d in row.iter_mut() {
                *d = (*d - max).exp();
                sum += *d as f64;
            }
            let inv = (1.0 / sum) as f32;
            row.iter_mut().for_each(|d| *d = crate::quant::util::f16_round(*d * inv));
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
    if t_new > 2 {
        return batched(s, sm, q, k_cache, v_cache, n_past, out);
    }
    let group = s.n_head / s.n_head_kv;
    let (qw, kw, vw, ow) = (s.n_head * s.head_dim, s.n_head_kv * s.head_dim, s.n_head_kv * s.v_dim, s.n_head * s.v_dim);
    // Parallel over (token, head) rows of the output.
    out.par_chunks_mut(ow).enumerate().for_each(|(t, orow)| {
        let pos = n_past + t;
        let lo = s.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        let mut scores = vec![0f32; pos + 1 - lo];
        for h in 0..s.n_head {
            let kvh = h / group;
            let qv = &q[t * qw + h * s.head_dim..t * qw + (h + 1) * s.head_dim];
            if sm.ggml {
                seq::scores(qv, &k_cache[kvh * s.head_dim..], kw, lo, &mut scores);
            } else {
                for (j, sc) in (lo..=pos).zip(scores.iter_mut()) {
                    let kv = &k_cache[j * kw + kvh * s.head_dim..j * kw + (kvh + 1) * s.head_dim];
                    *sc = dot(qv, kv);
                }
            }
            if let Some(c) = s.softcap {
                scores.iter_mut().for_each(|d| *d = c * (*d / c).tanh());
            }
            sm.apply(&mut scores);
            let o = &mut orow[h * s.v_dim..(h + 1) * s.v_dim];
            o.fill(0.0);
            if sm.ggml {
                seq::weighted_sum(&scores, &v_cache[kvh * s.v_dim..], vw, lo, o);
            } else {
                for (j, &p) in (lo..=pos).zip(scores.iter()) {
                    let vv = &v_cache[j * vw + kvh * s.v_dim..j * vw + (kvh + 1) * s.v_dim];
                    o.iter_mut().zip(vv).for_each(|(a, &b)| *a += p * b);
                }
            }
        }
    });
}

struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

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
                sm.apply(live);
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

/// One or two new tokens in llama.cpp-numerics mode: every score and output element as one
/// sequential chain from 0 over the head width (resp. positions), exactly as the GEMM
/// micro-kernel computes each element in [`batched`] (fused multiply-adds on the AVX2 path,
/// multiply-then-add on the scalar one). Decoding with the cache then gives the same bits as
/// the full-sequence forward, which the Q8 activation rounding would otherwise amplify.
mod seq {
    /// `out[j − lo] = q·K[j]` for `j = lo..lo + out.len()`, `K[j] = k[j·kw..][..q.len()]`.
    pub fn scores(q: &[f32], k: &[f32], kw: usize, lo: usize, out: &mut [f32]) {
        assert!(out.is_empty() || k.len() >= (lo + out.len() - 1) * kw + q.len());
        #[cfg(target_arch = "x86_64")]
        if crate::quant::simd_enabled() {
            // SAFETY: AVX2/FMA checked by simd_enabled(); indices bounded by the assert.
            return unsafe { scores_fma(q, k, kw, lo, out) };
        }
        for (jj, o) in out.iter_mut().enumerate() {
            let kr = &k[(lo + jj) * kw..(lo + jj) * kw + q.len()];
            *o = q.iter().zip(kr).fold(0f32, |acc, (&a, &b)| acc + a * b);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn scores_fma(q: &[f32], k: &[f32], kw: usize, lo: usize, out: &mut [f32]) {
        let n = out.len();
        let kp = k.as_ptr();
        let mut jj = 0;
        while jj + 8 <= n {
            let mut acc = [0f32; 8];
            for (i, &qi) in q.iter().enumerate() {
                for (r, a) in acc.iter_mut().enumerate() {
                    *a = qi.mul_add(*kp.add((lo + jj + r) * kw + i), *a);
                }
            }
            out[jj..jj + 8].copy_from_slice(&acc);
            jj += 8;
        }
        for (r, o) in out[jj..].iter_mut().enumerate() {
            let base = (lo + jj + r) * kw;
            *o = q.iter().enumerate().fold(0f32, |acc, (i, &qi)| qi.mul_add(*kp.add(base + i), acc));
        }
    }

    /// `o = Σ_j p[j − lo]·V[j]` over `j = lo..lo + p.len()` in position order, `V[j] =
    /// v[j·vw..][..o.len()]`; `o` starts at zero.
    pub fn weighted_sum(p: &[f32], v: &[f32], vw: usize, lo: usize, o: &mut [f32]) {
        assert!(p.is_empty() || v.len() >= (lo + p.len() - 1) * vw + o.len());
        #[cfg(target_arch = "x86_64")]
        if crate::quant::simd_enabled() {
            // SAFETY: AVX2/FMA checked by simd_enabled(); rows bounded by the assert.
            return unsafe { weighted_sum_fma(p, v, vw, lo, o) };
        }
        for (jj, &pj) in p.iter().enumerate() {
            let vr = &v[(lo + jj) * vw..(lo + jj) * vw + o.len()];
            o.iter_mut().zip(vr).for_each(|(a, &b)| *a += pj * b);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn weighted_sum_fma(p: &[f32], v: &[f32], vw: usize, lo: usize, o: &mut [f32]) {
        for (jj, &pj) in p.iter().enumerate() {
            let vr = &v[(lo + jj) * vw..(lo + jj) * vw + o.len()];
            o.iter_mut().zip(vr).for_each(|(a, &b)| *a = pj.mul_add(b, *a));
        }
    }
}
