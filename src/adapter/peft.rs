//! Hugging Face PEFT LoRA adapter directories (`adapter_config.json` +
//! `adapter_model.safetensors`) to and from our LoRA sets.
//!
//! * Tensor names: `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight`
//!   (`k_proj`, `v_proj`, `o_proj`, `mlp.gate_proj`, `mlp.up_proj`, `mlp.down_proj`); `lora_A` is
//!   `[r, in]`, `lora_B` is `[out, r]` (torch `[out, in]` orientation) — the same row-major
//!   layouts as our `A` and `B`.
//! * Scale: PEFT multiplies `B·A` by `lora_alpha / r` (`lora_alpha / √r` with `use_rslora`),
//!   llama.cpp by `alpha / r` with one `alpha` per file (`alpha = 0` means 1). Per-module ranks
//!   and alphas (`rank_pattern`, `alpha_pattern`) are honoured; a module whose PEFT scale the
//!   file's single alpha cannot express gets the ratio folded into its `B`.
//! * `llama` GGUFs store the Q and K rows permuted relative to HF (llama.cpp's converter
//!   interleaves the two rope halves of every head): GGUF row `h·hd + 2i + s` is HF row
//!   `h·hd + s·hd/2 + i`. The `B` of q (`n_head` heads) and k (`n_head_kv` heads) is permuted
//!   both ways; the NEOX-rope architectures (qwen2, qwen3, gemma3) are not permuted.
//! * Our exports record the GGUF adapter's alpha and base identification in the safetensors
//!   `__metadata__` (`finetune.*` keys), so export → import reproduces an adapter byte for byte.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Map, Value as Json};

use super::gguf_lora::{read_adapter, BaseInfo};
use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::lora::{LoraPair, LoraSet, Target};
use crate::model::{Arch, Model};
use crate::quant::GgmlType;
use crate::safetensors::{write_atomic, SafetensorsFile, SafetensorsWriter};

/// The PEFT config file name.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// The PEFT weights file name.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

const META_ALPHA: &str = "finetune.adapter.lora.alpha";
const META_ARCH: &str = "finetune.architecture";
const META_BASE_NAME: &str = "finetune.base_model.name";
const META_BASE_FILE: &str = "finetune.base_model.file";

fn at(file: &Path, problem: impl std::fmt::Display) -> Error {
    Error::format(file, problem)
}

/// The HF module path of `t` inside a decoder layer, e.g. `self_attn.q_proj`.
pub fn hf_module(t: Target) -> &'static str {
    match t {
        Target::Q => "self_attn.q_proj",
        Target::K => "self_attn.k_proj",
        Target::V => "self_attn.v_proj",
        Target::O => "self_attn.o_proj",
        Target::Gate => "mlp.gate_proj",
        Target::Up => "mlp.up_proj",
        Target::Down => "mlp.down_proj",
    }
}

/// The module name PEFT sees in the base model, e.g. `model.layers.3.self_attn.q_proj`.
pub fn module_name(il: usize, t: Target) -> String {
    format!("model.layers.{il}.{}", hf_module(t))
}

/// Whether this model's GGUF stores Q/K rows in llama.cpp's permuted (NORM rope) order.
pub fn permutes_qk(model: &Model) -> bool {
    model.cfg.arch == Arch::Llama
}

/// `perm` with `hf[j] = gguf[perm[j]]` for `n_heads` heads of size `hd`.
pub fn gguf_to_hf_rows(n_heads: usize, hd: usize) -> Vec<usize> {
    let mut perm = vec![0; n_heads * hd];
    for h in 0..n_heads {
        for s in 0..2 {
            for i in 0..hd / 2 {
                perm[h * hd + s * hd / 2 + i] = h * hd + 2 * i + s;
            }
        }
    }
    perm
}

/// The row permutation of `B` for target `t` (None when rows are in the same order).
fn qk_perm(model: &Model, t: Target) -> Option<Vec<usize>> {
    if !permutes_qk(model) {
        return None;
    }
    let c = &model.cfg;
    match t {
        Target::Q => Some(gguf_to_hf_rows(c.n_head, c.head_dim)),
        Target::K => Some(gguf_to_hf_rows(c.n_head_kv, c.head_dim)),
        _ => None,
    }
}

