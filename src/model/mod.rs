//! Transformer models read from GGUF: one file per architecture ([`llama`], [`qwen2`],
//! [`qwen3`], [`gemma3`]) saying which tensors its blocks have; the shared pre-norm block and
//! the forward pass live here. Weights stay quantized in the memory map ([`QMatrix`] views);
//! only norm vectors and biases (tiny) are decoded at load.

pub mod config;
pub mod gemma3;
pub mod kv_cache;
pub mod llama;
pub mod qwen2;
pub mod qwen3;
pub mod synth;
pub mod trace;

pub use config::{Arch, Config, ModelError};
pub use kv_cache::KvCache;

use crate::gguf::{GgufModel, TensorView};
use crate::ops::activation::{glu_inplace, glu_inplace_ggml};
use crate::ops::attention::{causal_attention, causal_attention_ggml, AttnShape};
use crate::ops::matmul::{matmul, QMatrix};
use crate::ops::matmul_q8::matmul_q8;
use crate::ops::norm::rms_norm_inplace;
use crate::ops::rope::Rope;
use crate::quant;
use crate::train::lora::{LoraSet, Target};
use rayon::prelude::*;
use trace::trace;

/// Which optional tensors an architecture's blocks carry.
#[derive(Clone, Copy, Debug, Default)]
pub struct BlockSpec {
    /// q/k/v biases are required.
    pub qkv_bias: bool,
    /// Per-head RMSNorm of q and k (before rope).
    pub qk_norm: bool,
    /// RMSNorm after attention and after the feed-forward, before each residual add.
    pub post_norms: bool,
}

/// One transformer block's weights.
pub struct Layer<'a> {
    /// Pre-attention norm.
    pub attn_norm: Vec<f32>,
    /// Projections.
    pub wq: QMatrix<'a>,
    /// Key projection.
    pub wk: QMatrix<'a>,
    /// Value projection.
    pub wv: QMatrix<'a>,
    /// Output projection.
    pub wo: QMatrix<'a>,
    /// Optional biases of q, k, v.
    pub bq: Option<Vec<f32>>,
    /// Key bias.
    pub bk: Option<Vec<f32>>,
    /// Value bias.
    pub bv: Option<Vec<f32>>,
    /// Per-head q/k norms.
    pub q_norm: Option<Vec<f32>>,
    /// Key norm.
    pub k_norm: Option<Vec<f32>>,
    /// Post-attention norm (gemma).
    pub post_attn_norm: Option<Vec<f32>>,
    /// Pre-FFN norm.
    pub ffn_norm: Vec<f32>,
    /// Gate projection.
    pub w_gate: QMatrix<'a>,
    /// Up projection.
    pub w_up: QMatrix<'a>,
    /// Down projection.
    pub w_down: QMatrix<'a>,
    /// Post-FFN norm (gemma).
    pub post_ffw_norm: Option<Vec<f32>>,
}

/// How the forward pass computes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Numerics {
    /// Exact f32 activations everywhere (the training path; gradients are checked against it).
    #[default]
    F32,
    /// llama.cpp's CPU numerics for inference: activations quantized to the weight type's
    /// `vec_dot_type` before each quantized matmul (integer dot products), K/V cache, `q` and
    /// the attention probabilities rounded to f16, the softmax sum in f64.
    Ggml,
}

impl Numerics {
    /// The inference default: [`Numerics::Ggml`], unless the environment variable
    /// `FINETUNE_NUMERICS` names another (`f32`).
    pub fn inference_default() -> Self {
        std::env::var("FINETUNE_NUMERICS").ok().and_then(|v| Self::from_name(&v)).unwrap_or(Numerics::Ggml)
    }

    /// Parse `f32` / `ggml` (case-insensitive).
    pub fn from_name(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Some(Numerics::F32),
            "ggml" | "llama.cpp" => Some(Numerics::Ggml),
            _ => None,
        }
    }
}

/// A loaded model: configuration plus views of its weights.
pub struct Model<'a> {
    /// Hyper-parameters.
    pub cfg: Config,
    /// Token embeddings, `[n_vocab, n_embd]`.
    pub tok_embd: QMatrix<'a>,
    /// Blocks.
    pub layers: Vec<Layer<'a>>,
    /// Final norm.
    pub output_norm: Vec<f32>,
    /// Output projection (`token_embd` when tied).
    pub output: QMatrix<'a>,
    rope: Rope,
    rope_swa: Rope,
    /// LoRA adapters applied on top of the weights, each with its user scale (llama.cpp's
    /// `--lora A.gguf:scale`; the pair multiplier is `scale · alpha / r`).
    pub adapters: Vec<(LoraSet, f32)>,
    /// Numerics of [`Model::forward`] / [`Model::logits`]: [`Numerics::F32`] after
    /// [`Model::load`]; the inference commands switch to [`Numerics::Ggml`].
    pub numerics: Numerics,
}

