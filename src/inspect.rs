//! `finetune inspect`: a summary of a GGUF model (architecture, size, types, hyper-parameters,
//! tokenizer), as text or JSON, and single-tensor export to `.npy`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value as Json};

use crate::error::{Error, Result};
use crate::gguf::{GgufModel, Value};
use crate::quant::{self, types::file_type_name, GgmlType};

/// Per-type tensor statistics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TypeStats {
    /// Number of tensors of the type.
    pub tensors: usize,
    /// Elements in those tensors.
    pub elements: u64,
    /// Bytes of those tensors.
    pub bytes: u64,
}

/// Tokenizer facts read from `tokenizer.*` metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenizerSummary {
    /// `tokenizer.ggml.model` (gpt2, llama, …).
    pub model: Option<String>,
    /// `tokenizer.ggml.pre`.
    pub pre: Option<String>,
    /// Number of tokens.
    pub vocab_size: usize,
    /// Number of BPE merges.
    pub merges: usize,
    /// Special token ids that are set (bos, eos, eot, unknown, padding, …).
    pub special: BTreeMap<String, u64>,
    /// add_bos / add_eos flags when present.
    pub flags: BTreeMap<String, bool>,
    /// Length in bytes of `tokenizer.chat_template`, when present.
    pub chat_template_len: Option<usize>,
}

/// Everything `inspect` reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// Path given.
    pub path: String,
    /// Number of split shards (1 for a plain file).
    pub shards: usize,
    /// GGUF version of the first shard.
    pub version: u32,
    /// Data alignment.
    pub alignment: u64,
    /// Number of metadata keys (first shard).
    pub n_kv: usize,
    /// `general.architecture`.
    pub architecture: Option<String>,
    /// `general.name`.
    pub name: Option<String>,
    /// `general.type` (model, adapter, …).
    pub kind: Option<String>,
    /// `general.file_type` raw value and its llama.cpp name.
    pub file_type: Option<(u64, Option<&'static str>)>,
    /// Total tensor elements.
    pub parameters: u64,
    /// Total tensor bytes.
    pub tensor_bytes: u64,
    /// Number of tensors.
    pub n_tensors: usize,
    /// Statistics per tensor type.
    pub types: BTreeMap<GgmlType, TypeStats>,
    /// `{arch}.*` keys with their values.
    pub hparams: Vec<(String, Value)>,
    /// Tokenizer facts.
    pub tokenizer: TokenizerSummary,
    /// Types present in the file that this engine cannot decode.
    pub unsupported_types: Vec<GgmlType>,
}

const SPECIAL_IDS: &[&str] =
    &["bos", "eos", "eot", "eom", "unknown", "padding", "seperator", "cls", "mask", "fim_pre", "fim_suf", "fim_mid"];

/// Build the summary of an opened model.
pub fn summarize(path: &Path, m: &GgufModel) -> Summary {
    let main = m.main();
    let mut s = Summary {
        path: path.display().to_string(),
        shards: m.shards.len(),
        version: main.version,
        alignment: main.alignment,
        n_kv: main.metadata.len(),
        architecture: main.get_str("general.architecture").map(str::to_string),
        name: main.get_str("general.name").map(str::to_string),
        kind: main.get_str("general.type").map(str::to_string),
        file_type: main.get_u64("general.file_type").map(|v| (v, file_type_name(v))),
        ..Default::default()
    };
    for t in m.tensor_infos() {
        let e = s.types.entry(t.ty).or_default();
        e.tensors += 1;
        e.elements += t.n_elements();
        e.bytes += t.n_bytes();
        s.parameters += t.n_elements();
        s.tensor_bytes += t.n_bytes();
        s.n_tensors += 1;
    }
    s.unsupported_types = s.types.keys().copied().filter(|t| !t.can_decode()).collect();
    if let Some(arch) = &s.architecture {
        let prefix = format!("{arch}.");
        s.hparams = main.metadata.iter().filter(|(k, _)| k.starts_with(&prefix)).cloned().collect();
    }
    let tk = &mut s.tokenizer;
    tk.model = main.get_str("tokenizer.ggml.model").map(str::to_string);
    tk.pre = main.get_str("tokenizer.ggml.pre").map(str::to_string);
    tk.vocab_size = main.get("tokenizer.ggml.tokens").and_then(Value::as_array).map_or(0, <[Value]>::len);
    tk.merges = main.get("tokenizer.ggml.merges").and_then(Value::as_array).map_or(0, <[Value]>::len);
    for name in SPECIAL_IDS {
        if let Some(id) = main.get_u64(&format!("tokenizer.ggml.{name}_token_id")) {
            tk.special.insert(name.to_string(), id);
        }
    }
    for flag in ["add_bos_token", "add_eos_token", "add_space_prefix"] {
        if let Some(b) = main.get(&format!("tokenizer.ggml.{flag}")).and_then(Value::as_bool) {
            tk.flags.insert(flag.to_string(), b);
        }
    }
    tk.chat_template_len = main.get_str("tokenizer.chat_template").map(str::len);
    s
}

fn human_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2} B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2} M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.2} K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.2} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.2} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

