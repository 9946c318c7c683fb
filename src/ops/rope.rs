//! Rotary position embedding. NORM rotates adjacent pairs `(x[2i], x[2i+1])` (llama on GGUF);
//! NEOX rotates `(x[i], x[i + n_rot/2])` (qwen, gemma). Pair i turns by
//! `pos · freq_scale · base^(−2i/n_rot) / factor_i` (factor from `rope_freqs`, llama3 scaling).

/// Which pairs rotate together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs.
    Norm,
    /// Halves.
    Neox,
}

/// Precomputed inverse frequencies for one rope configuration.
#[derive(Clone, Debug)]
pub struct Rope {
    /// Pair style.
    pub style: RopeStyle,
    /// Rotated dimensions per head (≤ head_dim).
    pub n_rot: usize,
    inv_freq: Vec<f32>,
}

impl Rope {
    /// Build with `base`, `freq_scale` (1/linear factor) and optional per-pair divisors.
    pub fn new(style: RopeStyle, n_rot: usize, base: f32, freq_scale: f32, factors: Option<&[f32]>) -> Self {
        // ggml computes theta_i = pos · base^(−2i/n_rot) by repeated multiplication with
        // theta_scale = base^(−2/n_rot); we mirror that to stay close to its rounding.
        let theta_scale = base.powf(-2.0 / n_rot as f32);
        let mut inv_freq = Vec::with_capacity(n_rot / 2);
        let mut t = 1.0f32;
        for i in 0..n_rot / 2 {
            let f = factors.map_or(1.0, |f| f[i]);
            inv_freq.push(t * freq_scale / f);
            t *= theta_scale;
        }
        Rope { style, n_rot, inv_freq }
    }

    /// Rotate `n_heads` heads of width `head_dim` in `x` (one token) at position `pos`.
    pub fn apply(&self, x: &mut [f32], n_heads: usize, head_dim: usize, pos: usize) {
        let half = self.n_rot / 2;
        for h in 0..n_heads {
            let v = &mut x[h * head_dim..(h + 1) * head_dim];
            for i in 0..half {
                let theta = pos as f32 * self.inv_freq[i];
                let (s, c) = theta.sin_cos();
                let (a, b) = match self.style {
                    RopeStyle::Norm => (2 * i, 2 * i + 1),
                    RopeStyle::Neox => (i, i + half),
                };
                let (x0, x1) = (v[a], v[b]);
                v[a] = x0 * c - x1 * s;
                v[b] = x0 * s + x1 * c;
            }
        }
    }
}
