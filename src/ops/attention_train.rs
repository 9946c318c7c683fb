//! Attention for training: one whole sequence at positions `0..T` (no KV cache), causal, with
//! grouped KV heads, an optional sliding window, optional score soft-capping and optional
//! segment ids (several samples packed into one sequence attend only within themselves).
//!
//! Shapes (row-major, T rows): `q` [T, n_head·head_dim] (pre-scaled), `k` [T, n_head_kv·head_dim],
//! `v` [T, n_head_kv·v_dim], `out` [T, n_head·v_dim], `lse` [T, n_head] (log-sum-exp of each
//! query row's capped scores, `−∞` for a row that sees no key).
//!
//! Forward, per head h (kv head `h / (n_head/n_head_kv)`) and query i over its visible keys j:
//! `s = q_i·k_j`, `z = c·tanh(s/c)` (or `z = s`), `p = softmax_j(z)`, `out_i = Σ_j p_j v_j`.
//! Backward (flash-attention style, probabilities recomputed as `p = exp(z − lse_i)`):
//! `D_i = dout_i·out_i`, `dp_ij = dout_i·v_j`, `dz = p·(dp − D_i)`, `ds = dz·(1 − (z/c)²)`,
//! `dq_i = Σ_j ds_ij k_j`, `dk_j = Σ_i ds_ij q_i`, `dv_j = Σ_i p_ij dout_i`.
//!
//! Both run in parallel over query heads, a block of [`BQ`] query rows at a time against the
//! keys that block can see; every product (`Q·Kᵀ`, `P·V`, `dO·Vᵀ`, `dS·K`, `dSᵀ·Q`, `Pᵀ·dO`) is
//! an f32 GEMM on the matmul micro-kernel. Each head accumulates its own `dk`/`dv`, summed over
//! the heads of a group at the end (no shared writes).

use std::collections::HashMap;

use rayon::prelude::*;

use super::attention::AttnShape;
use super::matmul::{dot, gemm_f32_bt, gemm_f32_bt_add};
use super::vexp::exp_sub;

/// Query rows per block: scratch per thread is `BQ × T` scores (and as many `dp` in backward).
pub const BQ: usize = 64;

/// Which keys each query sees: `j ≤ i`, `i − j < window`, same segment id.
struct Mask<'a> {
    window: usize,
    seg: Option<&'a [u32]>,
    /// First position of each query's segment id (a lower bound for its keys).
    seg_lo: Vec<usize>,
    /// Every segment id occupies one run of positions, so query `i` sees exactly `lo(i)..=i`.
    contiguous: bool,
}

impl<'a> Mask<'a> {
    fn new(s: &AttnShape, seg: Option<&'a [u32]>, t: usize) -> Self {
        let seg_lo = match seg {
            Some(sg) => {
                assert_eq!(sg.len(), t, "attention: seg must hold one id per token");
                let mut first = HashMap::new();
                sg.iter().enumerate().map(|(i, &id)| *first.entry(id).or_insert(i)).collect()
            }
            None => Vec::new(),
        };
        let contiguous = seg.is_none_or(|sg| {
            let mut seen = std::collections::HashSet::new();
            sg.iter().enumerate().all(|(i, &id)| (i > 0 && sg[i - 1] == id) || seen.insert(id))
        });
        Mask { window: s.window.unwrap_or(usize::MAX), seg, seg_lo, contiguous }
    }
    /// The visible keys of query `i` as one range `lo..i+1`, when the mask is contiguous.
    fn range(&self, i: usize) -> Option<(usize, usize)> {
        self.contiguous.then(|| (self.lo(i), i + 1))
    }
    /// Smallest key index query `i` may see.
    fn lo(&self, i: usize) -> usize {
        let w = (i + 1).saturating_sub(self.window);
        if self.seg.is_some() {
            w.max(self.seg_lo[i])
        } else {
            w
        }
    }
    fn visible(&self, i: usize, j: usize) -> bool {
        j <= i && i - j < self.window && self.seg.is_none_or(|sg| sg[i] == sg[j])
    }
}