/// Reorder the rows (`width` values each) of `m`: to HF order `out[j] = m[perm[j]]`, or back.
fn permute_rows(m: &[f32], width: usize, perm: &[usize], to_hf: bool) -> Vec<f32> {
    let mut out = vec![0f32; m.len()];
    for (j, &p) in perm.iter().enumerate() {
        let (dst, src) = if to_hf { (j, p) } else { (p, j) };
        out[dst * width..(dst + 1) * width].copy_from_slice(&m[src * width..(src + 1) * width]);
    }
    out
}

/// Element types of the PEFT safetensors (F32, F16 and BF16 are read and written).
pub use crate::safetensors::Dtype as StDtype;

/// The float types a PEFT adapter may store.
const FLOAT_TYPES: &str = "F32, F16, BF16";

/// One tensor of a safetensors file, values widened to f32.
#[derive(Clone, Debug, PartialEq)]
pub struct StTensor {
    /// The tensor's key.
    pub name: String,
    /// Its stored element type.
    pub dtype: StDtype,
    /// Its shape (torch order, row-major).
    pub shape: Vec<usize>,
    /// Its values.
    pub data: Vec<f32>,
}

/// A safetensors file of float tensors: `__metadata__` and tensors in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SafeTensors {
    /// The string-to-string `__metadata__` map.
    pub metadata: BTreeMap<String, String>,
    /// The tensors, in the order of their data.
    pub tensors: Vec<StTensor>,
}

/// Read a safetensors file of F32, F16 and BF16 tensors (validated by
/// [`SafetensorsFile`]), widening every value to f32.
pub fn read_safetensors(path: &Path) -> Result<SafeTensors> {
    let f = SafetensorsFile::open(path)?;
    let mut out = SafeTensors { metadata: f.metadata().clone(), tensors: Vec::with_capacity(f.tensors().len()) };
    for v in f.views() {
        if !v.dtype.is_float() {
            return Err(at(path, format!("tensor '{}': dtype {} is not supported ({FLOAT_TYPES})", v.name, v.dtype)));
        }
        let data = v.to_f32()?;
        if let Some(i) = data.iter().position(|x| !x.is_finite()) {
            return Err(at(
                path,
                format!("tensor '{}' holds a non-finite value ({}) at element {i}", crate::util::text::shown(v.name), data[i]),
            ));
        }
        out.tensors.push(StTensor { name: v.name.to_string(), dtype: v.dtype, shape: v.shape.to_vec(), data });
    }
    Ok(out)
}

/// The bytes of a safetensors file holding `st` (header padded with spaces to 8 bytes, as the
/// reference writer does; data in the given order).
pub fn safetensors_bytes(st: &SafeTensors) -> Result<Vec<u8>> {
    let mut w = SafetensorsWriter::new();
    for (k, v) in &st.metadata {
        w.set_metadata(k, v);
    }
    for t in &st.tensors {
        w.add_f32(&t.name, t.dtype, &t.shape, &t.data)?;
    }
    Ok(w.to_bytes())
}

/// What [`export`] wrote.
#[derive(Clone, Debug)]
pub struct ExportSummary {
    /// Number of adapted modules.
    pub modules: usize,
    /// The config's `r` (the most common rank).
    pub r: usize,
    /// The config's `lora_alpha`.
    pub lora_alpha: f64,
    /// Storage type of the safetensors.
    pub dtype: StDtype,
}

