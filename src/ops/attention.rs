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

/// `out[t] = softmax(q[t]·Kᵀ) · V` for the T new tokens at positions `n_past..n_past+T`.
/// `q`: [T, n_head·head_dim]; `k_cache`: [n_ctx, n_head_kv·head_dim]; `v_cache`:
/// [n_ctx, n_head_kv·v_dim], valid for rows `0..n_past+T`; `out`: [T, n_head·v_dim].
pub fn causal_attention(
    s: AttnShape,
    q: &[f32],
    k_cache: &[f32],
    v_cache: &[f32],
    n_past: usize,
    out: &mut [f32],
) {
    let t_new = q.len() / (s.n_head * s.head_dim);
    if t_new > 2 {
        return batched(s, q, k_cache, v_cache, n_past, out);
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
            let mut max = f32::NEG_INFINITY;
            for (j, sc) in (lo..=pos).zip(scores.iter_mut()) {
                let kv = &k_cache[j * kw + kvh * s.head_dim..j * kw + (kvh + 1) * s.head_dim];
                let mut d = dot(qv, kv);
                if let Some(c) = s.softcap {
                    d = c * (d / c).tanh();
                }
                *sc = d;
                max = max.max(d);
            }
            let mut sum = 0f32;
            for sc in scores.iter_mut() {
                *sc = (*sc - max).exp();
                sum += *sc;
            }
            let inv = 1.0 / sum;
            let o = &mut orow[h * s.v_dim..(h + 1) * s.v_dim];
            o.fill(0.0);
            for (j, &p) in (lo..=pos).zip(scores.iter()) {
                let vv = &v_cache[j * vw + kvh * s.v_dim..j * vw + (kvh + 1) * s.v_dim];
                let w = p * inv;
                o.iter_mut().zip(vv).for_each(|(a, &b)| *a += w * b);
            }
        }
    });
}

struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// Many new tokens: per head, `S = Q·Kᵀ` and `O = P·V` as GEMMs on the matmul micro-kernel.
fn batched(s: AttnShape, q: &[f32], k_cache: &[f32], v_cache: &[f32], n_past: usize, out: &mut [f32]) {
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
                let max = live.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f32;
                for d in live.iter_mut() {
                    *d = (*d - max).exp();
                    sum += *d;
                }
                let inv = 1.0 / sum;
                live.iter_mut().for_each(|d| *d *= inv);
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