/// Sizes of q, k, v, out rows; panics (invalid input) when the buffers disagree.
fn check(s: &AttnShape, q: &[f32], k: &[f32], v: &[f32], out: &[f32], lse: &[f32]) -> usize {
    assert!(s.n_head_kv > 0 && s.n_head % s.n_head_kv == 0, "attention: n_head_kv must divide n_head");
    let t = q.len() / (s.n_head * s.head_dim).max(1);
    assert_eq!(q.len(), t * s.n_head * s.head_dim, "attention: q size");
    assert_eq!(k.len(), t * s.n_head_kv * s.head_dim, "attention: k size");
    assert_eq!(v.len(), t * s.n_head_kv * s.v_dim, "attention: v size");
    assert_eq!(out.len(), t * s.n_head * s.v_dim, "attention: out size");
    assert_eq!(lse.len(), t * s.n_head, "attention: lse size");
    t
}

#[inline]
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    y.iter_mut().zip(x).for_each(|(y, &x)| *y += a * x);
}

/// Capped score and d z / d s.
#[inline]
fn cap(s: f32, softcap: Option<f32>) -> (f32, f32) {
    match softcap {
        Some(c) => {
            let th = (s / c).tanh();
            (c * th, 1.0 - th * th)
        }
        None => (s, 1.0),
    }
}

/// Keys `klo..q1` cover every query of the block `q0..q1`.
fn key_range(mask: &Mask, q0: usize, q1: usize) -> usize {
    (q0..q1).map(|i| mask.lo(i)).min().unwrap_or(q0)
}

/// `dst[c·rows + r] = src[r·ld + c]`: the transpose of a `rows × cols` block (row stride `ld`).
fn transpose(src: &[f32], rows: usize, cols: usize, ld: usize, dst: &mut Vec<f32>) {
    dst.resize(rows * cols, 0.0);
    for r in 0..rows {
        for (c, &x) in src[r * ld..r * ld + cols].iter().enumerate() {
            dst[c * rows + r] = x;
        }
    }
}