/// A JSON number, integral when the value is.
fn num(x: f64) -> Json {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

/// Write the GGUF adapter `adapter` (for `model`, whose base file is `base`) as a PEFT
/// directory `dir` (created if needed): `adapter_model.safetensors` in HF names and orientation
/// and `adapter_config.json` with `base_model_name_or_path = base_name`.
pub fn export(dir: &Path, adapter: &Path, model: &Model, base_name: &str) -> Result<ExportSummary> {
    let lora = read_adapter(adapter, model)?;
    if !lora.alpha.is_finite() {
        return Err(at(adapter, format!("adapter.lora.alpha is {}", lora.alpha)));
    }
    let gguf = GgufFile::open(adapter)?;
    let types: Vec<GgmlType> = gguf.tensors.iter().map(|t| t.ty).collect();
    let dtype = match types.first() {
        Some(GgmlType::F16) if types.iter().all(|&t| t == GgmlType::F16) => StDtype::F16,
        Some(GgmlType::BF16) if types.iter().all(|&t| t == GgmlType::BF16) => StDtype::BF16,
        _ => StDtype::F32,
    };
    // The config's r is the most common rank; the others go to rank_pattern.
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for (_, p) in lora.layers.iter().flatten() {
        *counts.entry(p.r).or_default() += 1;
    }
    let r = counts.iter().max_by_key(|(r, c)| (**c, std::cmp::Reverse(**r))).map(|(r, _)| *r).unwrap_or(0);
    // llama.cpp's alpha 0 means scale 1, i.e. PEFT's lora_alpha = r per module.
    let lora_alpha = if lora.alpha == 0.0 { r as f64 } else { lora.alpha as f64 };
    let (mut rank_pattern, mut alpha_pattern) = (Map::new(), Map::new());
    let mut st = SafeTensors::default();
    let mut modules = Vec::new();
    for (il, layer) in lora.layers.iter().enumerate() {
        for (t, p) in layer {
            let m = module_name(il, *t);
            if p.r != r {
                rank_pattern.insert(m.clone(), json!(p.r));
                if lora.alpha == 0.0 {
                    alpha_pattern.insert(m.clone(), json!(p.r));
                }
            }
            let b = match qk_perm(model, *t) {
                Some(perm) => permute_rows(&p.b, p.r, &perm, true),
                None => p.b.clone(),
            };
            let key = format!("base_model.model.{m}");
            st.tensors.push(StTensor { name: format!("{key}.lora_A.weight"), dtype, shape: vec![p.r, p.n_in], data: p.a.clone() });
            st.tensors.push(StTensor { name: format!("{key}.lora_B.weight"), dtype, shape: vec![p.n_out, p.r], data: b });
            modules.push((il, *t));
        }
    }
    // Short names when every adapted layer has the same targets, else full module names.
    let mut short: Vec<Target> = modules.iter().map(|(_, t)| *t).collect();
    short.sort();
    short.dedup();
    let uniform = lora.layers.iter().all(|l| l.iter().map(|(t, _)| *t).eq(short.iter().copied()));
    let target_modules: Vec<String> = if uniform {
        short.iter().map(|t| hf_module(*t).rsplit('.').next().unwrap_or("").to_string()).collect()
    } else {
        modules.iter().map(|(il, t)| module_name(*il, *t)).collect()
    };

    st.metadata.insert("format".into(), "pt".into());
    st.metadata.insert(META_ALPHA.into(), format!("{}", lora.alpha));
    st.metadata.insert(META_ARCH.into(), model.cfg.arch.name().into());
    if let Some(n) = gguf.get_str("general.base_model.0.name") {
        st.metadata.insert(META_BASE_NAME.into(), n.into());
    }
    if let Some(f) = gguf.get_str("finetune.base_model.file") {
        st.metadata.insert(META_BASE_FILE.into(), f.into());
    }
    let config = json!({
        "alpha_pattern": alpha_pattern,
        "auto_mapping": null,
        "base_model_name_or_path": base_name,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "layers_pattern": null,
        "layers_to_transform": null,
        "lora_alpha": num(lora_alpha),
        "lora_dropout": 0.0,
        "modules_to_save": null,
        "peft_type": "LORA",
        "r": r,
        "rank_pattern": rank_pattern,
        "revision": null,
        "target_modules": target_modules,
        "task_type": "CAUSAL_LM",
        "use_dora": false,
        "use_rslora": false
    });
    std::fs::create_dir_all(dir).map_err(|e| at(dir, format!("cannot create the directory: {e}")))?;
    let wpath = dir.join(WEIGHTS_FILE);
    write_atomic(&wpath, &safetensors_bytes(&st).map_err(|e| at(&wpath, e))?)?;
    let cpath = dir.join(CONFIG_FILE);
    let mut text = serde_json::to_string_pretty(&config).map_err(|e| at(&cpath, e))?;
    text.push('\n');
    write_atomic(&cpath, text.as_bytes())?;
    Ok(ExportSummary { modules: modules.len(), r, lora_alpha, dtype })
}

/// A PEFT adapter converted for the GGUF writer.
#[derive(Clone, Debug)]
pub struct Imported {
    /// The LoRA pairs in GGUF orientation, with the file's single alpha.
    pub lora: LoraSet,
    /// Base identification for the adapter's metadata.
    pub base: BaseInfo,
    /// Modules whose PEFT scale the single alpha could not express, folded into their `B`.
    pub folded: usize,
}

/// The parts of `adapter_config.json` that decide the weights' meaning.
struct PeftConfig {
    r: usize,
    lora_alpha: f64,
    rslora: bool,
    rank_pattern: Vec<(String, usize)>,
    alpha_pattern: Vec<(String, f64)>,
    /// Literal `target_modules` entries (None: a regex string or absent — not checked).
    targets: Option<Vec<String>>,
    layers: Option<Vec<usize>>,
}

/// PEFT's pattern match (`(.*\.)?KEY$`) for keys without regex syntax other than dots.
fn key_matches(module: &str, key: &str) -> bool {
    module == key || module.strip_suffix(key).is_some_and(|p| p.ends_with('.'))
}

fn pattern_keys<T>(path: &Path, cfg: &Map<String, Json>, field: &str, conv: impl Fn(&Json) -> Option<T>) -> Result<Vec<(String, T)>> {
    let Some(v) = cfg.get(field).filter(|v| !v.is_null()) else { return Ok(Vec::new()) };
    let obj = v.as_object().ok_or_else(|| at(path, format!("{field} is not an object")))?;
    let mut out = Vec::new();
    for (k, v) in obj {
        if !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            return Err(at(path, format!("{field} key '{k}' is a regular expression; only plain module names are supported")));
        }
        let v = conv(v).ok_or_else(|| at(path, format!("{field}['{k}'] = {v} is not a valid value")))?;
        out.push((k.clone(), v));
    }
    Ok(out)
}

