//! LoRA: a low-rank update `ΔW = s · B·A` beside a frozen (quantized) projection `W`.
//!
//! Shapes follow llama.cpp's GGUF LoRA format: `A` is `[r, n_in]` row-major (GGUF ne
//! `[n_in, r]`), `B` is `[n_out, r]` row-major (GGUF ne `[r, n_out]`), and the projection of a
//! row `x` becomes `y = W·x + s · B·(A·x)`. Forward and backward sit side by side with the same
//! shapes; activations are `[T, features]` row-major f32.

use crate::ops::matmul::gemm_f32_kn;

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
    pub fn parse_list(s: &str) -> Result<Vec<Target>, String> {
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
                _ => {
                    return Err(format!(
                        "unknown LoRA target '{part}' (use q,k,v,o,gate,up,down or all/attn/mlp)"
                    ))
                }
            };
            for t in add {
                if !out.contains(t) {
                    out.push(*t);
                }
            }
        }
        if out.is_empty() {
            return Err("no LoRA targets given".into());
        }
        out.sort();
        Ok(out)
    }
}

/// One adapted projection: `A [r, n_in]`, `B [n_out, r]`.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraPair {
    /// Input width.
    pub n_in: usize,
    /// Output width.
    pub n_out: usize,
    /// Rank.
    pub r: usize,
    /// `[r, n_in]` row-major.
    pub a: Vec<f32>,
    /// `[n_out, r]` row-major.
    pub b: Vec<f32>,
}

impl LoraPair {
    /// Zeros of the given shape.
    pub fn zeros(n_in: usize, n_out: usize, r: usize) -> Self {
        LoraPair { n_in, n_out, r, a: vec![0.0; r * n_in], b: vec![0.0; n_out * r] }
    }

    /// `u = x·Aᵀ` (`[T, r]`), the low-rank code of each row; kept for the backward.
    pub fn down(&self, x: &[f32]) -> Vec<f32> {
        let (r, n_in) = (self.r, self.n_in);
        let t = x.len() / n_in;
        let at = transpose(&self.a, r, n_in);
        let mut u = vec![0f32; t * r];
        gemm_f32_kn::<false, false>(x, n_in, t, &at, r, r, n_in, &mut u, r);
        u
    }

    /// `y += s · u·Bᵀ` for `u` from [`down`](Self::down).
    pub fn up_add(&self, u: &[f32], s: f32, y: &mut [f32]) {
        let (r, n_out) = (self.r, self.n_out);
        let t = u.len() / r.max(1);
        let bt = transpose(&self.b, n_out, r);
        let us: Vec<f32> = u.iter().map(|&v| s * v).collect();
        gemm_f32_kn::<false, true>(&us, r, t, &bt, n_out, n_out, r, y, n_out);
    }

    /// Forward: `y += s · B·(A·x)` for each row; returns `u = x·Aᵀ` for the backward.
    pub fn forward_add(&self, x: &[f32], s: f32, y: &mut [f32]) -> Vec<f32> {
        let u = self.down(x);
        self.up_add(&u, s, y);
        u
    }

    /// Backward of [`forward_add`](Self::forward_add) given its input `x`, code `u` and the
    /// output gradient `dy` (`[T, n_out]`): accumulates `grad.a += duᵀ·x`, `grad.b += s·dyᵀ·u`
    /// and, when given, `dx += du·A` where `du = s · dy·B`.
    pub fn backward(&self, x: &[f32], u: &[f32], dy: &[f32], s: f32, grad: &mut LoraPair, dx: Option<&mut [f32]>) {
        let (r, n_in, n_out) = (self.r, self.n_in, self.n_out);
        let t = x.len() / n_in;
        // du[t, j] = s · Σ_o dy[t, o] · B[o, j]
        let mut du = vec![0f32; t * r];
        gemm_f32_kn::<false, false>(dy, n_out, t, &self.b, r, r, n_out, &mut du, r);
        du.iter_mut().for_each(|d| *d *= s);
        // grad.b[o, j] += Σ_t dy[t, o] · (s·u[t, j])
        let us: Vec<f32> = u.iter().map(|&v| s * v).collect();
        gemm_f32_kn::<true, true>(dy, n_out, n_out, &us, r, r, t, &mut grad.b, r);
        // grad.a[j, i] += Σ_t du[t, j] · x[t, i]
        gemm_f32_kn::<true, true>(&du, r, r, x, n_in, n_in, t, &mut grad.a, n_in);
        // dx[t, i] += Σ_j du[t, j] · A[j, i]
        if let Some(dx) = dx {
            gemm_f32_kn::<false, true>(&du, r, t, &self.a, n_in, n_in, r, dx, n_in);
        }
    }
}

