//! Transformer models: one file per architecture ([`llama`], [`qwen2`], [`qwen3`], [`gemma3`])
//! saying which tensors its blocks have; [`block`] is the one pre-norm block definition that
//! inference (with the KV cache) and training (saving what the backward needs) both run; the
//! forward pass over all blocks is here. Weights come from a [`WeightSource`] and stay in their
//! stored format behind [`QuantWeight`] (GGUF: quantized, in the memory map); only norm vectors
//! and biases (tiny) are decoded at load. Every op runs on a [`Backend`].

pub mod block;
pub mod config;
pub mod gemma3;
pub mod kv_cache;
pub mod llama;
pub mod qwen2;
pub mod qwen3;
pub mod synth;
pub mod synth_awq;
pub mod trace;

pub use config::{Arch, Config, ModelError};
pub use kv_cache::KvCache;

use crate::backend::cpu::{Cpu, CpuGgml};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::gguf::GgufModel;
use crate::lora::{LoraSet, Target};
use crate::ops::rope::Rope;
pub use crate::weights::Weight;
use crate::weights::{GgufSource, QuantWeight, WeightSource};
use block::Mode;
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

/// One transformer block's weights: quantized matrices through [`QuantWeight`], small frozen
/// vectors (norm weights, biases; tiny) as buffers of type `T` (host `Vec<f32>` by default).
pub struct Layer<'a, T = Vec<f32>> {
    /// Pre-attention norm.
    pub attn_norm: T,
    /// Query projection.
    pub wq: Weight<'a>,
    /// Key projection.
    pub wk: Weight<'a>,
    /// Value projection.
    pub wv: Weight<'a>,
    /// Output projection.
    pub wo: Weight<'a>,
    /// Optional biases of q, k, v.
    pub bq: Option<T>,
    /// Key bias.
    pub bk: Option<T>,
    /// Value bias.
    pub bv: Option<T>,
    /// Per-head q/k norms.
    pub q_norm: Option<T>,
    /// Key norm.
    pub k_norm: Option<T>,
    /// Post-attention norm (gemma).
    pub post_attn_norm: Option<T>,
    /// Pre-FFN norm.
    pub ffn_norm: T,
    /// Gate projection.
    pub w_gate: Weight<'a>,
    /// Up projection.
    pub w_up: Weight<'a>,
    /// Down projection.
    pub w_down: Weight<'a>,
    /// Post-FFN norm (gemma).
    pub post_ffw_norm: Option<T>,
}

/// How the forward pass computes: which CPU backend [`Model::forward`] and [`Model::logits`]
/// run on ([`Cpu`] or [`CpuGgml`]). Training always runs on a [`crate::backend::TrainBackend`].
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

/// A loaded model: configuration, frozen weights and the adapters applied at inference. The
/// small frozen vectors and the adapters are buffers of type `T` (host `Vec<f32>` by default).
pub struct Model<'a, T = Vec<f32>> {
    /// Hyper-parameters.
    pub cfg: Config,
    /// Token embeddings, `[n_vocab, n_embd]`.
    pub tok_embd: Weight<'a>,
    /// Blocks.
    pub layers: Vec<Layer<'a, T>>,
    /// Final norm.
    pub output_norm: T,
    /// Output projection (`token_embd` when tied).
    pub output: Weight<'a>,
    rope: Rope,
    rope_swa: Rope,
    /// LoRA adapters applied on top of the weights, each with its user scale (llama.cpp's
    /// `--lora A.gguf:scale`; the pair multiplier is `scale · alpha / r`).
    pub adapters: Vec<(LoraSet<T>, f32)>,
    /// The CPU numerics of [`Model::forward`] / [`Model::logits`]: [`Numerics::F32`] after
    /// [`Model::load`]; the inference commands switch to [`Numerics::Ggml`].
    pub numerics: Numerics,
}

impl<'a> Model<'a> {
    /// Build a model over an opened GGUF file (weights are borrowed, not copied).
    pub fn load(m: &'a GgufModel) -> std::result::Result<Self, ModelError> {
        Self::from_source(&GgufSource::new(m))
    }