impl Summary {
    /// Human-readable report.
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let na = "(not set)";
        o += &format!("file:          {} ({} shard{})\n", self.path, self.shards, if self.shards == 1 { "" } else { "s" });
        o += &format!("gguf:          version {}, alignment {}, {} metadata keys\n", self.version, self.alignment, self.n_kv);
        o += &format!("architecture:  {}\n", self.architecture.as_deref().unwrap_or(na));
        o += &format!("name:          {}\n", self.name.as_deref().unwrap_or(na));
        if let Some(k) = &self.kind {
            o += &format!("type:          {k}\n");
        }
        o += &match self.file_type {
            Some((v, Some(n))) => format!("file type:     {n} ({v})\n"),
            Some((v, None)) => format!("file type:     unknown ({v})\n"),
            None => format!("file type:     {na}\n"),
        };
        o += &format!(
            "parameters:    {} ({}), {} tensors, {}\n",
            human_count(self.parameters),
            self.parameters,
            self.n_tensors,
            human_bytes(self.tensor_bytes)
        );
        o += "tensor types:\n";
        for (t, st) in &self.types {
            let bpw = if st.elements > 0 { st.bytes as f64 * 8.0 / st.elements as f64 } else { 0.0 };
            o += &format!(
                "  {:<8} {:>5} tensors {:>14} elements {:>12}  {:5.2} bits/weight{}\n",
                t.name(),
                st.tensors,
                st.elements,
                human_bytes(st.bytes),
                bpw,
                if t.can_decode() { "" } else { "  (UNSUPPORTED)" }
            );
        }
        if !self.hparams.is_empty() {
            o += "hyper-parameters:\n";
            for (k, v) in &self.hparams {
                o += &format!("  {k} = {v}\n");
            }
        }
        let tk = &self.tokenizer;
        o += "tokenizer:\n";
        o += &format!("  model = {}, pre = {}\n", tk.model.as_deref().unwrap_or(na), tk.pre.as_deref().unwrap_or(na));
        o += &format!("  vocab = {}, merges = {}\n", tk.vocab_size, tk.merges);
        if !tk.special.is_empty() {
            let ids: Vec<String> = tk.special.iter().map(|(k, v)| format!("{k}={v}")).collect();
            o += &format!("  special ids: {}\n", ids.join(", "));
        }
        if !tk.flags.is_empty() {
            let fl: Vec<String> = tk.flags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            o += &format!("  flags: {}\n", fl.join(", "));
        }
        o += &match tk.chat_template_len {
            Some(n) => format!("  chat template: present ({n} bytes)\n"),
            None => "  chat template: absent\n".to_string(),
        };
        if self.unsupported_types.is_empty() {
            o += "all tensor types are supported\n";
        } else {
            let names: Vec<&str> = self.unsupported_types.iter().map(|t| t.name()).collect();
            o += &format!("UNSUPPORTED tensor types (cannot be decoded): {}\n", names.join(", "));
        }
        o
    }

    /// Machine-readable report.
    pub fn to_json(&self) -> Json {
        let types: serde_json::Map<String, Json> = self
            .types
            .iter()
            .map(|(t, s)| {
                (t.name().to_string(), json!({"tensors": s.tensors, "elements": s.elements, "bytes": s.bytes, "supported": t.can_decode()}))
            })
            .collect();
        let hparams: serde_json::Map<String, Json> = self.hparams.iter().map(|(k, v)| (k.clone(), v.to_json(64))).collect();
        let tk = &self.tokenizer;
        json!({
            "path": self.path,
            "shards": self.shards,
            "gguf_version": self.version,
            "alignment": self.alignment,
            "n_kv": self.n_kv,
            "architecture": self.architecture,
            "name": self.name,
            "type": self.kind,
            "file_type": self.file_type.map(|(v, n)| json!({"id": v, "name": n})),
            "parameters": self.parameters,
            "tensor_bytes": self.tensor_bytes,
            "n_tensors": self.n_tensors,
            "tensor_types": types,
            "hparams": hparams,
            "tokenizer": {
                "model": tk.model, "pre": tk.pre, "vocab_size": tk.vocab_size, "merges": tk.merges,
                "special_ids": tk.special, "flags": tk.flags,
                "chat_template": tk.chat_template_len.is_some(),
                "chat_template_bytes": tk.chat_template_len,
            },
            "unsupported_types": self.unsupported_types.iter().map(|t| t.name()).collect::<Vec<_>>(),
        })
    }
}

/// Write tensor `name` of `m`, dequantized to f32, as a `.npy` of shape `[ne1, ne0]`
/// (PyTorch order; all dimensions reversed for 3-D/4-D tensors).
pub fn export_tensor_npy(m: &GgufModel, name: &str, out: &Path) -> Result<()> {
    let view = m.require(name)?;
    let info = view.info;
    if !info.ty.can_decode() {
        return Err(Error::usage(format!("tensor '{name}' has type {}, which this engine cannot decode", info.ty)));
    }
    let (bs, ts) = (info.ty.block_size(), info.ty.type_size());
    let n = info.n_elements() as usize;
    // Chunks of whole blocks, ~4 M values each: streaming, never the whole tensor at once.
    let chunk = ((1usize << 22) / bs).max(1) * bs;
    crate::npy::write_f32_streamed(out, &info.torch_shape(), chunk.min(n.max(1)), |start, buf| {
        let b0 = start / bs * ts;
        let b1 = b0 + buf.len() / bs * ts;
        Ok(quant::decode_par(info.ty, &view.data[b0..b1], buf)?)
    })
}

