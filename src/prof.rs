//! Optional phase timing of the training step (the model block's forward and the trainer's
//! backward), for benchmarks (`benches/train_step.rs`).
//!
//! Off by default: a disabled [`span`] costs one relaxed atomic load. When enabled, each span
//! adds its wall time to a per-phase counter; phases nest (a backward span contains its
//! matmul, LoRA, attention and norm spans), so the table shows both totals and parts.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// Timed phases of [`Trainable::forward_backward`](crate::train::block::Trainable::forward_backward).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Embedding lookup and the first forward over all blocks.
    Forward,
    /// Final norm, cross-entropy forward and backward.
    Loss,
    /// Per-block forward recompute inside the backward.
    Recompute,
    /// Per-block backward (contains the phases below).
    Backward,
    /// Frozen-weight projections in forward and recompute (`x·Wᵀ`).
    FwdMatmul,
    /// LoRA forward (`down` + `up_add`) in forward and recompute.
    FwdLora,
    /// Attention forward in forward and recompute.
    FwdAttn,
    /// `matmul_backward_input` (`dx = dy·W`).
    BwdMatmul,
    /// LoRA backward (grad A, grad B, dx).
    BwdLora,
    /// Attention backward.
    BwdAttn,
    /// RMSNorm backward (block norms).
    BwdNorm,
    /// Inside [`Phase::Loss`]: the output projection's forward and input backward
    /// (`hidden·outputᵀ`, `dlogits·output`), the rest being the softmax rows.
    LossProj,
}

/// All phases in table order.
pub const PHASES: [Phase; 12] = [
    Phase::Forward,
    Phase::Loss,
    Phase::Recompute,
    Phase::Backward,
    Phase::FwdMatmul,
    Phase::FwdLora,
    Phase::FwdAttn,
    Phase::BwdMatmul,
    Phase::BwdLora,
    Phase::BwdAttn,
    Phase::BwdNorm,
    Phase::LossProj,
];

static ENABLED: AtomicBool = AtomicBool::new(false);
static NANOS: [AtomicU64; PHASES.len()] = [const { AtomicU64::new(0) }; PHASES.len()];

/// Turn timing on or off.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Zero every counter.
pub fn reset() {
    NANOS.iter().for_each(|n| n.store(0, Ordering::Relaxed));
}

/// Seconds accumulated in `p` since the last [`reset`].
pub fn seconds(p: Phase) -> f64 {
    NANOS[p as usize].load(Ordering::Relaxed) as f64 * 1e-9
}

/// A running span; adds its time to its phase when dropped.
pub struct Span(Option<(Phase, Instant)>);

impl Drop for Span {
    fn drop(&mut self) {
        if let Some((p, t0)) = self.0 {
            NANOS[p as usize].fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
    }
}

/// Start timing `p` (a no-op unless enabled).
#[inline]
pub fn span(p: Phase) -> Span {
    Span(ENABLED.load(Ordering::Relaxed).then(|| (p, Instant::now())))
}

/// A markdown table (`| phase | s | % |`) of one step's phases: `secs[i]` is the time of
/// `PHASES[i]`, `total` the step's wall time, `extra` further timed rows outside the step's
/// phases (clipping, AdamW; they count towards `total`). Adds the derived rows "loss softmax
/// rows" (`Loss − LossProj`) and "other" (the step less every leaf phase: norms in the
/// forward, RoPE, GLU, residual adds, embedding, copies and allocation).
pub fn table(secs: &[f64], total: f64, extra: &[(&str, f64)]) -> String {
    assert_eq!(secs.len(), PHASES.len(), "prof::table: one time per phase");
    let at = |p: Phase| secs[p as usize];
    let mut rows: Vec<(String, f64)> = Vec::new();
    for &p in &PHASES {
        let name = match p {
            Phase::Forward | Phase::Loss | Phase::Recompute | Phase::Backward => format!("{p:?}"),
            _ => format!("  {p:?}"),
        };
        rows.push((name, at(p)));
    }
    rows.push(("  loss softmax rows".into(), at(Phase::Loss) - at(Phase::LossProj)));
    let leaves =
        [Phase::FwdMatmul, Phase::FwdLora, Phase::FwdAttn, Phase::BwdMatmul, Phase::BwdLora, Phase::BwdAttn, Phase::BwdNorm, Phase::Loss];
    let mut other = total - leaves.iter().map(|&p| at(p)).sum::<f64>();
    for &(name, s) in extra {
        rows.push((name.to_string(), s));
        other -= s;
    }
    rows.push(("other (fwd norms, rope, glu, residual, copies)".into(), other));
    let mut out = String::from("| phase | s | % of step |\n|---|---:|---:|\n");
    for (name, s) in rows {
        out += &format!("| {name} | {s:.3} | {:.1}% |\n", 100.0 * s / total);
    }
    out += &format!("| total step | {total:.3} | 100% |\n");
    out
}