    /// Build a model from any weight source (host buffers).
    pub fn from_source(src: &dyn WeightSource<'a>) -> std::result::Result<Self, ModelError> {
        let cfg = src.config()?;
        let spec = match cfg.arch {
            Arch::Llama => llama::BLOCK,
            Arch::Qwen2 => qwen2::BLOCK,
            Arch::Qwen3 => qwen3::BLOCK,
            Arch::Gemma3 => gemma3::BLOCK,
        };
        let (e, hd, vd) = (cfg.n_embd, cfg.head_dim, cfg.v_dim);
        let (qd, kd, vvd) = (cfg.n_head * hd, cfg.n_head_kv * hd, cfg.n_head_kv * vd);
        let matrix = |name: &str, n_in, n_out| src.matrix(name, n_in, n_out);
        let opt = |name: &str, n: usize, required: bool| -> std::result::Result<Option<Vec<f32>>, ModelError> {
            if !src.has(name) && !required {
                return Ok(None);
            }
            src.vector(name, n).map(Some)
        };
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}");
            layers.push(Layer {
                attn_norm: src.vector(&n("attn_norm.weight"), e)?,
                wq: matrix(&n("attn_q.weight"), e, qd)?,
                wk: matrix(&n("attn_k.weight"), e, kd)?,
                wv: matrix(&n("attn_v.weight"), e, vvd)?,
                wo: matrix(&n("attn_output.weight"), cfg.n_head * vd, e)?,
                bq: opt(&n("attn_q.bias"), qd, spec.qkv_bias)?,
                bk: opt(&n("attn_k.bias"), kd, spec.qkv_bias)?,
                bv: opt(&n("attn_v.bias"), vvd, spec.qkv_bias)?,
                q_norm: opt(&n("attn_q_norm.weight"), hd, spec.qk_norm)?,
                k_norm: opt(&n("attn_k_norm.weight"), hd, spec.qk_norm)?,
                post_attn_norm: opt(&n("post_attention_norm.weight"), e, spec.post_norms)?,
                ffn_norm: src.vector(&n("ffn_norm.weight"), e)?,
                w_gate: matrix(&n("ffn_gate.weight"), e, cfg.n_ff)?,
                w_up: matrix(&n("ffn_up.weight"), e, cfg.n_ff)?,
                w_down: matrix(&n("ffn_down.weight"), cfg.n_ff, e)?,
                post_ffw_norm: opt(&n("post_ffw_norm.weight"), e, spec.post_norms)?,
            });
        }
        let tok_embd = matrix("token_embd.weight", e, cfg.n_vocab)?;
        let output = if src.has("output.weight") { matrix("output.weight", e, cfg.n_vocab)? } else { tok_embd.clone() };
        let factors = if src.has("rope_freqs.weight") { Some(src.vector("rope_freqs.weight", cfg.n_rot / 2)?) } else { None };
        let rope = Rope::new(cfg.rope_style, cfg.n_rot, cfg.rope_base, cfg.rope_freq_scale, factors.as_deref());
        let rope_swa = Rope::new(cfg.rope_style, cfg.n_rot, cfg.rope_base_swa, 1.0, None);
        Ok(Model {
            output_norm: src.vector("output_norm.weight", e)?,
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

    /// A KV cache for up to `n_ctx` positions (host buffers).
    pub fn new_cache(&self, n_ctx: usize) -> KvCache {
        self.new_cache_on(&Cpu::default(), n_ctx)
    }

    /// Run `tokens` (at positions `cache.n_past..`) through every block on the CPU backend of
    /// [`Model::numerics`]; returns the final normed hidden states `[T, n_embd]` and advances
    /// the cache.
    ///
    /// The whole forward runs on a worker of rayon's pool ([`in_pool`]), so its many small
    /// parallel regions fork from a worker instead of each one waking the pool from outside.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>> {
        in_pool(|| match self.numerics {
            Numerics::F32 => self.forward_on(&Cpu::default(), tokens, cache),
            Numerics::Ggml => self.forward_on(&CpuGgml::default(), tokens, cache),
        })
    }

    /// Logits `[rows, n_vocab]` for normed hidden rows (soft-capped when the model says so), on
    /// the CPU backend of [`Model::numerics`].
    pub fn logits(&self, hidden: &[f32]) -> Vec<f32> {
        let h = hidden.to_vec();
        in_pool(|| match self.numerics {
            Numerics::F32 => self.logits_on(&Cpu::default(), &h),
            Numerics::Ggml => self.logits_on(&CpuGgml::default(), &h),
        })
    }
}

/// Run `f` on a worker thread of rayon's global pool (inline when already on one). A parallel
/// call made from outside the pool queues a job and blocks the caller on a lock until a worker
/// has run it (perf on tg128: ≈ 10 % of the time in that handoff); made from a worker it forks
/// on that worker's own deque. Results are the same bits either way.
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

impl<'a, T> Model<'a, T> {
    /// The frozen weight of `target` in layer `il`.
    pub fn weight(&self, il: usize, target: Target) -> &dyn QuantWeight {
        let l = &self.layers[il];
        &**match target {
            Target::Q => &l.wq,
            Target::K => &l.wk,
            Target::V => &l.wv,
            Target::O => &l.wo,
            Target::Gate => &l.w_gate,
            Target::Up => &l.w_up,
            Target::Down => &l.w_down,
        }
    }

