//! Next-token cross-entropy over the (frozen, quantized) output projection, chunked so that
//! at most [`CHUNK`] rows of logits exist at once.
//!
//! Per row with a target: `y = hidden·outputᵀ`, `z = c·tanh(y/c)` (or `z = y`),
//! `loss = logsumexp(z) − z[target]`. Backward: `dz = softmax(z) − onehot(target)`,
//! `dy = dz·(1 − (z/c)²)`, `dhidden = scale · dy · output` ([`matmul_backward_input`]).

use rayon::prelude::*;

use super::matmul::{matmul, matmul_backward_input};
use super::vexp::exp_sub;
use crate::prof::{span, Phase};
use crate::weights::QuantWeight;

/// Rows of logits computed at a time.
pub const CHUNK: usize = 128;

/// Sum of `−log p(target)` over the rows whose target is ≥ 0, and their count.
///
/// `hidden`: [T, n_embd] final-normed states; `targets[t]`: next token id or −1 (ignored);
/// `softcap`: optional final logit soft-capping. When `dhidden` is given it is overwritten with
/// `scale · d(sum of losses)/d hidden` (zero on ignored rows). A target ≥ n_vocab is invalid
/// input and panics.
pub fn cross_entropy(
    output: &dyn QuantWeight,
    softcap: Option<f32>,
    hidden: &[f32],
    targets: &[i32],
    scale: f32,
    dhidden: Option<&mut [f32]>,
) -> (f64, usize) {
    let project = |x: &[f32], y: &mut [f32]| matmul(output, x, y);
    let back = |dy: &[f32], dx: &mut [f32]| matmul_backward_input(output, dy, dx);
    cross_entropy_by(&project, &back, output, softcap, hidden, targets, scale, dhidden)
}

/// [`cross_entropy`] with the logits of each chunk computed by `project(hidden rows, logits)`
/// (`y = x·outputᵀ` in other numerics, e.g. 8-bit integer dots) and `dhidden = dlogits ·
/// output` by `back(dlogits, dhidden rows)` (overwriting).
#[allow(clippy::too_many_arguments)]
pub fn cross_entropy_by(
    project: &dyn Fn(&[f32], &mut [f32]),
    back: &dyn Fn(&[f32], &mut [f32]),
    output: &dyn QuantWeight,
    softcap: Option<f32>,
    hidden: &[f32],
    targets: &[i32],
    scale: f32,
    mut dhidden: Option<&mut [f32]>,
) -> (f64, usize) {
    let (e, nv) = (output.n_in(), output.n_out());
    let t = targets.len();
    assert_eq!(hidden.len(), t * e, "cross_entropy: hidden must be [targets, n_embd]");
    if let Some(d) = &dhidden {
        assert_eq!(d.len(), t * e, "cross_entropy: dhidden must be shaped like hidden");
    }
    if let Some(&bad) = targets.iter().find(|&&x| x >= 0 && x as usize >= nv) {
        panic!("cross_entropy: target {bad} is outside the vocabulary (size {nv})");
    }
    let grad = dhidden.is_some();
    let (mut loss, mut count) = (0f64, 0usize);
    let mut logits = vec![0f32; CHUNK.min(t) * nv];
    for r0 in (0..t).step_by(CHUNK) {
        let r1 = (r0 + CHUNK).min(t);
        let tg = &targets[r0..r1];
        if tg.iter().all(|&x| x < 0) {
            if let Some(d) = dhidden.as_deref_mut() {
                d[r0 * e..r1 * e].fill(0.0);
            }
            continue;
        }
        let lg = &mut logits[..(r1 - r0) * nv];
        let sp = span(Phase::LossProj);
        project(&hidden[r0 * e..r1 * e], lg);
        drop(sp);
        let rows: Vec<f64> =
            lg.par_chunks_mut(nv).zip(tg.par_iter()).map(|(row, &target)| row_loss(row, target, softcap, scale, grad)).collect();
        loss += rows.iter().sum::<f64>();
        count += tg.iter().filter(|&&x| x >= 0).count();
        if let Some(d) = dhidden.as_deref_mut() {
            let _s = span(Phase::LossProj);
            back(lg, &mut d[r0 * e..r1 * e]);
        }
    }
    (loss, count)
}

/// Loss of one row of raw logits; with `grad`, the row is replaced by `scale · dloss/dlogits`
/// (zeros when the target is ignored).
fn row_loss(row: &mut [f32], target: i32, softcap: Option<f32>, scale: f32, grad: bool) -> f64 {
    if target < 0 {
        row.fill(0.0);
        return 0.0;
    }
    if let Some(c) = softcap {
        row.iter_mut().for_each(|z| *z = c * (*z / c).tanh());
    }
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let zt = row[target as usize];
    match softcap {
        None => {
            // exp(z − max) replaces z in place (the row is scratch): one exp per logit.
            exp_sub(row, max);
            let sum: f64 = row.iter().map(|&p| p as f64).sum();
            if grad {
                let inv = (1.0 / sum) as f32;
                row.iter_mut().for_each(|p| *p *= scale * inv);
                row[target as usize] -= scale;
            }
            max as f64 + sum.ln() - zt as f64
        }
        Some(_) if !grad => {
            let sum: f64 = row.iter().map(|&z| (z - max).exp() as f64).sum();
            max as f64 + sum.ln() - zt as f64
        }
        Some(c) => {
            let sum: f64 = row.iter().map(|&z| (z - max).exp() as f64).sum();
            let inv = (1.0 / sum) as f32;
            for (j, z) in row.iter_mut().enumerate() {
                let th = *z / c;
                let g = (*z - max).exp() * inv - if j == target as usize { 1.0 } else { 0.0 };
                *z = scale * g * (1.0 - th * th);
            }
            max as f64 + sum.ln() - zt as f64
        }
    }
}
