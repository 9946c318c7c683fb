//! Hugging Face model directories: `config.json`, `model.safetensors` or shards with
//! `model.safetensors.index.json` (memory-mapped, zero copy), the tokenizer files beside them.
//!
//! [`HfModel`] is the opened directory; [`HfSource`] serves its tensors under GGUF names
//! ([`hf_name`]: `blk.3.attn_q.weight` → `model.layers.3.self_attn.q_proj.weight`) so that
//! [`crate::model::Model::from_source`] builds the same model as from the converted GGUF:
//! llama q/k rows are permuted to GGUF order ([`permute`]), gemma3 norm weights get the `+1`
//! that `convert_hf_to_gguf.py` adds, a missing `lm_head.weight` is the tied embedding.
//! Matrices open through [`quant::open_matrix`] (dense today; the quantized formats plug in
//! there); norms, biases and embeddings stay dense.

pub mod config;
pub mod dense;
pub mod permute;
pub mod quant;

use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::model::{Arch, Config, ModelError};
use crate::safetensors::{ShardedSafetensors, TensorView};
use crate::weights::{Weight, WeightSource};
pub use dense::DenseMatrix;
pub use permute::QkPermuted;
pub use quant::QuantConfig;

/// The `config.json` of a model directory.
pub const CONFIG_FILE: &str = "config.json";

/// Whether `path` names a Hugging Face model directory (a directory, or its `config.json`).
pub fn is_hf_path(path: &Path) -> bool {
    path.is_dir() || path.file_name().is_some_and(|n| n == CONFIG_FILE)
}

/// An opened Hugging Face model directory.
#[derive(Debug)]
pub struct HfModel {
    dir: PathBuf,
    config_file: PathBuf,
    json: Json,
    cfg: Config,
    quant: QuantConfig,
    st: ShardedSafetensors,
    /// Llama 3.1 rope scaling as `rope_freqs.weight` (computed from `config.json`).
    rope_factors: Option<Vec<f32>>,
}

impl HfModel {
    /// Open a directory (or its `config.json`): the config is read and mapped, every shard
    /// memory-mapped and validated.
    pub fn open(path: &Path) -> Result<Self> {
        let (dir, config_file) = if path.is_dir() {
            (path.to_path_buf(), path.join(CONFIG_FILE))
        } else {
            (crate::util::outpath::parent_dir(path).to_path_buf(), path.to_path_buf())
        };
        if !config_file.is_file() {
            return Err(Error::format(&dir, "no config.json: not a Hugging Face model directory"));
        }
        let bytes = crate::util::input::read_input(&config_file, 16 << 20).map_err(|e| Error::io(&config_file, e))?;
        let json: Json = serde_json::from_slice(&bytes).map_err(|e| Error::format(&config_file, format!("not valid JSON: {e}")))?;
        let file = config_file.display().to_string();
        let cfg = config::from_json(&json, &file)?;
        let quant = QuantConfig::read(&json, &config_file, &dir)?;
        let st = ShardedSafetensors::open(&dir)?;
        let rope_factors = config::rope_factors(&json, &file, &cfg)?;
        Ok(HfModel { dir, config_file, json, cfg, quant, st, rope_factors })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Its `config.json`.
    pub fn config_file(&self) -> &Path {
        &self.config_file
    }
    /// The parsed `config.json`.
    pub fn json(&self) -> &Json {
        &self.json
    }
    /// The hyper-parameters.
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    /// The quantization method and configuration.
    pub fn quant(&self) -> &QuantConfig {
        &self.quant
    }
    /// The safetensors tensors (every shard).
    pub fn tensors(&self) -> &ShardedSafetensors {
        &self.st
    }
    /// The `_name_or_path` (or the directory name) for adapter metadata.
    pub fn name(&self) -> String {
        ["_name_or_path", "_model_name_or_path"]
            .iter()
            .find_map(|k| self.json.get(*k).and_then(Json::as_str))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
    }
    /// The weight source (tensors by GGUF name).
    pub fn source(&self) -> HfSource<'_> {
        HfSource { m: self }
    }
}

