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