/// `[rows × cols]` row-major → `[cols × rows]`.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; rows * cols];
    for (i, row) in m.chunks_exact(cols).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            out[j * rows + i] = v;
        }
    }
    out
}

/// LoRA pairs of a whole model: per layer, the adapted targets with their pairs.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraSet {
    /// `alpha` as stored in the adapter; a pair of rank `r` is scaled by `alpha / r`, as
    /// llama.cpp applies it.
    pub alpha: f32,
    /// Per layer, `(target, pair)` sorted by target.
    pub layers: Vec<Vec<(Target, LoraPair)>>,
}

impl LoraSet {
    /// The multiplier `alpha / r` applied to `B·A` of `p` (1 when alpha is 0, as llama.cpp).
    pub fn scale(&self, p: &LoraPair) -> f32 {
        if self.alpha == 0.0 {
            1.0
        } else {
            self.alpha / p.r as f32
        }
    }

    /// The pair of `target` in layer `il`, if adapted.
    pub fn get(&self, il: usize, target: Target) -> Option<&LoraPair> {
        self.layers.get(il)?.iter().find(|(t, _)| *t == target).map(|(_, p)| p)
    }

    /// Mutable access to the pair of `target` in layer `il`.
    pub fn get_mut(&mut self, il: usize, target: Target) -> Option<&mut LoraPair> {
        self.layers.get_mut(il)?.iter_mut().find(|(t, _)| *t == target).map(|(_, p)| p)
    }

    /// A set of the same shapes, all zeros (gradient accumulators, optimizer moments).
    pub fn zeros_like(&self) -> LoraSet {
        LoraSet {
            alpha: self.alpha,
            layers: self
                .layers
                .iter()
                .map(|l| l.iter().map(|(t, p)| (*t, LoraPair::zeros(p.n_in, p.n_out, p.r))).collect())
                .collect(),
        }
    }

    /// Every parameter buffer (A then B of each pair, layer by layer), for optimizers.
    pub fn buffers_mut(&mut self) -> Vec<&mut Vec<f32>> {
        self.layers.iter_mut().flat_map(|l| l.iter_mut().flat_map(|(_, p)| [&mut p.a, &mut p.b])).collect()
    }

    /// Every parameter buffer, read-only, in the order of [`buffers_mut`](Self::buffers_mut).
    pub fn buffers(&self) -> Vec<&Vec<f32>> {
        self.layers.iter().flat_map(|l| l.iter().flat_map(|(_, p)| [&p.a, &p.b])).collect()
    }

    /// Number of trainable parameters.
    pub fn n_params(&self) -> usize {
        self.buffers().iter().map(|b| b.len()).sum()
    }

    /// Set every value to zero.
    pub fn clear(&mut self) {
        self.buffers_mut().into_iter().for_each(|b| b.iter_mut().for_each(|v| *v = 0.0));
    }

    /// Ranks present (sorted, distinct).
    pub fn ranks(&self) -> Vec<usize> {
        let mut r: Vec<usize> = self.layers.iter().flatten().map(|(_, p)| p.r).collect();
        r.sort_unstable();
        r.dedup();
        r
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
