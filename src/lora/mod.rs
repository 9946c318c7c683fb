//! LoRA data types: the projections an adapter can target ([`Target`]), one low-rank pair
//! ([`LoraPair`]) and a whole model's pairs ([`LoraSet`]) — an update `ΔW = s · B·A` beside a
//! frozen (quantized) projection `W`. They sit below `model/` (inference applies adapters) and
//! `train/` (training learns one); the arithmetic on them is in the backends. [`dropout`] is
//! PEFT's `lora_dropout` (masks hashed from the step, so runs reproduce).
//!
//! Shapes follow llama.cpp's GGUF LoRA format: `A` is `[r, n_in]` row-major (GGUF ne
//! `[n_in, r]`), `B` is `[n_out, r]` row-major (GGUF ne `[r, n_out]`), and the projection of a
//! row `x` becomes `y = W·x + s · B·(A·x)`.

pub mod dropout;

use crate::error::Error;

/// The projections a LoRA can target, with their GGUF tensor names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// Query projection `attn_q`.
    Q,
    /// Key projection `attn_k`.
    K,
    /// Value projection `attn_v`.
    V,
    /// Attention output `attn_output`.
    O,
    /// Feed-forward gate `ffn_gate`.
    Gate,
    /// Feed-forward up `ffn_up`.
    Up,
    /// Feed-forward down `ffn_down`.
    Down,
}

impl Target {
    /// All seven, in block order.
    pub const ALL: [Target; 7] = [Target::Q, Target::K, Target::V, Target::O, Target::Gate, Target::Up, Target::Down];

    /// Short name used on the command line (`q,k,v,o,gate,up,down`).
    pub fn short(self) -> &'static str {
        match self {
            Target::Q => "q",
            Target::K => "k",
            Target::V => "v",
            Target::O => "o",
            Target::Gate => "gate",
            Target::Up => "up",
            Target::Down => "down",
        }
    }

    /// GGUF weight name in block `il`, e.g. `blk.3.attn_q.weight`.
    pub fn tensor_name(self, il: usize) -> String {
        let s = match self {
            Target::Q => "attn_q",
            Target::K => "attn_k",
            Target::V => "attn_v",
            Target::O => "attn_output",
            Target::Gate => "ffn_gate",
            Target::Up => "ffn_up",
            Target::Down => "ffn_down",
        };
        format!("blk.{il}.{s}.weight")
    }

    /// Parse a comma-separated list (`q,k,v,o,gate,up,down`; also `all`, `attn`, `mlp`, and
    /// HF names like `q_proj`, `gate_proj`).
    pub fn parse_list(s: &str) -> Result<Vec<Target>, Error> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let add: &[Target] = match part {
                "all" => &Target::ALL,
                "attn" => &[Target::Q, Target::K, Target::V, Target::O],
                "mlp" | "ffn" => &[Target::Gate, Target::Up, Target::Down],
                "q" | "q_proj" | "attn_q" => &[Target::Q],
                "k" | "k_proj" | "attn_k" => &[Target::K],
                "v" | "v_proj" | "attn_v" => &[Target::V],
                "o" | "o_proj" | "attn_output" => &[Target::O],
                "gate" | "gate_proj" | "ffn_gate" => &[Target::Gate],
                "up" | "up_proj" | "ffn_up" => &[Target::Up],
                "down" | "down_proj" | "ffn_down" => &[Target::Down],
                _ => return Err(Error::Usage(format!("unknown LoRA target '{part}' (use q,k,v,o,gate,up,down or all/attn/mlp)"))),
            };
            for t in add {
                if !out.contains(t) {
                    out.push(*t);
                }
            }
        }
        if out.is_empty() {
            return Err(Error::Usage("no LoRA targets given".into()));
        }
        out.sort();
        Ok(out)
    }
}

/// One adapted projection: `A [r, n_in]`, `B [n_out, r]`, each a buffer of type `T` (host
/// `Vec<f32>` by default; a backend's own buffer type for the LoRA being trained on it). The
/// products themselves are backend ops ([`crate::backend::Backend::lora_down`] and the rest).
#[derive(Clone, Debug, PartialEq)]
pub struct LoraPair<T = Vec<f32>> {
    /// Input width.
    pub n_in: usize,
    /// Output width.
    pub n_out: usize,
    /// Rank.
    pub r: usize,
    /// `[r, n_in]` row-major.
    pub a: T,
    /// `[n_out, r]` row-major.
    pub b: T,
}