/// Causal attention over a whole sequence; writes `out` and the per-row `lse` (see module docs).
/// `seg`: optional segment id per token (a query sees only keys with its id).
pub fn attention_forward(s: AttnShape, q: &[f32], k: &[f32], v: &[f32], seg: Option<&[u32]>, out: &mut [f32], lse: &mut [f32]) {
    let t = check(&s, q, k, v, out, lse);
    if t == 0 {
        return;
    }
    let mask = Mask::new(&s, seg, t);
    let group = s.n_head / s.n_head_kv;
    let (hd, vd) = (s.head_dim, s.v_dim);
    let (qw, kw, vw, ow) = (s.n_head * hd, s.n_head_kv * hd, s.n_head_kv * vd, s.n_head * vd);
    // One task per (head, block of BQ query rows): enough tasks to balance two or more threads.
    let n_qb = t.div_ceil(BQ);
    let blocks: Vec<(Vec<f32>, Vec<f32>)> = (0..s.n_head * n_qb)
        .into_par_iter()
        .map_init(
            || (Vec::new(), Vec::new(), Vec::new()),
            |(sc, vt, packed), task| {
                let (h, q0) = (task / n_qb, task % n_qb * BQ);
                let kvh = h / group;
                let q1 = (q0 + BQ).min(t);
                let mut o_h = vec![0f32; (q1 - q0) * vd];
                let mut lse_h = vec![f32::NEG_INFINITY; q1 - q0];
                let klo = key_range(&mask, q0, q1);
                let l = q1 - klo;
                transpose(&v[klo * vw + kvh * vd..], l, vd, vw, vt);
                sc.resize((q1 - q0) * l, 0.0);
                gemm_f32_bt(&q[q0 * qw + h * hd..], qw, q1 - q0, &k[klo * kw + kvh * hd..], kw, l, hd, sc, l, packed);
                for i in q0..q1 {
                    // scores → probabilities in place (0 where hidden)
                    let row = &mut sc[(i - q0) * l..(i - q0 + 1) * l];
                    if let Some((lo, hi)) = mask.range(i) {
                        let (a, b) = (lo - klo, hi - klo);
                        row[..a].fill(0.0);
                        row[b..].fill(0.0);
                        let vis = &mut row[a..b];
                        if let Some(c) = s.softcap {
                            vis.iter_mut().for_each(|z| *z = c * (*z / c).tanh());
                        }
                        let max = vis.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        let sum = exp_sub(vis, max);
                        lse_h[i - q0] = max + sum.ln();
                        let inv = 1.0 / sum;
                        vis.iter_mut().for_each(|p| *p *= inv);
                        continue;
                    }
                    let mut max = f32::NEG_INFINITY;
                    for (j, z) in (klo..q1).zip(row.iter_mut()) {
                        *z = if mask.visible(i, j) { cap(*z, s.softcap).0 } else { f32::NEG_INFINITY };
                        max = max.max(*z);
                    }
                    if max == f32::NEG_INFINITY {
                        row.fill(0.0); // no visible key: out row 0, lse −∞
                        continue;
                    }
                    let mut sum = 0f32;
                    for z in row.iter_mut() {
                        *z = (*z - max).exp();
                        sum += *z;
                    }
                    lse_h[i - q0] = max + sum.ln();
                    let inv = 1.0 / sum;
                    row.iter_mut().for_each(|p| *p *= inv);
                }
                // out_blk = P · V[klo..q1]
                gemm_f32_bt(sc, l, q1 - q0, vt, l, vd, l, &mut o_h, vd, packed);
                (o_h, lse_h)
            },
        )
        .collect();
    for (task, (o_h, lse_h)) in blocks.iter().enumerate() {
        let (h, q0) = (task / n_qb, task % n_qb * BQ);
        for (r, (o, &ls)) in o_h.chunks_exact(vd).zip(lse_h).enumerate() {
            let i = q0 + r;
            out[i * ow + h * vd..i * ow + (h + 1) * vd].copy_from_slice(o);
            lse[i * s.n_head + h] = ls;
        }
    }
}

