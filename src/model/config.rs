//! Hyper-parameters of a model, read from GGUF metadata (`{arch}.*` keys, as llama.cpp's
//! `llama_model_loader` reads them). Missing required keys are clear errors.

use crate::gguf::{GgufHeader, Value};
use crate::ops::activation::Act;
use crate::ops::rope::RopeStyle;

/// Architectures this engine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Llama 2/3, Mistral, SmolLM2, CALM3 (NORM rope on GGUF).
    Llama,
    /// Qwen2 / Qwen2.5 (q/k/v biases, NEOX rope).
    Qwen2,
    /// Qwen3 (per-head q/k RMSNorm, NEOX rope).
    Qwen3,
    /// Gemma 3 (embedding scale, pre/post norms, GELU-tanh, sliding-window layers).
    Gemma3,
}

impl Arch {
    /// The `general.architecture` string.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma3 => "gemma3",
        }
    }
}

use crate::util::text::{shown, shown_max};

/// Supported `general.architecture` values.
pub const SUPPORTED: &[&str] = &["llama", "qwen2", "qwen3", "gemma3"];

/// Errors building a model from a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The architecture string is not one this engine runs.
    #[error("{file}: architecture '{}' is not supported (supported: {})", shown(arch), SUPPORTED.join(", "))]
    UnsupportedArch {
        /// File name.
        file: String,
        /// The architecture found.
        arch: String,
    },
    /// A required key is missing or has the wrong type.
    #[error("{file}: metadata key '{}' is {}", shown(key), shown_max(problem, 2000))]
    Key {
        /// File name.
        file: String,
        /// The key.
        key: String,
        /// What is wrong.
        problem: String,
    },
    /// A required tensor is missing or has the wrong shape or type.
    #[error("{file}: tensor '{}': {}", shown(name), shown_max(problem, 2000))]
    Tensor {
        /// File name.
        file: String,
        /// Tensor name.
        name: String,
        /// What is wrong.
        problem: String,
    },
}

/// Everything the forward pass needs to know besides the weights.
#[derive(Clone, Debug)]
pub struct Config {
    /// Architecture.
    pub arch: Arch,
    /// Hidden size.
    pub n_embd: usize,
    /// Number of blocks.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_head_kv: usize,
    /// Key/query head width.
    pub head_dim: usize,
    /// Value head width.
    pub v_dim: usize,
    /// Feed-forward width.
    pub n_ff: usize,
    /// RMSNorm epsilon.
    pub eps: f32,
    /// Vocabulary size (rows of the output projection).
    pub n_vocab: usize,
    /// Training context length.
    pub n_ctx_train: usize,
    /// Rope pair style.
    pub rope_style: RopeStyle,
    /// Rotated dimensions per head.
    pub n_rot: usize,
    /// Rope base of global layers.
    pub rope_base: f32,
    /// Rope frequency scale (1 / linear factor) of global layers.
    pub rope_freq_scale: f32,
    /// Rope base of sliding-window layers.
    pub rope_base_swa: f32,
    /// Feed-forward activation.
    pub act: Act,
    /// Multiply token embeddings by this (gemma: √n_embd).
    pub embed_scale: Option<f32>,
    /// Query scale applied before attention.
    pub attn_scale: f32,
    /// Sliding window size and period P (layer il is local when il % P < P − 1).
    pub swa: Option<(usize, usize)>,
    /// Final logit soft-capping.
    pub final_softcap: Option<f32>,
    /// Attention score soft-capping.
    pub attn_softcap: Option<f32>,
}

impl Config {
    /// Whether layer `il` uses the sliding window.
    pub fn is_swa(&self, il: usize) -> bool {
        self.swa.is_some_and(|(_, p)| p > 0 && il % p < p - 1)
    }