impl LoraPair {
    /// Zeros of the given shape.
    pub fn zeros(n_in: usize, n_out: usize, r: usize) -> Self {
        LoraPair { n_in, n_out, r, a: vec![0.0; r * n_in], b: vec![0.0; n_out * r] }
    }
}

impl<T> LoraPair<T> {
    /// The same shapes with each buffer mapped by `f` (e.g. uploaded to a backend).
    pub fn map<U>(&self, mut f: impl FnMut(&T) -> U) -> LoraPair<U> {
        LoraPair { n_in: self.n_in, n_out: self.n_out, r: self.r, a: f(&self.a), b: f(&self.b) }
    }
}

/// LoRA pairs of a whole model: per layer, the adapted targets with their pairs.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraSet<T = Vec<f32>> {
    /// `alpha` as stored in the adapter; a pair of rank `r` is scaled by `alpha / r`, as
    /// llama.cpp applies it.
    pub alpha: f32,
    /// Per layer, `(target, pair)` sorted by target.
    pub layers: Vec<Vec<(Target, LoraPair<T>)>>,
}

impl<T> LoraSet<T> {
    /// The multiplier `alpha / r` applied to `B·A` of `p` (1 when alpha is 0, as llama.cpp).
    pub fn scale(&self, p: &LoraPair<T>) -> f32 {
        if self.alpha == 0.0 {
            1.0
        } else {
            self.alpha / p.r as f32
        }
    }

    /// The pair of `target` in layer `il`, if adapted.
    pub fn get(&self, il: usize, target: Target) -> Option<&LoraPair<T>> {
        self.layers.get(il)?.iter().find(|(t, _)| *t == target).map(|(_, p)| p)
    }

    /// Mutable access to the pair of `target` in layer `il`.
    pub fn get_mut(&mut self, il: usize, target: Target) -> Option<&mut LoraPair<T>> {
        self.layers.get_mut(il)?.iter_mut().find(|(t, _)| *t == target).map(|(_, p)| p)
    }

    /// The same set with every buffer mapped by `f` (e.g. uploaded to or read back from a
    /// backend), in [`buffers`](Self::buffers) order.
    pub fn map<U>(&self, mut f: impl FnMut(&T) -> U) -> LoraSet<U> {
        LoraSet { alpha: self.alpha, layers: self.layers.iter().map(|l| l.iter().map(|(t, p)| (*t, p.map(&mut f))).collect()).collect() }
    }

    /// Every parameter buffer (A then B of each pair, layer by layer), for optimizers.
    pub fn buffers_mut(&mut self) -> Vec<&mut T> {
        self.layers.iter_mut().flat_map(|l| l.iter_mut().flat_map(|(_, p)| [&mut p.a, &mut p.b])).collect()
    }

    /// Every parameter buffer, read-only, in the order of [`buffers_mut`](Self::buffers_mut).
    pub fn buffers(&self) -> Vec<&T> {
        self.layers.iter().flat_map(|l| l.iter().flat_map(|(_, p)| [&p.a, &p.b])).collect()
    }

    /// Ranks present (sorted, distinct).
    pub fn ranks(&self) -> Vec<usize> {
        let mut r: Vec<usize> = self.layers.iter().flatten().map(|(_, p)| p.r).collect();
        r.sort_unstable();
        r.dedup();
        r
    }
}

impl LoraSet {
    /// A set of the same shapes, all zeros (gradient accumulators, optimizer moments).
    pub fn zeros_like(&self) -> LoraSet {
        self.map(|b| vec![0.0; b.len()])
    }

    /// Set every value to zero.
    pub fn clear(&mut self) {
        self.buffers_mut().into_iter().for_each(|b| b.iter_mut().for_each(|v| *v = 0.0));
    }
}

/// The deterministic generator of initialisation.
pub use crate::util::rng::SplitMix64;

/// Initialise as the LoRA paper and PEFT: `A` Kaiming-uniform with `a = √5` (uniform in
/// `±1/√n_in`), `B` zero — so the adapted model starts equal to the base model.
pub fn init_pair(n_in: usize, n_out: usize, r: usize, rng: &mut SplitMix64) -> LoraPair {
    let mut p = LoraPair::zeros(n_in, n_out, r);
    let bound = 1.0 / (n_in as f64).sqrt();
    p.a.iter_mut().for_each(|v| *v = ((rng.next_f64() * 2.0 - 1.0) * bound) as f32);
    p
}