/// Input gradients of [`attention_forward`] given its inputs, its `out` and `lse`, and `dout`;
/// `dq`, `dk`, `dv` (shaped like q, k, v) are overwritten.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    s: AttnShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    seg: Option<&[u32]>,
    out: &[f32],
    lse: &[f32],
    dout: &[f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    let t = check(&s, q, k, v, out, lse);
    assert!(
        dout.len() == out.len() && dq.len() == q.len() && dk.len() == k.len() && dv.len() == v.len(),
        "attention_backward: gradient sizes"
    );
    if t == 0 {
        return;
    }
    let mask = Mask::new(&s, seg, t);
    let group = s.n_head / s.n_head_kv;
    let (hd, vd) = (s.head_dim, s.v_dim);
    let (qw, kw, vw, ow) = (s.n_head * hd, s.n_head_kv * hd, s.n_head_kv * vd, s.n_head * vd);
    let per_head: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = (0..s.n_head)
        .into_par_iter()
        .map(|h| {
            let kvh = h / group;
            let mut dq_h = vec![0f32; t * hd];
            let mut dk_h = vec![0f32; t * hd];
            let mut dv_h = vec![0f32; t * vd];
            let mut kt = Vec::new();
            transpose(&k[kvh * hd..], t, hd, kw, &mut kt);
            let [mut sc, mut dp, mut pt, mut dst, mut qt, mut dot_t, mut packed]: [Vec<f32>; 7] = Default::default();
            for q0 in (0..t).step_by(BQ) {
                let (q1, m) = ((q0 + BQ).min(t), (q0 + BQ).min(t) - q0);
                let klo = key_range(&mask, q0, q1);
                let l = q1 - klo;
                sc.resize(m * l, 0.0);
                dp.resize(m * l, 0.0);
                gemm_f32_bt(&q[q0 * qw + h * hd..], qw, m, &k[klo * kw + kvh * hd..], kw, l, hd, &mut sc, l, &mut packed);
                gemm_f32_bt(&dout[q0 * ow + h * vd..], ow, m, &v[klo * vw + kvh * vd..], vw, l, vd, &mut dp, l, &mut packed);
                // sc → P, dp → dS, both 0 where hidden
                for i in q0..q1 {
                    let r = (i - q0) * l;
                    let (prow, dsrow) = (&mut sc[r..r + l], &mut dp[r..r + l]);
                    let lse_i = lse[i * s.n_head + h];
                    if lse_i == f32::NEG_INFINITY {
                        prow.fill(0.0);
                        dsrow.fill(0.0);
                        continue;
                    }
                    let d_i = dot(&dout[i * ow + h * vd..i * ow + (h + 1) * vd], &out[i * ow + h * vd..i * ow + (h + 1) * vd]);
                    if let (Some((lo, hi)), None) = (mask.range(i), s.softcap) {
                        let (a, b) = (lo - klo, hi - klo);
                        prow[..a].fill(0.0);
                        prow[b..].fill(0.0);
                        dsrow[..a].fill(0.0);
                        dsrow[b..].fill(0.0);
                        exp_sub(&mut prow[a..b], lse_i);
                        dsrow[a..b].iter_mut().zip(&prow[a..b]).for_each(|(ds, &p)| *ds = p * (*ds - d_i));
                        continue;
                    }
                    for (j, (p, ds)) in (klo..q1).zip(prow.iter_mut().zip(dsrow.iter_mut())) {
                        if mask.visible(i, j) {
                            let (z, dcap) = cap(*p, s.softcap);
                            *p = (z - lse_i).exp();
                            *ds = *p * (*ds - d_i) * dcap;
                        } else {
                            (*p, *ds) = (0.0, 0.0);
                        }
                    }
                }
                // dq_blk = dS · K[klo..q1]
                gemm_f32_bt(&dp, l, m, &kt[klo..], t, hd, l, &mut dq_h[q0 * hd..], hd, &mut packed);
                // dk[klo..q1] += dSᵀ · Q_blk; dv[klo..q1] += Pᵀ · dO_blk
                transpose(&sc, m, l, l, &mut pt);
                transpose(&dp, m, l, l, &mut dst);
                transpose(&q[q0 * qw + h * hd..], m, hd, qw, &mut qt);
                transpose(&dout[q0 * ow + h * vd..], m, vd, ow, &mut dot_t);
                gemm_f32_bt_add(&dst, m, l, &qt, m, hd, m, &mut dk_h[klo * hd..], hd, &mut packed);
                gemm_f32_bt_add(&pt, m, l, &dot_t, m, vd, m, &mut dv_h[klo * vd..], vd, &mut packed);
            }
            (dq_h, dk_h, dv_h)
        })
        .collect();
    dk.fill(0.0);
    dv.fill(0.0);
    for (h, (dq_h, dk_h, dv_h)) in per_head.iter().enumerate() {
        let kvh = h / group;
        for i in 0..t {
            dq[i * qw + h * hd..i * qw + (h + 1) * hd].copy_from_slice(&dq_h[i * hd..(i + 1) * hd]);
            axpy(1.0, &dk_h[i * hd..(i + 1) * hd], &mut dk[i * kw + kvh * hd..i * kw + (kvh + 1) * hd]);
            axpy(1.0, &dv_h[i * vd..(i + 1) * vd], &mut dv[i * vw + kvh * vd..i * vw + (kvh + 1) * vd]);
        }
    }
}