struct Loader<'a> {
    m: &'a GgufModel,
    file: String,
}

impl<'a> Loader<'a> {
    fn err(&self, name: &str, problem: impl Into<String>) -> ModelError {
        ModelError::Tensor { file: self.file.clone(), name: name.into(), problem: problem.into() }
    }
    fn view(&self, name: &str) -> Result<TensorView<'a>, ModelError> {
        self.m.tensor(name).ok_or_else(|| self.err(name, "missing"))
    }
    fn matrix(&self, name: &str, n_in: usize, n_out: usize) -> Result<QMatrix<'a>, ModelError> {
        let v = self.view(name)?;
        let dims = &v.info.dims;
        if dims.len() != 2 || dims[0] as usize != n_in || dims[1] as usize != n_out {
            return Err(self.err(name, format!("shape {dims:?}, expected [{n_in}, {n_out}]")));
        }
        if !v.info.ty.can_decode() {
            return Err(self.err(name, format!("type {} is not supported", v.info.ty)));
        }
        Ok(QMatrix { ty: v.info.ty, n_in, n_out, data: v.data })
    }
    fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>, ModelError> {
        let v = self.view(name)?;
        if v.info.n_elements() as usize != n {
            return Err(self.err(name, format!("shape {:?}, expected [{n}]", v.info.dims)));
        }
        let mut out = vec![0f32; n];
        quant::decode(v.info.ty, v.data, &mut out).map_err(|e| self.err(name, e.to_string()))?;
        Ok(out)
    }
    fn opt_vector(&self, name: &str, n: usize, required: bool) -> Result<Option<Vec<f32>>, ModelError> {
        if self.m.tensor(name).is_none() && !required {
            return Ok(None);
        }
        self.vector(name, n).map(Some)
    }
}

