//! The CPU backend: `Buf = Vec<f32>`, the hand-written kernels of [`crate::ops`] and
//! [`crate::quant`] (AVX2/AVX-512 where the CPU has them, scalar references otherwise).
//!
//! Two numerics, one type with a const parameter:
//! - [`Cpu`] (`CpuBackend<false>`): exact f32 activations everywhere — training (its backward
//!   passes differentiate exactly this forward) and `--numerics f32`.
//! - [`CpuGgml`] (`CpuBackend<true>`): llama.cpp's CPU numerics for inference — activations
//!   quantized to the weight's `vec_dot_type` with integer dots, q/K/V and the attention
//!   probabilities rounded to f16, ggml's exp/GELU/SiLU/rope orders. No [`TrainBackend`].
//!
//! [`Cpu`] has one choice, [`Matmul`] (`--matmul`): the frozen-weight products `x·Wᵀ` and their
//! input backward `dY·W` in f32 (default) or, with [`Matmul::Q8`], on 8-bit integer dots
//! ([`matmul_q8_fwd`]: llama.cpp's kernels below 32 tokens, above them an int8 GEMM on weights
//! re-quantized to 8 bits per 32; [`matmul_backward_input_q8`]), the loss projection included.
//! The backward treats the 8-bit product as exact (straight-through); everything else stays f32.

mod lora;

use rayon::prelude::*;

use super::{AdamWConfig, Attn, Backend, KvLayer, TrainBackend};
use crate::lora::LoraPair;
use crate::ops::activation::{glu_backward, glu_inplace, glu_inplace_ggml, Act};
use crate::ops::attention::{causal_attention, causal_attention_ggml};
use crate::ops::attention_train::{attention_backward, attention_forward};
use crate::ops::f16::round_f16_inplace;
use crate::ops::loss;
use crate::ops::matmul::{matmul, matmul_backward_input, matmul_backward_input_add};
use crate::ops::matmul_q8::{matmul_q8, matmul_q8_many};
use crate::ops::matmul_q8_bwd::matmul_backward_input_q8;
use crate::ops::matmul_q8_fwd::matmul_q8_fwd;
use crate::ops::norm::{rms_norm, rms_norm_backward};
use crate::ops::rope::Rope;
use crate::weights::QuantWeight;

/// How [`Cpu`] computes the frozen-weight products `x·Wᵀ` (`--matmul`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Matmul {
    /// f32 activations times weights decoded to f32 (exact; the default).
    #[default]
    F32,
    /// 8-bit integer dots for `x·Wᵀ` ([`matmul_q8_fwd`]) and `dY·W` ([`matmul_backward_input_q8`])
    /// of every quantized weight (GGUF blocks and the HF formats); F32/F16/BF16 weights stay f32.
    Q8,
}

impl Matmul {
    /// `f32` or `q8` (the `--matmul` values).
    pub fn from_name(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" => Some(Matmul::F32),
            "q8" => Some(Matmul::Q8),
            _ => None,
        }
    }
    /// The `--matmul` value.
    pub fn name(self) -> &'static str {
        match self {
            Matmul::F32 => "f32",
            Matmul::Q8 => "q8",
        }
    }
}

/// The CPU backend; `GGML` selects llama.cpp's inference numerics.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend<const GGML: bool> {
    /// The frozen-weight products of [`Cpu`] ([`CpuGgml`] always takes the Q8 path).
    pub matmul: Matmul,
}

/// f32 numerics (training and `--numerics f32`); `x·Wᵀ` as its [`Matmul`] says.
pub type Cpu = CpuBackend<false>;
/// llama.cpp's CPU numerics (inference only).
pub type CpuGgml = CpuBackend<true>;

impl Cpu {
    /// The f32 backend with `x·Wᵀ` computed as `matmul` says.
    pub fn with_matmul(matmul: Matmul) -> Self {
        CpuBackend { matmul }
    }
}

