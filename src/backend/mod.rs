//! The compute seam: every op the model and the trainer run, behind two traits.
//!
//! [`Backend`] holds the forward ops (inference and the training forward) on opaque buffers
//! ([`Backend::Buf`], a flat f32 tensor wherever the backend keeps it); [`TrainBackend`] adds
//! their backward passes, the loss and the optimizer. Ops come in forward/backward pairs with the
//! same shapes: quantized matmul `x·Wᵀ` / input backward `dY·W`, RMSNorm, RoPE, the GLU
//! activations, causal attention (GQA, sliding window, softcap), LoRA down/up, cross-entropy
//! over the output projection (chunked; never a full `T × vocab` matrix), AdamW, embedding
//! gather. Frozen weights arrive through [`crate::weights::QuantWeight`]; the small frozen
//! vectors (norm weights, biases) and LoRA pairs are buffers of the backend.
//!
//! Implementations:
//! - [`cpu::Cpu`]: f32 numerics (training and `--numerics f32`); implements both traits. With
//!   [`cpu::Matmul::Q8`] (`--matmul q8`) its frozen-weight products are `CpuGgml`'s Q8 ones.
//! - [`cpu::CpuGgml`]: llama.cpp's CPU numerics (Q8 activations with integer dots, f16 K/V,
//!   its softmax/exp/GELU/rope orders) for inference; it implements only [`Backend`], so a
//!   training step cannot be built on numerics its backward does not match.
//! - [`checked::Checked`]: wraps a backend and checks every call's buffer sizes and that what
//!   comes out is finite (the gradient tests run through it).
//! - [`cuda`]: the stand-in until the CUDA backend is compiled in (`--features cuda`); it
//!   fails with a clear error.
//!
//! A new backend implements these traits (see ARCHITECTURE.md for the list of files).

pub mod checked;
pub mod cpu;
pub mod cuda;

use crate::lora::LoraPair;
use crate::ops::activation::Act;
pub use crate::ops::attention::AttnShape;
use crate::ops::rope::Rope;
use crate::weights::QuantWeight;

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

/// One attention call's shape and scale.
#[derive(Clone, Copy, Debug)]
pub struct Attn {
    /// Heads, widths, window, softcap.
    pub shape: AttnShape,
    /// Score scale (usually `1/√head_dim`).
    pub scale: f32,
    /// llama.cpp multiplies `q` by the scale before `Q·Kᵀ` (gemma3) instead of the scores;
    /// backends that follow llama.cpp's rounding honour it, f32 backends always scale `q`.
    pub scale_q: bool,
}

/// One layer's key/value cache on a backend: `[n_ctx, width]` each.
#[derive(Debug)]
pub struct KvLayer<'c, T> {
    /// Keys.
    pub k: &'c mut T,
    /// Values.
    pub v: &'c mut T,
}

/// Forward ops on one kind of device buffer.
pub trait Backend: Sync {
    /// An f32 tensor (flat; shapes are passed with each op) where the backend keeps it.
    type Buf: Send + Sync;

    /// Short name for messages (`cpu`, `cpu-ggml`, …).
    fn name(&self) -> &'static str;

    /// A buffer of `n` zeros.
    fn zeros(&self, n: usize) -> Self::Buf;
    /// A buffer holding `data`.
    fn upload(&self, data: &[f32]) -> Self::Buf;
    /// The values of `x` on the host.
    fn download(&self, x: &Self::Buf) -> Vec<f32>;
    /// Number of values in `x`.
    fn len(&self, x: &Self::Buf) -> usize;
    /// A copy of `x`.
    fn copy(&self, x: &Self::Buf) -> Self::Buf;
    /// `dst[at..at + src.len()] = src` (a KV-cache write).
    fn write_at(&self, dst: &mut Self::Buf, at: usize, src: &Self::Buf);