    /// The same model with every small buffer (norm weights, biases, applied adapters) mapped
    /// by `f` — e.g. uploaded to a device backend with [`Backend::upload`]; the frozen weights
    /// are shared, not copied.
    pub fn map_buffers<U>(&self, mut f: impl FnMut(&T) -> U) -> Model<'a, U> {
        let layers = self
            .layers
            .iter()
            .map(|l| Layer {
                attn_norm: f(&l.attn_norm),
                wq: l.wq.clone(),
                wk: l.wk.clone(),
                wv: l.wv.clone(),
                wo: l.wo.clone(),
                bq: l.bq.as_ref().map(&mut f),
                bk: l.bk.as_ref().map(&mut f),
                bv: l.bv.as_ref().map(&mut f),
                q_norm: l.q_norm.as_ref().map(&mut f),
                k_norm: l.k_norm.as_ref().map(&mut f),
                post_attn_norm: l.post_attn_norm.as_ref().map(&mut f),
                ffn_norm: f(&l.ffn_norm),
                w_gate: l.w_gate.clone(),
                w_up: l.w_up.clone(),
                w_down: l.w_down.clone(),
                post_ffw_norm: l.post_ffw_norm.as_ref().map(&mut f),
            })
            .collect();
        let adapters = self.adapters.iter().map(|(set, s)| (set.map(&mut f), *s)).collect();
        Model {
            cfg: self.cfg.clone(),
            tok_embd: self.tok_embd.clone(),
            layers,
            output_norm: f(&self.output_norm),
            output: self.output.clone(),
            rope: self.rope.clone(),
            rope_swa: self.rope_swa.clone(),
            adapters,
            numerics: self.numerics,
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

    /// A KV cache for up to `n_ctx` positions on backend `b`.
    pub fn new_cache_on<B: Backend<Buf = T>>(&self, b: &B, n_ctx: usize) -> KvCache<T> {
        let c = &self.cfg;
        let (kw, vw) = (c.n_head_kv * c.head_dim, c.n_head_kv * c.v_dim);
        KvCache {
            n_ctx,
            n_past: 0,
            k: (0..c.n_layer).map(|_| b.zeros(n_ctx * kw)).collect(),
            v: (0..c.n_layer).map(|_| b.zeros(n_ctx * vw)).collect(),
        }
    }

    /// Embeddings of `tokens` (`[T, n_embd]`), scaled for gemma.
    pub fn embed_on<B: Backend<Buf = T>>(&self, b: &B, tokens: &[u32]) -> Result<T> {
        if let Some(&id) = tokens.iter().find(|&&id| id as usize >= self.cfg.n_vocab) {
            return Err(Error::Usage(format!("token id {id} is outside the vocabulary (size {})", self.cfg.n_vocab)));
        }
        let mut x = b.zeros(tokens.len() * self.cfg.n_embd);
        b.embed(&*self.tok_embd, tokens, self.cfg.embed_scale, &mut x);
        Ok(x)
    }

    /// [`Model::forward`] on backend `b`.
    pub fn forward_on<B: Backend<Buf = T>>(&self, b: &B, tokens: &[u32], cache: &mut KvCache<T>) -> Result<T> {
        let t = tokens.len();
        if cache.n_past + t > cache.n_ctx {
            return Err(Error::Usage(format!("context full: {} + {t} tokens > n_ctx {}", cache.n_past, cache.n_ctx)));
        }
        let mut x = self.embed_on(b, tokens)?;
        trace(b, "inp_scaled", None, &x);
        let positions: Vec<u32> = (cache.n_past..cache.n_past + t).map(|p| p as u32).collect();
        for il in 0..self.cfg.n_layer {
            x = self.block_forward(b, il, &x, &positions, Mode::Infer { cache: &mut *cache }).0;
        }
        cache.n_past += t;
        let mut out = b.zeros(b.len(&x));
        b.rms_norm(&x, &mut out, self.cfg.n_embd, self.cfg.eps, Some(&self.output_norm));
        trace(b, "result_norm", None, &out);
        Ok(out)
    }

    /// [`Model::logits`] on backend `b`.
    pub fn logits_on<B: Backend<Buf = T>>(&self, b: &B, hidden: &T) -> Vec<f32> {
        let rows = b.len(hidden) / self.cfg.n_embd;
        let mut out = b.zeros(rows * self.cfg.n_vocab);
        b.matmul(&*self.output, hidden, &mut out);
        if let Some(cap) = self.cfg.final_softcap {
            b.softcap(&mut out, cap);
        }
        b.download(&out)
    }
}