/// The summary of a Hugging Face model directory as JSON: configuration as this engine reads
/// it, quantization method, the formats the loaded matrices have, tensor dtypes and sizes,
/// shards, tokenizer files.
pub fn summarize_hf(m: &crate::weights::hf::HfModel) -> Result<Json> {
    let c = m.config();
    let st = m.tensors();
    let mut dtypes: BTreeMap<String, TypeStats> = BTreeMap::new();
    let (mut params, mut bytes) = (0u64, 0u64);
    for name in st.names() {
        let v = st.tensor(name)?;
        let e = dtypes.entry(v.dtype.name().to_string()).or_default();
        e.tensors += 1;
        e.elements += v.numel() as u64;
        e.bytes += v.data.len() as u64;
        params += v.numel() as u64;
        bytes += v.data.len() as u64;
    }
    let model = crate::model::Model::from_source(&m.source())?;
    let mut formats: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    let mut count = |w: &crate::weights::Weight| {
        let e = formats.entry(w.format().to_string()).or_default();
        e.0 += 1;
        e.1 += w.byte_size() as u64;
    };
    for l in &model.layers {
        for w in [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down] {
            count(w);
        }
    }
    count(&model.tok_embd);
    let tied = std::sync::Arc::ptr_eq(&model.output, &model.tok_embd);
    if !tied {
        count(&model.output);
    }
    let files = ["tokenizer.json", "tokenizer_config.json", "generation_config.json", "chat_template.jinja"];
    Ok(json!({
        "path": m.dir().display().to_string(),
        "format": "huggingface",
        "model_type": m.json().get("model_type"),
        "architectures": m.json().get("architectures"),
        "architecture": c.arch.name(),
        "name": m.name(),
        "quantization": m.quant().describe(),
        "config": {
            "n_embd": c.n_embd, "n_layer": c.n_layer, "n_head": c.n_head, "n_head_kv": c.n_head_kv,
            "head_dim": c.head_dim, "n_ff": c.n_ff, "n_vocab": c.n_vocab, "n_ctx_train": c.n_ctx_train,
            "rms_norm_eps": c.eps, "rope_theta": c.rope_base, "rope_freq_scale": c.rope_freq_scale,
            "tied_embeddings": tied,
        },
        "shards": st.shards().iter().map(|s| s.path().file_name().map(|n| n.to_string_lossy().into_owned())).collect::<Vec<_>>(),
        "n_tensors": st.len(),
        "parameters": params,
        "tensor_bytes": bytes,
        "dtypes": dtypes.iter().map(|(k, s)| (k.clone(), json!({"tensors": s.tensors, "elements": s.elements, "bytes": s.bytes}))).collect::<serde_json::Map<_, _>>(),
        "matrix_formats": formats.iter().map(|(k, (n, b))| (k.clone(), json!({"matrices": n, "bytes": b}))).collect::<serde_json::Map<_, _>>(),
        "tokenizer_files": files.iter().filter(|f| m.dir().join(f).is_file()).collect::<Vec<_>>(),
    }))
}

/// [`summarize_hf`] as text.
pub fn hf_text(j: &Json) -> String {
    let mut out = String::new();
    let s = |k: &str| j[k].as_str().map(str::to_string).unwrap_or_else(|| j[k].to_string());
    out += &format!("path:          {}\nformat:        Hugging Face directory\n", s("path"));
    out += &format!("architecture:  {} (model_type {}, {})\n", s("architecture"), s("model_type"), j["architectures"]);
    out += &format!("name:          {}\nquantization:  {}\n", s("name"), s("quantization"));
    out += &format!(
        "parameters:    {} in {} tensors, {} ({} shard(s))\n",
        human_count(j["parameters"].as_u64().unwrap_or(0)),
        j["n_tensors"],
        human_bytes(j["tensor_bytes"].as_u64().unwrap_or(0)),
        j["shards"].as_array().map_or(0, Vec::len)
    );
    out += "dtypes:\n";
    for (k, v) in j["dtypes"].as_object().into_iter().flatten() {
        out += &format!("  {k:<6} {:>5} tensors  {}\n", v["tensors"], human_bytes(v["bytes"].as_u64().unwrap_or(0)));
    }
    out += "matrices as loaded:\n";
    for (k, v) in j["matrix_formats"].as_object().into_iter().flatten() {
        out += &format!("  {k:<6} {:>5} matrices {}\n", v["matrices"], human_bytes(v["bytes"].as_u64().unwrap_or(0)));
    }
    out += "config:\n";
    for (k, v) in j["config"].as_object().into_iter().flatten() {
        out += &format!("  {k:<16} {v}\n");
    }
    out += &format!("tokenizer:     {}\n", j["tokenizer_files"]);
    out
}