    /// `x += y`.
    fn add(&self, x: &mut Self::Buf, y: &Self::Buf);
    /// `x[t, :] += bias` for every row of `x`.
    fn add_rows(&self, x: &mut Self::Buf, bias: &Self::Buf);
    /// `x *= s`.
    fn scale(&self, x: &mut Self::Buf, s: f32);
    /// `x ⊙ m` as a new buffer.
    fn mul(&self, x: &Self::Buf, m: &Self::Buf) -> Self::Buf;
    /// `x = cap·tanh(x/cap)`.
    fn softcap(&self, x: &mut Self::Buf, cap: f32);
    /// The first value of `x` whose magnitude is not below `bound` (or that is NaN), if any.
    fn find_not_below(&self, x: &Self::Buf, bound: f32) -> Option<f32>;

    /// Rows of `table` for `tokens`, times `scale` when given; `out` is `[T, n_in]`.
    fn embed(&self, table: &dyn QuantWeight, tokens: &[u32], scale: Option<f32>, out: &mut Self::Buf);
    /// `y = x·Wᵀ` (`x` `[T, n_in]`, `y` `[T, n_out]`, overwritten).
    fn matmul(&self, w: &dyn QuantWeight, x: &Self::Buf, y: &mut Self::Buf);
    /// [`Backend::matmul`] of several weights on the same `x` (`ys[i] = x·ws[i]ᵀ`), the same
    /// values; a backend may run them together (the CPU's one-token forward: one parallel
    /// region instead of one per weight).
    fn matmul_many(&self, ws: &[&dyn QuantWeight], x: &Self::Buf, ys: &mut [&mut Self::Buf]) {
        for (w, y) in ws.iter().zip(ys.iter_mut()) {
            self.matmul(*w, x, y);
        }
    }
    /// `out = rmsnorm(x)·w` per `n`-wide row.
    fn rms_norm(&self, x: &Self::Buf, out: &mut Self::Buf, n: usize, eps: f32, w: Option<&Self::Buf>);
    /// Rotate `n_heads` heads of `head_dim` in each row of `x`, row `t` at `positions[t]`.
    fn rope(&self, rope: &Rope, x: &mut Self::Buf, n_heads: usize, head_dim: usize, positions: &[u32]);
    /// `gate = act(gate)·up`.
    fn glu(&self, act: Act, gate: &mut Self::Buf, up: &Self::Buf);
    /// Inference attention over a KV cache: writes the new `k`, `v` rows at `n_past` into the
    /// cache, then `out = softmax(q·Kᵀ·scale)·V` for the new tokens (causal, window, softcap).
    /// `q`, `k`, `v` are the roped, unscaled projections; the backend may round them in place.
    #[allow(clippy::too_many_arguments)]
    fn attention_kv(
        &self,
        a: Attn,
        q: &mut Self::Buf,
        k: &mut Self::Buf,
        v: &mut Self::Buf,
        cache: KvLayer<'_, Self::Buf>,
        n_past: usize,
        out: &mut Self::Buf,
    );
    /// Training attention over one sequence (no cache; packed samples separated by
    /// `segments`): `out` and the per-(token, head) log-sum-exp `lse` its backward needs.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        a: Attn,
        q: &Self::Buf,
        k: &Self::Buf,
        v: &Self::Buf,
        segments: Option<&[u32]>,
        out: &mut Self::Buf,
        lse: &mut Self::Buf,
    );
    /// LoRA down projection `u = x·Aᵀ` (`[T, r]`).
    fn lora_down(&self, p: &LoraPair<Self::Buf>, x: &Self::Buf) -> Self::Buf;
    /// LoRA up projection, added: `y += s · u·Bᵀ`.
    fn lora_up_add(&self, p: &LoraPair<Self::Buf>, u: &Self::Buf, s: f32, y: &mut Self::Buf);
    /// [`Backend::lora_down`] then [`Backend::lora_up_add`] with the same bits: returns `u` and
    /// adds `s · u·Bᵀ` to `y`. A backend may do both in one pass over the rows.
    fn lora_forward(&self, p: &LoraPair<Self::Buf>, x: &Self::Buf, s: f32, y: &mut Self::Buf) -> Self::Buf {
        let u = self.lora_down(p, x);
        self.lora_up_add(p, &u, s, y);
        u
    }
}