/// `dx = dy·W` (or `dx += dy·W`) in f32 on decoded panels.
fn backward_input_f32(w: &dyn QuantWeight, dy: &[f32], dx: &mut [f32], accumulate: bool) {
    if accumulate {
        matmul_backward_input_add(w, dy, dx)
    } else {
        matmul_backward_input(w, dy, dx)
    }
}

/// `q·scale` as a new buffer (the training attention takes unscaled `q`).
fn scaled(q: &[f32], s: f32) -> Vec<f32> {
    q.par_iter().with_min_len(PAR_CHUNK).map(|&a| a * s).collect()
}

/// Elements per parallel task of the elementwise ops: long buffers are split across threads
/// (each element computed as alone, so the same bits).
const PAR_CHUNK: usize = 1 << 13;

impl<const GGML: bool> Backend for CpuBackend<GGML> {
    type Buf = Vec<f32>;

    fn name(&self) -> &'static str {
        match (GGML, self.matmul) {
            (true, _) => "cpu-ggml",
            (false, Matmul::F32) => "cpu",
            (false, Matmul::Q8) => "cpu-q8",
        }
    }

    fn zeros(&self, n: usize) -> Vec<f32> {
        vec![0f32; n]
    }
    fn upload(&self, data: &[f32]) -> Vec<f32> {
        data.to_vec()
    }
    fn download(&self, x: &Vec<f32>) -> Vec<f32> {
        x.clone()
    }
    fn len(&self, x: &Vec<f32>) -> usize {
        x.len()
    }
    fn copy(&self, x: &Vec<f32>) -> Vec<f32> {
        x.par_iter().with_min_len(PAR_CHUNK).copied().collect()
    }
    fn write_at(&self, dst: &mut Vec<f32>, at: usize, src: &Vec<f32>) {
        dst[at..at + src.len()].copy_from_slice(src);
    }

    fn add(&self, x: &mut Vec<f32>, y: &Vec<f32>) {
        x.par_chunks_mut(PAR_CHUNK).zip(y.par_chunks(PAR_CHUNK)).for_each(|(x, y)| x.iter_mut().zip(y).for_each(|(a, &b)| *a += b));
    }
    fn add_rows(&self, x: &mut Vec<f32>, bias: &Vec<f32>) {
        let rows = x.par_chunks_exact_mut(bias.len()).with_min_len(PAR_CHUNK.div_ceil(bias.len()));
        rows.for_each(|r| r.iter_mut().zip(bias).for_each(|(a, &b)| *a += b));
    }
    fn scale(&self, x: &mut Vec<f32>, s: f32) {
        x.par_chunks_mut(PAR_CHUNK).for_each(|x| x.iter_mut().for_each(|a| *a *= s));
    }
    fn mul(&self, x: &Vec<f32>, m: &Vec<f32>) -> Vec<f32> {
        x.par_iter().zip(m).with_min_len(PAR_CHUNK).map(|(&a, &k)| a * k).collect()
    }
    fn softcap(&self, x: &mut Vec<f32>, cap: f32) {
        x.par_chunks_mut(PAR_CHUNK).for_each(|x| x.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh()));
    }
    fn find_not_below(&self, x: &Vec<f32>, bound: f32) -> Option<f32> {
        x.iter().copied().find(|v| v.is_nan() || v.abs() >= bound)
    }

    fn embed(&self, table: &dyn QuantWeight, tokens: &[u32], scale: Option<f32>, out: &mut Vec<f32>) {
        let e = table.n_in();
        for (t, &id) in tokens.iter().enumerate() {
            table.decode_rows(id as usize, id as usize + 1, &mut out[t * e..(t + 1) * e]);
        }
        if let Some(s) = scale {
            out.iter_mut().for_each(|v| *v *= s);
        }
    }
    fn matmul(&self, w: &dyn QuantWeight, x: &Vec<f32>, y: &mut Vec<f32>) {
        match w.as_ggml() {
            Some(q) if GGML => matmul_q8(&q, x, y),
            _ if self.matmul == Matmul::Q8 => matmul_q8_fwd(w, x, y),
            _ => matmul(w, x, y),
        }
    }
    fn matmul_many(&self, ws: &[&dyn QuantWeight], x: &Vec<f32>, ys: &mut [&mut Vec<f32>]) {
        let qs: Option<Vec<_>> = ws.iter().map(|w| w.as_ggml()).collect();
        match qs {
            Some(qs) if GGML => {
                let mut ys: Vec<&mut [f32]> = ys.iter_mut().map(|y| y.as_mut_slice()).collect();
                matmul_q8_many(&qs, x, &mut ys)
            }
            _ => ws.iter().zip(ys.iter_mut()).for_each(|(w, y)| self.matmul(*w, x, y)),
        }
    }
    fn rms_norm(&self, x: &Vec<f32>, out: &mut Vec<f32>, n: usize, eps: f32, w: Option<&Vec<f32>>) {
        rms_norm(x, out, n, eps, w.map(|w| w.as_slice()));
    }
    fn rope(&self, rope: &Rope, x: &mut Vec<f32>, n_heads: usize, head_dim: usize, positions: &[u32]) {
        // Token rows are independent: rotated in parallel (the same bits as one by one).
        x.par_chunks_mut(n_heads * head_dim).zip(positions).with_min_len(8).for_each(|(row, &p)| {
            if GGML {
                rope.apply_ggml(row, n_heads, head_dim, p as usize);
            } else {
                rope.apply(row, n_heads, head_dim, p as usize);
            }
        });
    }
    fn glu(&self, act: Act, gate: &mut Vec<f32>, up: &Vec<f32>) {
        if GGML {
            glu_inplace_ggml(act, gate, up)
        } else {
            glu_inplace(act, gate, up)
        }
    }
    fn attention_kv(
        &self,
        a: Attn,
        q: &mut Vec<f32>,
        k: &mut Vec<f32>,
        v: &mut Vec<f32>,
        cache: KvLayer<'_, Vec<f32>>,
        n_past: usize,
        out: &mut Vec<f32>,
    ) {
        let s = a.shape;
        let (kd, vd) = (s.n_head_kv * s.head_dim, s.n_head_kv * s.v_dim);
        // f32 numerics scale q; llama.cpp scales q itself only where its graph does (gemma3)
        // and the scores otherwise.
        let q_first = !GGML || a.scale_q;
        if q_first {
            self.scale(q, a.scale);
        }
        if GGML {
            // Its KV cache and q's vec_dot_type are f16.
            for buf in [&mut *q, &mut *k, &mut *v] {
                buf.par_chunks_mut(1 << 13).for_each(round_f16_inplace);
            }
        }
        cache.k[n_past * kd..n_past * kd + k.len()].copy_from_slice(k);
        cache.v[n_past * vd..n_past * vd + v.len()].copy_from_slice(v);
        if GGML {
            let score_scale = if q_first { 1.0 } else { a.scale };
            causal_attention_ggml(s, score_scale, q, cache.k, cache.v, n_past, out);
        } else {
            causal_attention(s, q, cache.k, cache.v, n_past, out);
        }
    }
    fn attention(
        &self,
        a: Attn,
        q: &Vec<f32>,
        k: &Vec<f32>,
        v: &Vec<f32>,
        segments: Option<&[u32]>,
        out: &mut Vec<f32>,
        lse: &mut Vec<f32>,
    ) {
        attention_forward(a.shape, &scaled(q, a.scale), k, v, segments, out, lse);
    }
    fn lora_down(&self, p: &LoraPair<Vec<f32>>, x: &Vec<f32>) -> Vec<f32> {
        lora::down(p, x)
    }
    fn lora_up_add(&self, p: &LoraPair<Vec<f32>>, u: &Vec<f32>, s: f32, y: &mut Vec<f32>) {
        lora::up_add(p, u, s, y)
    }
    fn lora_forward(&self, p: &LoraPair<Vec<f32>>, x: &Vec<f32>, s: f32, y: &mut Vec<f32>) -> Vec<f32> {
        lora::forward(p, x, s, y)
    }
}

