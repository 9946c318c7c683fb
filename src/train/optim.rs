//! AdamW (decoupled weight decay, as `torch.optim.AdamW`), learning-rate schedules with warmup,
//! and global-norm gradient clipping (as `torch.nn.utils.clip_grad_norm_`).

use crate::backend::cpu::Cpu;
pub use crate::backend::AdamWConfig;
use crate::backend::TrainBackend;
use crate::error::Error;
use crate::lora::LoraSet;

/// AdamW state: first and second moments shaped like the parameters, and the step count.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamW<T = Vec<f32>> {
    /// Hyper-parameters.
    pub cfg: AdamWConfig,
    /// First moments.
    pub m: LoraSet<T>,
    /// Second moments.
    pub v: LoraSet<T>,
    /// Updates done so far.
    pub step: u64,
}

impl AdamW {
    /// Zero state for parameters shaped like `params`.
    pub fn new(cfg: AdamWConfig, params: &LoraSet) -> Self {
        AdamW { cfg, m: params.zeros_like(), v: params.zeros_like(), step: 0 }
    }

    /// [`AdamW::update_on`] on the CPU backend.
    pub fn update(&mut self, params: &mut LoraSet, grads: &LoraSet, lr: f32) {
        self.update_on(&Cpu::default(), params, grads, lr)
    }
}

impl<T> AdamW<T> {
    /// One update with learning rate `lr` on backend `b`: exactly torch's AdamW
    /// (`p ← p·(1 − lr·wd)`, then `p ← p − lr · m̂ / (√v̂ + ε)`).
    pub fn update_on<B: TrainBackend<Buf = T>>(&mut self, b: &B, params: &mut LoraSet<T>, grads: &LoraSet<T>, lr: f32) {
        self.step += 1;
        let c = self.cfg;
        let bc1 = 1.0 - (c.beta1 as f64).powi(self.step as i32);
        let bc2 = 1.0 - (c.beta2 as f64).powi(self.step as i32);
        let step_size = (lr as f64 / bc1) as f32;
        let bc2_sqrt = bc2.sqrt() as f32;
        let decay = 1.0 - lr * c.weight_decay;
        let gs = grads.buffers();
        let ms = self.m.buffers_mut();
        let vs = self.v.buffers_mut();
        for (((p, g), m), v) in params.buffers_mut().into_iter().zip(gs).zip(ms).zip(vs) {
            b.adamw(c, step_size, bc2_sqrt, decay, p, g, m, v);
        }
    }
}

/// Learning-rate schedule after warmup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Constant.
    Constant,
    /// Linear decay to 0 at the last step.
    Linear,
    /// Cosine decay to 0 at the last step.
    Cosine,
}

impl Schedule {
    /// Parse `constant`, `linear` or `cosine`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "constant" => Ok(Schedule::Constant),
            "linear" => Ok(Schedule::Linear),
            "cosine" => Ok(Schedule::Cosine),
            _ => Err(Error::Usage(format!("unknown --lr-schedule '{s}' (constant, linear, cosine)"))),
        }
    }

    /// Learning rate for update `step` (0-based) of `total`, with `warmup` linear warmup
    /// steps — as transformers' `get_{constant,linear,cosine}_schedule_with_warmup`.
    pub fn lr(self, base: f32, step: u64, total: u64, warmup: u64) -> f32 {
        if step < warmup {
            return base * step as f32 / warmup.max(1) as f32;
        }
        let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
        let f = match self {
            Schedule::Constant => 1.0,
            Schedule::Linear => (1.0 - progress).max(0.0),
            Schedule::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0),
        };
        (base as f64 * f) as f32
    }
}

/// Global L2 norm of all gradients (accumulated in f64, in buffer order).
pub fn global_norm<B: TrainBackend>(b: &B, grads: &LoraSet<B::Buf>) -> f64 {
    grads.buffers().into_iter().fold(0.0, |acc, g| b.sum_squares(g, acc)).sqrt()
}

/// Scale gradients so their global norm is at most `max_norm` (no-op when `max_norm` ≤ 0);
/// returns the norm before clipping.
pub fn clip_global_norm<B: TrainBackend>(b: &B, grads: &mut LoraSet<B::Buf>, max_norm: f32) -> f64 {
    let norm = global_norm(b, grads);
    if max_norm > 0.0 && norm > max_norm as f64 {
        let s = (max_norm as f64 / (norm + 1e-6)) as f32;
        grads.buffers_mut().into_iter().for_each(|g| b.scale(g, s));
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_decay() {
        assert_eq!(Schedule::Linear.lr(1.0, 0, 10, 2), 0.0);
        assert_eq!(Schedule::Linear.lr(1.0, 1, 10, 2), 0.5);
        assert_eq!(Schedule::Linear.lr(1.0, 2, 10, 2), 1.0);
        assert!((Schedule::Linear.lr(1.0, 6, 10, 2) - 0.5).abs() < 1e-6);
        assert!((Schedule::Cosine.lr(1.0, 6, 10, 2) - 0.5).abs() < 1e-6);
        assert!(Schedule::Cosine.lr(1.0, 10, 10, 2).abs() < 1e-6);
        assert_eq!(Schedule::Constant.lr(2.0, 9, 10, 0), 2.0);
    }
}