fn parse_config(path: &Path) -> Result<PeftConfig> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(at(path, "missing (a PEFT adapter directory has adapter_config.json and adapter_model.safetensors)"))
        }
        Err(e) => return Err(at(path, e)),
    };
    let v: Json = serde_json::from_str(&text).map_err(|e| at(path, format!("not valid JSON: {e}")))?;
    let cfg = v.as_object().ok_or_else(|| at(path, "not a JSON object"))?;
    let is_set = |k: &str| cfg.get(k).is_some_and(|v| !(v.is_null() || v == &json!(false) || v == &json!([]) || v == &json!({})));
    match cfg.get("peft_type").and_then(Json::as_str) {
        Some("LORA") | None => {}
        Some(other) => return Err(at(path, format!("peft_type is {other}; only LORA adapters can be imported"))),
    }
    let unsupported: [(&str, &str); 11] = [
        ("use_dora", "DoRA (use_dora) has no llama.cpp LoRA equivalent"),
        ("lora_bias", "LoRA biases (lora_bias) cannot be stored in a GGUF LoRA adapter"),
        ("fan_in_fan_out", "fan_in_fan_out (Conv1D weights) is not supported"),
        ("modules_to_save", "modules_to_save (fully trained modules) cannot be stored in a GGUF LoRA adapter"),
        ("layer_replication", "layer_replication is not supported"),
        ("trainable_token_indices", "trainable_token_indices (trained embedding rows) is not supported"),
        ("target_parameters", "target_parameters (LoRA on raw parameters) is not supported"),
        ("use_qalora", "QA-LoRA (use_qalora) is not supported"),
        ("alora_invocation_tokens", "activated LoRA (alora_invocation_tokens) is not supported"),
        ("arrow_config", "Arrow routing (arrow_config) is not supported"),
        ("use_bdlora", "block-diagonal LoRA (use_bdlora) is not supported"),
    ];
    for (k, why) in unsupported {
        if is_set(k) {
            return Err(at(path, format!("{why} ({k} = {})", cfg[k])));
        }
    }
    match cfg.get("bias") {
        None | Some(Json::Null) => {}
        Some(b) if b == "none" => {}
        Some(b) => return Err(at(path, format!("bias = {b}: trained biases cannot be stored in a GGUF LoRA adapter (only \"none\")"))),
    }
    let r = cfg.get("r").and_then(Json::as_u64).filter(|&r| r > 0).ok_or_else(|| at(path, "'r' is missing or not a positive integer"))?;
    let lora_alpha = cfg
        .get("lora_alpha")
        .and_then(Json::as_f64)
        .filter(|a| a.is_finite())
        .ok_or_else(|| at(path, "'lora_alpha' is missing or not a finite number"))?;
    let rslora = match cfg.get("use_rslora") {
        None | Some(Json::Null) => false,
        Some(v) => v.as_bool().ok_or_else(|| at(path, "use_rslora is not a boolean"))?,
    };
    let rank_pattern = pattern_keys(path, cfg, "rank_pattern", |v| v.as_u64().filter(|&r| r > 0).map(|r| r as usize))?;
    let alpha_pattern = pattern_keys(path, cfg, "alpha_pattern", Json::as_f64)?;
    let targets = match cfg.get("target_modules") {
        Some(Json::Array(a)) => Some(
            a.iter()
                .map(|t| t.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| at(path, "target_modules has a non-string entry"))?,
        ),
        _ => None,
    };
    let layers = match cfg.get("layers_to_transform") {
        None | Some(Json::Null) => None,
        Some(Json::Number(n)) => Some(vec![n.as_u64().unwrap_or(u64::MAX) as usize]),
        Some(Json::Array(a)) => Some(
            a.iter()
                .map(|n| n.as_u64().map(|n| n as usize))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| at(path, "layers_to_transform has a non-integer entry"))?,
        ),
        Some(v) => return Err(at(path, format!("layers_to_transform = {v} is not a layer index or list"))),
    };
    Ok(PeftConfig { r: r as usize, lora_alpha, rslora, rank_pattern, alpha_pattern, targets, layers })
}