/// The Hugging Face name of a GGUF tensor name, for `arch` (`None`: no counterpart). Matrices
/// map to their module prefix plus `.weight`.
pub fn hf_name(arch: Arch, gguf: &str) -> Option<String> {
    let top = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(t) = top {
        return Some(t.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (il, name) = rest.split_once('.')?;
    il.parse::<usize>().ok()?;
    let (module, kind) = name.rsplit_once('.')?;
    let m = match module {
        "attn_norm" => "input_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        "post_attention_norm" if arch == Arch::Gemma3 => "post_attention_layernorm",
        "ffn_norm" if arch == Arch::Gemma3 => "pre_feedforward_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "post_ffw_norm" => "post_feedforward_layernorm",
        _ => return None,
    };
    Some(format!("model.layers.{il}.{m}.{kind}"))
}

/// Whether the rows of GGUF tensor `gguf` are permuted from HF order (llama q/k).
fn permuted(arch: Arch, gguf: &str) -> bool {
    arch == Arch::Llama && gguf.starts_with("blk.") && (gguf.contains(".attn_q.") || gguf.contains(".attn_k."))
}

/// A model's tensors from an opened [`HfModel`], by GGUF name.
pub struct HfSource<'a> {
    m: &'a HfModel,
}

impl<'a> HfSource<'a> {
    fn err(&self, name: &str, problem: impl Into<String>) -> ModelError {
        let file = self.m.st.source().display().to_string();
        ModelError::Tensor { file, name: name.into(), problem: problem.into() }
    }

    fn hf(&self, gguf: &str) -> Result<String, ModelError> {
        hf_name(self.m.cfg.arch, gguf).ok_or_else(|| self.err(gguf, "has no Hugging Face counterpart"))
    }

    fn view(&self, name: &str) -> Option<TensorView<'a>> {
        self.m.st.get(name)
    }

    /// The file holding tensor `name` (for messages).
    fn file_of(&self, name: &str) -> String {
        self.m.st.get(name).map_or_else(|| self.m.st.source().display().to_string(), |v| v.file.display().to_string())
    }
}

impl<'a> WeightSource<'a> for HfSource<'a> {
    fn path(&self) -> String {
        self.m.dir.display().to_string()
    }
    fn config(&self) -> Result<Config, ModelError> {
        Ok(self.m.cfg.clone())
    }
    fn has(&self, name: &str) -> bool {
        match name {
            "rope_freqs.weight" => self.m.rope_factors.is_some(),
            // Tied: no lm_head.weight (or tie_word_embeddings with one saved anyway — the
            // embedding is what transformers uses then).
            "output.weight" => {
                let tied = self.m.json.get("tie_word_embeddings").and_then(Json::as_bool);
                tied != Some(true) && self.m.st.names().any(|n| n.starts_with("lm_head."))
            }
            _ => hf_name(self.m.cfg.arch, name).is_some_and(|h| {
                let prefix = h.strip_suffix(".weight").unwrap_or(&h);
                self.view(&h).is_some() || self.m.st.names().any(|n| n.strip_prefix(prefix).is_some_and(|r| r.starts_with('.')))
            }),
        }
    }
    fn matrix(&self, name: &str, n_in: usize, n_out: usize) -> Result<Weight<'a>, ModelError> {
        let h = self.hf(name)?;
        let prefix = h.strip_suffix(".weight").unwrap_or(&h);
        let st = &self.m.st;
        let get = |n: &str| st.get(n);
        let w = if name == "token_embd.weight" {
            // Embeddings stay dense whatever the method.
            let v =
                self.view(&h).ok_or_else(|| ModelError::Tensor { file: self.file_of(&h), name: h.clone(), problem: "missing".into() })?;
            std::sync::Arc::new(DenseMatrix::new(&v, n_in, n_out)?) as Weight<'a>
        } else {
            quant::open_matrix(&self.m.quant, &get, prefix, n_in, n_out)?
        };
        if permuted(self.m.cfg.arch, name) {
            return Ok(std::sync::Arc::new(QkPermuted::new(w, self.m.cfg.head_dim)));
        }
        Ok(w)
    }
    fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>, ModelError> {
        if let (Some(f), "rope_freqs.weight") = (&self.m.rope_factors, name) {
            return match f.len() == n {
                true => Ok(f.clone()),
                false => Err(self.err(name, format!("{} rope factors from config.json, expected {n}", f.len()))),
            };
        }
        let h = self.hf(name)?;
        let v = self.view(&h).ok_or_else(|| ModelError::Tensor { file: self.file_of(&h), name: h.clone(), problem: "missing".into() })?;
        let bad = |p: String| ModelError::Tensor { file: v.file.display().to_string(), name: h.clone(), problem: p };
        if v.numel() != n || v.shape.len() != 1 {
            return Err(bad(format!("shape {:?}, expected [{n}] from config.json", v.shape)));
        }
        let mut out = v.to_f32().map_err(|e| bad(e.to_string()))?;
        if permuted(self.m.cfg.arch, name) {
            let hd = self.m.cfg.head_dim;
            let src = out.clone();
            for (r, o) in out.iter_mut().enumerate() {
                *o = src[permute::hf_row(r, hd)];
            }
        }
        // Gemma's RMSNorm multiplies by (1 + w); GGUF stores w + 1 (convert_hf_to_gguf.py).
        if self.m.cfg.arch == Arch::Gemma3 && name.ends_with("norm.weight") {
            out.iter_mut().for_each(|x| *x += 1.0);
        }
        Ok(out)
    }
}
