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
}

/// All phases in table order.
pub const PHASES: [Phase; 11] = [
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
];

static ENABLED: AtomicBool = AtomicBool::new(false);
static NANOS: [AtomicU64; 11] = [const { AtomicU64::new(0) }; 11];

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