/// Split a PEFT tensor key into (module name, layer, target, is `lora_A`).
fn parse_key(key: &str) -> std::result::Result<(String, usize, Target, bool), String> {
    const HINT: &str = "only lora_A/lora_B of the decoder layers' q/k/v/o/gate/up/down projections can be imported";
    let module_of = |k: &str| -> Option<(String, bool)> {
        for (suffix, is_a) in
            [(".lora_A.weight", true), (".lora_B.weight", false), (".lora_A.default.weight", true), (".lora_B.default.weight", false)]
        {
            if let Some(m) = k.strip_suffix(suffix) {
                return Some((m.to_string(), is_a));
            }
        }
        None
    };
    let Some((module, is_a)) = module_of(key) else {
        let what = if key.contains("lora_embedding") {
            "LoRA on an embedding"
        } else if key.contains("lora_magnitude_vector") {
            "a DoRA magnitude vector"
        } else if key.ends_with(".bias") {
            "a bias"
        } else {
            "not a LoRA weight"
        };
        return Err(format!("{what}; {HINT}"));
    };
    let name = module.strip_prefix("base_model.model.").unwrap_or(&module).to_string();
    let rest = ["model.layers.", "model.language_model.layers.", "language_model.model.layers."]
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .ok_or_else(|| format!("module '{name}' is not a decoder layer projection; {HINT}"))?;
    let (il, proj) = rest.split_once('.').ok_or_else(|| format!("module '{name}': {HINT}"))?;
    let il: usize = il.parse().map_err(|_| format!("module '{name}': bad layer index; {HINT}"))?;
    let t = Target::ALL
        .into_iter()
        .find(|t| hf_module(*t) == proj)
        .ok_or_else(|| format!("module '{name}' ({proj}) is not supported; {HINT}"))?;
    Ok((name, il, t, is_a))
}