impl TrainBackend for Cpu {
    fn matmul_backward_input(&self, w: &dyn QuantWeight, dy: &Vec<f32>, dx: &mut Vec<f32>, accumulate: bool) {
        match self.matmul {
            Matmul::F32 => backward_input_f32(w, dy, dx, accumulate),
            // Straight-through: the forward's 8-bit product is differentiated as the exact one,
            // and dY·W itself runs on 8-bit integer dots.
            Matmul::Q8 => matmul_backward_input_q8(w, dy, dx, accumulate),
        }
    }
    fn rms_norm_backward(&self, x: &Vec<f32>, w: Option<&Vec<f32>>, n: usize, eps: f32, dy: &Vec<f32>, dx: &mut Vec<f32>) {
        rms_norm_backward(x, w.map(|w| w.as_slice()), n, eps, dy, dx)
    }
    fn rope_backward(&self, rope: &Rope, dx: &mut Vec<f32>, n_heads: usize, head_dim: usize, positions: &[u32]) {
        rope.apply_backward_positions(dx, n_heads, head_dim, positions)
    }
    fn glu_backward(&self, act: Act, gate: &Vec<f32>, up: &Vec<f32>, dh: &Vec<f32>, dgate: &mut Vec<f32>, dup: &mut Vec<f32>) {
        glu_backward(act, gate, up, dh, dgate, dup)
    }
    fn attention_backward(
        &self,
        a: Attn,
        q: &Vec<f32>,
        k: &Vec<f32>,
        v: &Vec<f32>,
        segments: Option<&[u32]>,
        out: &Vec<f32>,
        lse: &Vec<f32>,
        dout: &Vec<f32>,
        dq: &mut Vec<f32>,
        dk: &mut Vec<f32>,
        dv: &mut Vec<f32>,
    ) {
        attention_backward(a.shape, &scaled(q, a.scale), k, v, segments, out, lse, dout, dq, dk, dv);
        self.scale(dq, a.scale);
    }
    fn lora_backward(
        &self,
        p: &LoraPair<Vec<f32>>,
        x: &Vec<f32>,
        u: &Vec<f32>,
        dy: &Vec<f32>,
        s: f32,
        grad: &mut LoraPair<Vec<f32>>,
        dx: Option<&mut Vec<f32>>,
    ) {
        lora::backward(p, x, u, dy, s, grad, dx.map(|d| d.as_mut_slice()))
    }
    fn cross_entropy(
        &self,
        output: &dyn QuantWeight,
        softcap: Option<f32>,
        hidden: &Vec<f32>,
        targets: &[i32],
        scale: f32,
        dhidden: Option<&mut Vec<f32>>,
    ) -> (f64, usize) {
        let dhidden = dhidden.map(|d| d.as_mut_slice());
        match self.matmul {
            // The loss projection and its input backward the same way as every x·Wᵀ.
            Matmul::Q8 => {
                let project = |x: &[f32], y: &mut [f32]| matmul_q8_fwd(output, x, y);
                let back = |dy: &[f32], dx: &mut [f32]| matmul_backward_input_q8(output, dy, dx, false);
                loss::cross_entropy_by(&project, &back, output, softcap, hidden, targets, scale, dhidden)
            }
            Matmul::F32 => loss::cross_entropy(output, softcap, hidden, targets, scale, dhidden),
        }
    }
    fn sum_squares(&self, x: &Vec<f32>, acc: f64) -> f64 {
        x.iter().fold(acc, |s, &g| s + (g as f64) * (g as f64))
    }
    fn adamw(
        &self,
        c: AdamWConfig,
        step_size: f32,
        bc2_sqrt: f32,
        decay: f32,
        p: &mut Vec<f32>,
        g: &Vec<f32>,
        m: &mut Vec<f32>,
        v: &mut Vec<f32>,
    ) {
        for i in 0..p.len() {
            let gi = g[i];
            m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * gi;
            v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * gi * gi;
            let denom = v[i].sqrt() / bc2_sqrt + c.eps;
            p[i] = p[i] * decay - step_size * m[i] / denom;
        }
    }
}
