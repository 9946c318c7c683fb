//! Rotary position embedding. NORM rotates adjacent pairs `(x[2i], x[2i+1])` (llama on GGUF);
//! NEOX rotates `(x[i], x[i + n_rot/2])` (qwen, gemma). Pair i turns by
//! `pos · freq_scale · base^(−2i/n_rot) / factor_i` (factor from `rope_freqs`, llama3 scaling).
//! The rotation is orthogonal, so the backward is the transpose: the same pairs turned by −θ.

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
    theta_scale: f32,
    freq_scale: f32,
    factors: Option<Vec<f32>>,
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
        Rope { style, n_rot, inv_freq, theta_scale, freq_scale, factors: factors.map(|f| f[..n_rot / 2].to_vec()) }
    }

    /// The per-pair angle rate: pair i of a row at position p turns by `p as f32 · inv_freq[i]`
    /// (what [`Rope::apply`] computes; a GPU backend builds its cos/sin tables from it).
    pub fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
    }

    /// Rotate `n_heads` heads of width `head_dim` in `x` (one token) at position `pos`.
    pub fn apply(&self, x: &mut [f32], n_heads: usize, head_dim: usize, pos: usize) {
        self.rotate(x, n_heads, head_dim, pos, false);
    }

    /// [`Rope::apply`] with ggml's angle rounding (llama.cpp-numerics inference): the angle of
    /// pair i is `freq_scale · (pos·s·s·…·s) / factor_i` (i factors of `s = base^(−2/n_rot)`,
    /// multiplied into the position one at a time, as `ggml_rope_cache_init` does) instead of
    /// `pos · inv_freq_i`.
    pub fn apply_ggml(&self, x: &mut [f32], n_heads: usize, head_dim: usize, pos: usize) {
        assert!(self.n_rot <= head_dim && x.len() >= n_heads * head_dim, "rope: bad shape");
        let half = self.n_rot / 2;
        let mut theta = pos as f32;
        // The angles on the stack for the usual head sizes (no allocation per token row).
        let mut stack = [(0f32, 0f32); 256];
        let mut heap = Vec::new();
        let cs: &mut [(f32, f32)] = if half <= stack.len() {
            &mut stack[..half]
        } else {
            heap.resize(half, (0f32, 0f32));
            &mut heap
        };
        for (i, e) in cs.iter_mut().enumerate() {
            let ff = self.factors.as_ref().map_or(1.0, |f| f[i]);
            let t = self.freq_scale * (theta / ff);
            theta *= self.theta_scale;
            let (s, c) = t.sin_cos();
            *e = (c, s);
        }
        #[cfg(target_arch = "x86_64")]
        if crate::quant::simd_enabled() {
            // SAFETY: simd_enabled() implies the CPU has FMA.
            return unsafe { rotate_ggml_fma(self.style, cs, x, n_heads, head_dim) };
        }
        rotate_ggml(self.style, cs, x, n_heads, head_dim);
    }

    /// Backward of [`Rope::apply`], in place: the transpose of the rotation, i.e. a turn by −θ.
    /// `dx` holds dL/d(output) on entry and dL/d(input) on return.
    pub fn apply_backward(&self, dx: &mut [f32], n_heads: usize, head_dim: usize, pos: usize) {
        self.rotate(dx, n_heads, head_dim, pos, true);
    }

    /// [`Rope::apply`] on T rows of `n_heads·head_dim` values, row t at `positions[t]`.
    pub fn apply_positions(&self, x: &mut [f32], n_heads: usize, head_dim: usize, positions: &[u32]) {
        self.rotate_rows(x, n_heads, head_dim, positions, false);
    }

    /// [`Rope::apply_backward`] on T rows, row t at `positions[t]`.
    pub fn apply_backward_positions(&self, dx: &mut [f32], n_heads: usize, head_dim: usize, positions: &[u32]) {
        self.rotate_rows(dx, n_heads, head_dim, positions, true);
    }

    fn rotate_rows(&self, x: &mut [f32], n_heads: usize, head_dim: usize, positions: &[u32], back: bool) {
        let w = n_heads * head_dim;
        assert_eq!(x.len(), positions.len() * w, "rope: x must hold one row of n_heads·head_dim per position");
        // Token rows are independent: many are rotated in parallel (the same bits).
        use rayon::prelude::*;
        x.par_chunks_exact_mut(w.max(1)).zip(positions).with_min_len(16).for_each(|(row, &p)| {
            self.rotate(row, n_heads, head_dim, p as usize, back);
        });
    }

    /// Turn each pair by θ (`back`: by −θ, the transpose).
    fn rotate(&self, x: &mut [f32], n_heads: usize, head_dim: usize, pos: usize, back: bool) {
        assert!(self.n_rot <= head_dim && x.len() >= n_heads * head_dim, "rope: bad shape");
        let half = self.n_rot / 2;
        // The angles once per row (every head turns by the same ones), on the stack for the
        // usual head sizes.
        let mut stack = [(0f32, 0f32); 256];
        let mut heap = Vec::new();
        let sc: &mut [(f32, f32)] = if half <= stack.len() {
            &mut stack[..half]
        } else {
            heap.resize(half, (0f32, 0f32));
            &mut heap
        };
        for (i, e) in sc.iter_mut().enumerate() {
            let (s, c) = (pos as f32 * self.inv_freq[i]).sin_cos();
            *e = (if back { -s } else { s }, c);
        }
        for h in 0..n_heads {
            let v = &mut x[h * head_dim..(h + 1) * head_dim];
            for (i, &(s, c)) in sc.iter().enumerate() {
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

/// The rotation of [`Rope::apply_ggml`] with the angles' `(cos, sin)` per pair.
#[inline(always)]
fn rotate_ggml(style: RopeStyle, cs: &[(f32, f32)], x: &mut [f32], n_heads: usize, head_dim: usize) {
    let half = cs.len();
    for h in 0..n_heads {
        let v = &mut x[h * head_dim..(h + 1) * head_dim];
        for (i, &(c, s)) in cs.iter().enumerate() {
            let (a, b) = match style {
                RopeStyle::Norm => (2 * i, 2 * i + 1),
                RopeStyle::Neox => (i, i + half),
            };
            let (x0, x1) = (v[a], v[b]);
            // As GCC contracts ggml's `x0*cos - x1*sin` / `x0*sin + x1*cos` (checked bit for
            // bit against llama.cpp's rope output).
            v[a] = x0.mul_add(c, -(x1 * s));
            v[b] = x0.mul_add(s, x1 * c);
        }
    }
}

/// [`rotate_ggml`] compiled with FMA: `mul_add` becomes the instruction instead of a library
/// call (a fused multiply-add either way: the same bits).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn rotate_ggml_fma(style: RopeStyle, cs: &[(f32, f32)], x: &mut [f32], n_heads: usize, head_dim: usize) {
    rotate_ggml(style, cs, x, n_heads, head_dim)
}