/// The backward passes, the loss and the optimizer: what a training step needs beyond
/// [`Backend`]. Only backends whose forward numerics these backwards differentiate implement it.
pub trait TrainBackend: Backend {
    /// Input gradient of [`Backend::matmul`] (W frozen): `dx = dy·W`, or `dx += dy·W`.
    fn matmul_backward_input(&self, w: &dyn QuantWeight, dy: &Self::Buf, dx: &mut Self::Buf, accumulate: bool);
    /// Input gradient of [`Backend::rms_norm`] (w frozen); `dx` is overwritten.
    #[allow(clippy::too_many_arguments)]
    fn rms_norm_backward(&self, x: &Self::Buf, w: Option<&Self::Buf>, n: usize, eps: f32, dy: &Self::Buf, dx: &mut Self::Buf);
    /// Backward of [`Backend::rope`], in place (the transposed rotation).
    fn rope_backward(&self, rope: &Rope, dx: &mut Self::Buf, n_heads: usize, head_dim: usize, positions: &[u32]);
    /// Backward of [`Backend::glu`]: `dgate`, `dup` overwritten given the forward inputs.
    fn glu_backward(&self, act: Act, gate: &Self::Buf, up: &Self::Buf, dh: &Self::Buf, dgate: &mut Self::Buf, dup: &mut Self::Buf);
    /// Backward of [`Backend::attention`] given its inputs, `out`, `lse` and `dout`; `dq`, `dk`,
    /// `dv` overwritten.
    #[allow(clippy::too_many_arguments)]
    fn attention_backward(
        &self,
        a: Attn,
        q: &Self::Buf,
        k: &Self::Buf,
        v: &Self::Buf,
        segments: Option<&[u32]>,
        out: &Self::Buf,
        lse: &Self::Buf,
        dout: &Self::Buf,
        dq: &mut Self::Buf,
        dk: &mut Self::Buf,
        dv: &mut Self::Buf,
    );
    /// LoRA backward given the forward input `x`, code `u` and `dy`: `grad.a += duᵀ·x`,
    /// `grad.b += s·dyᵀ·u` and, when given, `dx += du·A` with `du = s·dy·B`.
    #[allow(clippy::too_many_arguments)]
    fn lora_backward(
        &self,
        p: &LoraPair<Self::Buf>,
        x: &Self::Buf,
        u: &Self::Buf,
        dy: &Self::Buf,
        s: f32,
        grad: &mut LoraPair<Self::Buf>,
        dx: Option<&mut Self::Buf>,
    );
    /// Next-token cross-entropy over the output projection (soft-capped when given), in
    /// row chunks: (Σ −log p over rows with a target ≥ 0, their count). With `dhidden`, also
    /// `dhidden = scale · d(Σ loss)/d hidden`.
    #[allow(clippy::too_many_arguments)]
    fn cross_entropy(
        &self,
        output: &dyn QuantWeight,
        softcap: Option<f32>,
        hidden: &Self::Buf,
        targets: &[i32],
        scale: f32,
        dhidden: Option<&mut Self::Buf>,
    ) -> (f64, usize);
    /// `acc + Σ x²`, summed in f64 in element order (global gradient norms).
    fn sum_squares(&self, x: &Self::Buf, acc: f64) -> f64;
    /// One AdamW update of `p` from `g` with moments `m`, `v` (torch's formula):
    /// `step_size = lr / (1 − β₁ᵗ)`, `bc2_sqrt = √(1 − β₂ᵗ)`, `decay = 1 − lr·wd`.
    #[allow(clippy::too_many_arguments)]
    fn adamw(
        &self,
        cfg: AdamWConfig,
        step_size: f32,
        bc2_sqrt: f32,
        decay: f32,
        p: &mut Self::Buf,
        g: &Self::Buf,
        m: &mut Self::Buf,
        v: &mut Self::Buf,
    );
}
