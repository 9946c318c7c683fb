//! AdamW (decoupled weight decay, as `torch.optim.AdamW`), learning-rate schedules with warmup,
//! and global-norm gradient clipping (as `torch.nn.utils.clip_grad_norm_`).

use crate::train::lora::LoraSet;

/// AdamW hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    /// β₁.
    pub beta1: f32,
    /// β₂.
    pub beta2: f32,
    /// ε.
    pub eps: f32,
    /// Decoupled weight decay.
    pub weight_decay: f32,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// AdamW state: first and second moments shaped like the parameters, and the step count.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamW {
    /// Hyper-parameters.
    pub cfg: AdamWConfig,
    /// First moments.
    pub m: LoraSet,
    /// Second moments.
    pub v: LoraSet,
    /// Updates done so far.
    pub step: u64,
}

impl AdamW {
    /// Zero state for parameters shaped like `params`.
    pub fn new(cfg: AdamWConfig, params: &LoraSet) -> Self {
        AdamW { cfg, m: params.zeros_like(), v: params.zeros_like(), step: 0 }
    }

    /// One update with learning rate `lr`: exactly torch's AdamW
    /// (`p ← p·(1 − lr·wd)`, then `p ← p − lr · m̂ / (√v̂ + ε)`).
    pub fn update(&mut self, params: &mut LoraSet, grads: &LoraSet, lr: f32) {
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
            for i in 0..p.len() {
                let gi = g[i];
                m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * gi;
                v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * gi * gi;
                let denom = v[i].sqrt() / bc2_sqrt + c.eps;
                p[i] = p[i] * decay - step_size * m[i] / denom;
            }
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
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "constant" => Ok(Schedule::Constant),
            "linear" => Ok(Schedule::Linear),
            "cosine" => Ok(Schedule::Cosine),
            _ => Err(format!("unknown --lr-schedule '{s}' (constant, linear, cosine)")),
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

/// Global L2 norm of all gradients (accumulated in f64).
pub fn global_norm(grads: &LoraSet) -> f64 {
    grads.buffers().iter().flat_map(|b| b.iter()).map(|&g| (g as f64) * (g as f64)).sum::<f64>().sqrt()
}

/// Scale gradients so their global norm is at most `max_norm` (no-op when `max_norm` ≤ 0);
/// returns the norm before clipping.
pub fn clip_global_norm(grads: &mut LoraSet, max_norm: f32) -> f64 {
    let norm = global_norm(grads);
    if max_norm > 0.0 && norm > max_norm as f64 {
        let s = (max_norm as f64 / (norm + 1e-6)) as f32;
        grads.buffers_mut().into_iter().for_each(|b| b.iter_mut().for_each(|g| *g *= s));
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