    /// Read the configuration from GGUF metadata.
    pub fn from_gguf(h: &GgufHeader, file: &str) -> Result<Self, ModelError> {
        let arch_s = h.get_str("general.architecture").unwrap_or("(missing)").to_string();
        let arch = match arch_s.as_str() {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            "gemma3" => Arch::Gemma3,
            _ => return Err(ModelError::UnsupportedArch { file: file.into(), arch: arch_s }),
        };
        let key = |k: &str| format!("{arch_s}.{k}");
        let err = |k: &str, p: &str| ModelError::Key { file: file.into(), key: key(k), problem: p.into() };
        let get_u = |k: &str| -> Result<Option<usize>, ModelError> {
            match h.get(&key(k)) {
                None => Ok(None),
                Some(Value::Array(..)) => Err(err(k, "a per-layer array, which is not supported yet")),
                Some(v) => v.as_u64().map(|x| Some(x as usize)).ok_or_else(|| err(k, "not an unsigned integer")),
            }
        };
        let req_u = |k: &str| get_u(k)?.ok_or_else(|| err(k, "missing"));
        let get_f = |k: &str| -> Result<Option<f32>, ModelError> {
            match h.get(&key(k)) {
                None => Ok(None),
                Some(v) => v.as_f32().map(Some).ok_or_else(|| err(k, "not a float")),
            }
        };
        let n_embd = req_u("embedding_length")?;
        let n_layer = req_u("block_count")?;
        let n_head = req_u("attention.head_count")?;
        let n_head_kv = get_u("attention.head_count_kv")?.unwrap_or(n_head);
        let n_ff = req_u("feed_forward_length")?;
        if n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(err("attention.head_count_kv", &format!("{n_head_kv}, which does not divide head_count {n_head}")));
        }
        let head_dim = get_u("attention.key_length")?.unwrap_or(n_embd / n_head);
        let v_dim = get_u("attention.value_length")?.unwrap_or(head_dim);
        let eps = get_f("attention.layer_norm_rms_epsilon")?.ok_or_else(|| err("attention.layer_norm_rms_epsilon", "missing"))?;
        let n_rot = get_u("rope.dimension_count")?.unwrap_or(head_dim);
        let rope_base = get_f("rope.freq_base")?.unwrap_or(10_000.0);
        let scaling = h.get_str(&key("rope.scaling.type")).unwrap_or("none");
        let factor = get_f("rope.scaling.factor")?.or(get_f("rope.scale_linear")?).unwrap_or(1.0);
        let rope_freq_scale = match scaling {
            "none" | "linear" => {
                if factor > 0.0 {
                    1.0 / factor
                } else {
                    1.0
                }
            }
            other => return Err(err("rope.scaling.type", &format!("'{other}', which is not supported yet (none, linear)"))),
        };
        let n_vocab = h
            .get("tokenizer.ggml.tokens")
            .and_then(Value::as_array)
            .map(<[Value]>::len)
            .or(get_u("vocab_size")?)
            .ok_or_else(|| err("vocab_size", "missing (and no tokenizer.ggml.tokens)"))?;
        let mut c = Config {
            arch,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            v_dim,
            n_ff,
            eps,
            n_vocab,
            n_ctx_train: get_u("context_length")?.unwrap_or(4096),
            rope_style: RopeStyle::Norm,
            n_rot,
            rope_base,
            rope_freq_scale,
            rope_base_swa: rope_base,
            act: Act::SwiGlu,
            embed_scale: None,
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            swa: None,
            final_softcap: get_f("final_logit_softcapping")?,
            attn_softcap: get_f("attn_logit_softcapping")?,
        };
        match arch {
            Arch::Llama => {
                if n_rot != head_dim {
                    return Err(err("rope.dimension_count", "different from the head size, which llama does not allow"));
                }
            }
            Arch::Qwen2 | Arch::Qwen3 => c.rope_style = RopeStyle::Neox,
            Arch::Gemma3 => {
                c.rope_style = RopeStyle::Neox;
                c.act = Act::GeGlu;
                c.embed_scale = Some((n_embd as f32).sqrt());
                // llama.cpp: 1/sqrt(n_embd/n_head) for the 27B model, else 1/sqrt(head_dim).
                c.attn_scale = if n_layer == 62 { 1.0 / ((n_embd / n_head) as f32).sqrt() } else { 1.0 / (head_dim as f32).sqrt() };
                c.rope_base_swa = get_f("rope.freq_base_swa")?.unwrap_or(10_000.0);
                let window = get_u("attention.sliding_window")?.unwrap_or(4096);
                let period = match h.get(&key("attention.sliding_window_pattern")) {
                    Some(v) if v.as_u64().is_some() => v.as_u64().unwrap() as usize,
                    _ => 6,
                };
                c.swa = Some((window, period));
            }
        }
        Ok(c)
    }
}