/// Read the PEFT directory `dir` for `model`: check every tensor against the config and the
/// model's shapes, move q/k rows to GGUF order (llama), and pick the single alpha (the one
/// recorded by our export, else `lora_alpha`, times `√r` with `use_rslora`). `base` identifies
/// the base model unless the export recorded the original adapter's.
pub fn import(dir: &Path, model: &Model, base: BaseInfo) -> Result<Imported> {
    if !dir.is_dir() {
        return Err(at(dir, "not a directory (expected a PEFT adapter directory)"));
    }
    let cpath = dir.join(CONFIG_FILE);
    let cfg = parse_config(&cpath)?;
    let wpath = dir.join(WEIGHTS_FILE);
    if !wpath.exists() {
        let bin = dir.join("adapter_model.bin");
        let hint = if bin.exists() { " (adapter_model.bin, a pickle, is not read: re-save with safe_serialization=True)" } else { "" };
        return Err(at(&wpath, format!("missing{hint}")));
    }
    let st = read_safetensors(&wpath)?;
    let arch = model.cfg.arch.name();
    if let Some(a) = st.metadata.get(META_ARCH).filter(|a| a.as_str() != arch) {
        return Err(at(&wpath, format!("the adapter was exported from a '{a}' model, the base is '{arch}'")));
    }
    type Half = Option<(String, Vec<usize>, Vec<f32>)>;
    let mut halves: BTreeMap<(usize, Target), (String, [Half; 2])> = BTreeMap::new();
    for t in &st.tensors {
        let bad = |p: String| at(&wpath, format!("tensor '{}': {p}", t.name));
        let (module, il, target, is_a) = parse_key(&t.name).map_err(bad)?;
        if il >= model.cfg.n_layer {
            return Err(bad(format!("layer {il}, but the base model has {} layers", model.cfg.n_layer)));
        }
        if let Some(ts) = &cfg.targets {
            if !ts.iter().any(|k| key_matches(&module, k)) {
                return Err(bad(format!("module '{module}' is not in target_modules {ts:?} (PEFT would not load it)")));
            }
        }
        if let Some(ls) = &cfg.layers {
            if !ls.contains(&il) {
                return Err(bad(format!("layer {il} is not in layers_to_transform {ls:?} (PEFT would not load it)")));
            }
        }
        if t.shape.len() != 2 {
            return Err(bad(format!("shape {:?} is not a matrix", t.shape)));
        }
        let entry = halves.entry((il, target)).or_insert_with(|| (module.clone(), [None, None]));
        let slot = &mut entry.1[usize::from(!is_a)];
        if slot.is_some() {
            return Err(bad("appears twice".into()));
        }
        *slot = Some((t.name.clone(), t.shape.clone(), t.data.clone()));
    }
    if halves.is_empty() {
        return Err(at(&wpath, "the file has no LoRA tensors"));
    }
    let meta_alpha =
        match st.metadata.get(META_ALPHA) {
            Some(s) => Some(s.parse::<f32>().ok().filter(|a| a.is_finite()).ok_or_else(|| {
                at(&wpath, format!("__metadata__ {META_ALPHA} = '{}' is not a finite number", crate::util::text::shown(s)))
            })?),
            None => None,
        };
    let default_alpha = if cfg.rslora { cfg.lora_alpha * (cfg.r as f64).sqrt() } else { cfg.lora_alpha };
    let alpha = meta_alpha.unwrap_or(default_alpha as f32);
    let mut layers: Vec<Vec<(Target, LoraPair)>> = vec![Vec::new(); model.cfg.n_layer];
    let mut folded = 0;
    for ((il, t), (module, [a, b])) in halves {
        let (Some((na, sa, a)), Some((nb, sb, mut b))) = (a, b) else {
            return Err(at(&wpath, format!("module '{module}': lora_A or lora_B is missing")));
        };
        let w = model.weight(il, t);
        let r_m = cfg.rank_pattern.iter().find(|(k, _)| key_matches(&module, k)).map_or(cfg.r, |(_, r)| *r);
        if sa[0] != sb[1] || sa[1] != w.n_in() || sb[0] != w.n_out() || sa[0] != r_m {
            return Err(at(
                &wpath,
                format!(
                    "module '{module}': {na} {sa:?} and {nb} {sb:?} do not fit the base weight {} [out {}, in {}] at rank {r_m} (expected [{r_m}, {}] and [{}, {r_m}])",
                    t.tensor_name(il),
                    w.n_out(),
                    w.n_in(),
                    w.n_in(),
                    w.n_out()
                ),
            ));
        }
        if let Some(perm) = qk_perm(model, t) {
            b = permute_rows(&b, r_m, &perm, false);
        }
        let alpha_m = cfg.alpha_pattern.iter().find(|(k, _)| key_matches(&module, k)).map_or(cfg.lora_alpha, |(_, a)| *a);
        let want = if cfg.rslora { alpha_m / (r_m as f64).sqrt() } else { alpha_m / r_m as f64 };
        let have = if alpha == 0.0 { 1.0 } else { alpha as f64 / r_m as f64 };
        let ratio = want / have;
        if (ratio - 1.0).abs() > 1e-6 {
            b.iter_mut().for_each(|v| *v = (*v as f64 * ratio) as f32);
            folded += 1;
        }
        layers[il].push((t, LoraPair { n_in: w.n_in(), n_out: w.n_out(), r: r_m, a, b }));
    }
    let base = match st.metadata.get(META_BASE_NAME) {
        Some(n) => BaseInfo { architecture: arch.to_string(), name: Some(n.clone()), file_name: st.metadata.get(META_BASE_FILE).cloned() },
        None => base,
    };
    Ok(Imported { lora: LoraSet { alpha, layers }, base, folded })
}