impl<'a> Model<'a> {
    /// Build a model over an opened GGUF file (weights are borrowed, not copied).
    pub fn load(m: &'a GgufModel) -> Result<Self, ModelError> {
        let file = m.main().path().display().to_string();
        let cfg = Config::from_gguf(m.main(), &file)?;
        let spec = match cfg.arch {
            Arch::Llama => llama::BLOCK,
            Arch::Qwen2 => qwen2::BLOCK,
            Arch::Qwen3 => qwen3::BLOCK,
            Arch::Gemma3 => gemma3::BLOCK,
        };
        let l = Loader { m, file };
        let (e, hd, vd) = (cfg.n_embd, cfg.head_dim, cfg.v_dim);
        let (qd, kd, vvd) = (cfg.n_head * hd, cfg.n_head_kv * hd, cfg.n_head_kv * vd);
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}");
            layers.push(Layer {
                attn_norm: l.vector(&n("attn_norm.weight"), e)?,
                wq: l.matrix(&n("attn_q.weight"), e, qd)?,
                wk: l.matrix(&n("attn_k.weight"), e, kd)?,
                wv: l.matrix(&n("attn_v.weight"), e, vvd)?,
                wo: l.matrix(&n("attn_output.weight"), cfg.n_head * vd, e)?,
                bq: l.opt_vector(&n("attn_q.bias"), qd, spec.qkv_bias)?,
                bk: l.opt_vector(&n("attn_k.bias"), kd, spec.qkv_bias)?,
                bv: l.opt_vector(&n("attn_v.bias"), vvd, spec.qkv_bias)?,
                q_norm: l.opt_vector(&n("attn_q_norm.weight"), hd, spec.qk_norm)?,
                k_norm: l.opt_vector(&n("attn_k_norm.weight"), hd, spec.qk_norm)?,
                post_attn_norm: l.opt_vector(&n("post_attention_norm.weight"), e, spec.post_norms)?,
                ffn_norm: l.vector(&n("ffn_norm.weight"), e)?,
                w_gate: l.matrix(&n("ffn_gate.weight"), e, cfg.n_ff)?,
                w_up: l.matrix(&n("ffn_up.weight"), e, cfg.n_ff)?,
                w_down: l.matrix(&n("ffn_down.weight"), cfg.n_ff, e)?,
                post_ffw_norm: l.opt_vector(&n("post_ffw_norm.weight"), e, spec.post_norms)?,
            });
        }
        let tok_embd = l.matrix("token_embd.weight", e, cfg.n_vocab)?;
        let output = if m.tensor("output.weight").is_some() { l.matrix("output.weight", e, cfg.n_vocab)? } else { tok_embd };
        let factors = match m.tensor("rope_freqs.weight") {
            Some(_) => Some(l.vector("rope_freqs.weight", cfg.n_rot / 2)?),
            None => None,
        };
        let rope = Rope::new(cfg.rope_style, cfg.n_rot, cfg.rope_base, cfg.rope_freq_scale, factors.as_deref());
        let rope_swa = Rope::new(cfg.rope_style, cfg.n_rot, cfg.rope_base_swa, 1.0, None);
        Ok(Model {
            output_norm: l.vector("output_norm.weight", e)?,
            cfg,
            tok_embd,
            layers,
            output,
            rope,
            rope_swa,
            adapters: Vec::new(),
            numerics: Numerics::F32,
        })
    }

    /// The frozen weight of `target` in layer `il`.
    pub fn weight(&self, il: usize, target: Target) -> &QMatrix<'a> {
        let l = &self.layers[il];
        match target {
            Target::Q => &l.wq,
            Target::K => &l.wk,
            Target::V => &l.wv,
            Target::O => &l.wo,
            Target::Gate => &l.w_gate,
            Target::Up => &l.w_up,
            Target::Down => &l.w_down,
        }
    }

    /// The rope of layer `il` (sliding-window layers have their own base).
    pub fn rope_for(&self, il: usize) -> &Rope {
        if self.cfg.is_swa(il) {
            &self.rope_swa
        } else {
            &self.rope
        }
    }

    /// `y = x·Wᵀ` for the weight of `target` in layer `il`, plus every applied adapter's
    /// `scale · B·A·x`.
    pub fn project(&self, il: usize, target: Target, x: &[f32], y: &mut [f32]) {
        self.mat(self.weight(il, target), x, y);
        for (set, user_scale) in &self.adapters {
            if let Some(p) = set.get(il, target) {
                p.forward_add(x, user_scale * set.scale(p), y);
            }
        }
    }

    /// `y = x·Wᵀ` in this model's numerics.
    fn mat(&self, w: &QMatrix, x: &[f32], y: &mut [f32]) {
        match self.numerics {
            Numerics::F32 => matmul(w, x, y),
            Numerics::Ggml => matmul_q8(w, x, y),
        }
    }

    /// A KV cache for up to `n_ctx` positions.
    pub fn new_cache(&self, n_ctx: usize) -> KvCache {
        KvCache::new(self.cfg.n_layer, n_ctx, self.cfg.n_head_kv * self.cfg.head_dim, self.cfg.n_head_kv * self.cfg.v_dim)
    }

    /// Embeddings of `tokens` (`[T, n_embd]`), scaled for gemma.
    pub fn embed(&self, tokens: &[u32]) -> Result<Vec<f32>, String> {
        let e = self.cfg.n_embd;
        let mut x = vec![0f32; tokens.len() * e];
        for (t, &id) in tokens.iter().enumerate() {
            if id as usize >= self.cfg.n_vocab {
                return Err(format!("token id {id} is outside the vocabulary (size {})", self.cfg.n_vocab));
            }
            self.tok_embd.decode_rows(id as usize, id as usize + 1, &mut x[t * e..(t + 1) * e]);
        }
        if let Some(s) = self.cfg.embed_scale {
            x.iter_mut().for_each(|v| *v *= s);
        }
        Ok(x)
    }

    /// Run `tokens` (at positions `cache.n_past..`) through every block; returns the final
    /// normed hidden states `[T, n_embd]` and advances the cache.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>, String> {
        let t = tokens.len();
        if cache.n_past + t > cache.n_ctx {
            return Err(format!("context full: {} + {t} tokens > n_ctx {}", cache.n_past, cache.n_ctx));
        }
        let mut x = self.embed(tokens)?;
        trace("inp_scaled", None, &x);
        for (il, layer) in self.layers.iter().enumerate() {
            self.block(il, layer, &mut x, cache);
        }
        cache.n_past += t;
        rms_norm_inplace(&mut x, self.cfg.n_embd, self.cfg.eps, Some(&self.output_norm));
        trace("result_norm", None, &x);
        Ok(x)
    }

    fn block(&self, il: usize, l: &Layer, x: &mut [f32], cache: &mut KvCache) {
        let c = &self.cfg;
        let (e, hd, vd) = (c.n_embd, c.head_dim, c.v_dim);
        let t = x.len() / e;
        let (qd, kd, vvd) = (c.n_head * hd, c.n_head_kv * hd, c.n_head_kv * vd);
        let mut cur = x.to_vec();
        rms_norm_inplace(&mut cur, e, c.eps, Some(&l.attn_norm));
        trace("attn_norm", Some(il), &cur);
        let mut q = vec![0f32; t * qd];
        let mut k = vec![0f32; t * kd];
        let mut v = vec![0f32; t * vvd];
        self.project(il, Target::Q, &cur, &mut q);
        self.project(il, Target::K, &cur, &mut k);
        self.project(il, Target::V, &cur, &mut v);
        trace("Qcur", Some(il), &q);
        trace("Kcur", Some(il), &k);
        trace("Vcur", Some(il), &v);
        for (buf, b) in [(&mut q, &l.bq), (&mut k, &l.bk), (&mut v, &l.bv)] {
            if let Some(b) = b {
                buf.chunks_exact_mut(b.len()).for_each(|r| r.iter_mut().zip(b).for_each(|(a, &bb)| *a += bb));
            }
        }
        if let Some(w) = &l.q_norm {
            rms_norm_inplace(&mut q, hd, c.eps, Some(w));
        }
        if let Some(w) = &l.k_norm {
            rms_norm_inplace(&mut k, hd, c.eps, Some(w));
        }
        trace("Qcur_normed", Some(il), &q);
        trace("Kcur_normed", Some(il), &k);
        let swa = c.is_swa(il);
        let rope = self.rope_for(il);
        let n_past = cache.n_past;
        let ggml = self.numerics == Numerics::Ggml;
        // Token rows are independent: rotated in parallel.
        q.par_chunks_mut(qd).zip(k.par_chunks_mut(kd)).enumerate().with_min_len(8).for_each(|(tt, (qr, kr))| {
            if ggml {
                rope.apply_ggml(qr, c.n_head, hd, n_past + tt);
                rope.apply_ggml(kr, c.n_head_kv, hd, n_past + tt);
            } else {
                rope.apply(qr, c.n_head, hd, n_past + tt);
                rope.apply(kr, c.n_head_kv, hd, n_past + tt);
            }
        });
        trace("Qrope", Some(il), &q);
        trace("Krope", Some(il), &k);
        // llama.cpp scales q itself only for gemma3; other architectures scale the scores.
        let q_first = !ggml || c.arch == Arch::Gemma3;
        if q_first {
            q.iter_mut().for_each(|a| *a *= c.attn_scale);
        }
        if ggml {
            for buf in [&mut q, &mut k, &mut v] {
                buf.par_chunks_mut(1 << 13).for_each(crate::ops::f16::round_f16_inplace);
            }
        }
        cache.k[il][n_past * kd..(n_past + t) * kd].copy_from_slice(&k);
        cache.v[il][n_past * vvd..(n_past + t) * vvd].copy_from_slice(&v);
        let shape = AttnShape {
            n_head: c.n_head,
            n_head_kv: c.n_head_kv,
            head_dim: hd,
            v_dim: vd,
            window: if swa { c.swa.map(|(w, _)| w) } else { None },
            softcap: c.attn_softcap,
        };
        let mut attn = vec![0f32; t * c.n_head * vd];
        if ggml {
            let score_scale = if q_first { 1.0 } else { c.attn_scale };
            causal_attention_ggml(shape, score_scale, &q, &cache.k[il], &cache.v[il], n_past, &mut attn);
        } else {
            causal_attention(shape, &q, &cache.k[il], &cache.v[il], n_past, &mut attn);
        }
        trace("kqv_out", Some(il), &attn);
        let mut o = vec![0f32; t * e];
        self.project(il, Target::O, &attn, &mut o);
        trace("attn_out", Some(il), &o);
        if let Some(w) = &l.post_attn_norm {
            rms_norm_inplace(&mut o, e, c.eps, Some(w));
        }
        trace("attn_post_norm", Some(il), &o);
        x.iter_mut().zip(&o).for_each(|(a, &b)| *a += b);
        trace("sa_out", Some(il), x);

        cur.copy_from_slice(x);
        rms_norm_inplace(&mut cur, e, c.eps, Some(&l.ffn_norm));
        trace("ffn_norm", Some(il), &cur);
        let mut gate = vec![0f32; t * c.n_ff];
        let mut up = vec![0f32; t * c.n_ff];
        self.project(il, Target::Gate, &cur, &mut gate);
        self.project(il, Target::Up, &cur, &mut up);
        trace("ffn_gate", Some(il), &gate);
        trace("ffn_up", Some(il), &up);
        if ggml {
            glu_inplace_ggml(c.act, &mut gate, &up);
        } else {
            glu_inplace(c.act, &mut gate, &up);
        }
        trace("ffn_geglu", Some(il), &gate);
        self.project(il, Target::Down, &gate, &mut o);
        trace("ffn_out", Some(il), &o);
        if let Some(w) = &l.post_ffw_norm {
            rms_norm_inplace(&mut o, e, c.eps, Some(w));
        }
        x.iter_mut().zip(&o).for_each(|(a, &b)| *a += b);
        trace("l_out", Some(il), x);
    }

    /// Logits `[rows, n_vocab]` for normed hidden rows (soft-capped when the model says so).
    pub fn logits(&self, hidden: &[f32]) -> Vec<f32> {
        let rows = hidden.len() / self.cfg.n_embd;
        let mut out = vec![0f32; rows * self.cfg.n_vocab];
        self.mat(&self.output, hidden, &mut out);
        if let Some(cap) = self.cfg.final_softcap {
            out.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
        }
        out
    }
}
