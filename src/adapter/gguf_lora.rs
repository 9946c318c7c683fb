//! LoRA adapters as GGUF files in llama.cpp's format (what `convert_lora_to_gguf.py` writes
//! and `llama_adapter_lora_init` reads):
//!
//! * metadata `general.architecture` (the base's), `general.type = "adapter"`,
//!   `adapter.type = "lora"`, `adapter.lora.alpha` (f32);
//! * per adapted weight `W` (e.g. `blk.0.attn_q.weight`) two tensors `W.lora_a` with
//!   ne `[n_in, r]` and `W.lora_b` with ne `[r, n_out]`; llama.cpp scales `B·A` by
//!   `user_scale · alpha / r`.

use std::path::{Path, PathBuf};

use crate::gguf::{GgufFile, GgufWriter, Value};
use crate::lora::{LoraPair, LoraSet, Target};
use crate::model::Model;
use crate::quant::{self, GgmlType};

/// An error reading or writing an adapter file.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The container itself is broken.
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    /// The file is a valid GGUF but not a usable LoRA adapter for this model.
    #[error("{file}: {problem}")]
    Invalid {
        /// The adapter file.
        file: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Writing failed.
    #[error("writing {file}: {problem}")]
    Write {
        /// The output file.
        file: PathBuf,
        /// What went wrong.
        problem: String,
    },
}

/// Storage types an adapter's tensors may use.
pub const STORAGE_TYPES: [GgmlType; 4] = [GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0];

/// Identification of the base model, written into the adapter.
#[derive(Clone, Debug, Default)]
pub struct BaseInfo {
    /// `general.architecture` of the base.
    pub architecture: String,
    /// `general.name` of the base, if any.
    pub name: Option<String>,
    /// File name of the base GGUF.
    pub file_name: Option<String>,
}

impl BaseInfo {
    /// Read from the base model's header.
    pub fn from_gguf(f: &GgufFile) -> Self {
        BaseInfo {
            architecture: f.architecture().unwrap_or("").to_string(),
            name: f.get_str("general.name").map(str::to_string),
            file_name: f.path().file_name().map(|n| n.to_string_lossy().into_owned()),
        }
    }
}

fn encode_tensor(ty: GgmlType, data: &[f32], path: &Path, name: &str) -> Result<Vec<u8>, AdapterError> {
    let mut out = vec![0u8; ty.row_bytes(data.len() as u64).unwrap_or(0) as usize];
    quant::encode(ty, data, &mut out).map_err(|e| AdapterError::Write { file: path.into(), problem: format!("{name}: {e}") })?;
    Ok(out)
}

/// Write `lora` as a llama.cpp GGUF LoRA adapter (atomically: temp file + rename). `ty` is the
/// storage type of every tensor (one of [`STORAGE_TYPES`]; Q8_0 needs `n_in` and `r` to be
/// multiples of 32).
pub fn write_adapter(path: &Path, base: &BaseInfo, lora: &LoraSet, ty: GgmlType) -> Result<(), AdapterError> {
    write_adapter_with(path, base, lora, ty, Vec::new())
}

/// [`write_adapter`] with `extra` metadata keys after the standard ones (e.g. a partial run's
/// `training.partial`).
pub fn write_adapter_with(
    path: &Path,
    base: &BaseInfo,
    lora: &LoraSet,
    ty: GgmlType,
    extra: Vec<(String, Value)>,
) -> Result<(), AdapterError> {
    let werr = |p: String| AdapterError::Write { file: path.into(), problem: p };
    if !STORAGE_TYPES.contains(&ty) {
        return Err(werr(format!("adapter storage type {ty} is not one of F32, F16, BF16, Q8_0")));
    }
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String(base.architecture.clone()));
    w.set("general.type", Value::String("adapter".into()));
    w.set("adapter.type", Value::String("lora".into()));
    w.set("adapter.lora.alpha", Value::F32(lora.alpha));
    let base_name = base.name.clone().or_else(|| base.file_name.clone()).unwrap_or_else(|| "base".into());
    w.set("general.name", Value::String(format!("{base_name} LoRA")));
    w.set("general.base_model.count", Value::U32(1));
    w.set("general.base_model.0.name", Value::String(base_name));
    if let Some(f) = &base.file_name {
        w.set("finetune.base_model.file", Value::String(f.clone()));
    }
    for (k, v) in extra {
        w.set(k, v);
    }
    let mut tensors: Vec<(String, Vec<u64>, &[f32])> = Vec::new();
    for (il, layer) in lora.layers.iter().enumerate() {
        for (t, p) in layer {
            let name = t.tensor_name(il);
            tensors.push((format!("{name}.lora_a"), vec![p.n_in as u64, p.r as u64], &p.a));
            tensors.push((format!("{name}.lora_b"), vec![p.r as u64, p.n_out as u64], &p.b));
        }
    }
    for (name, dims, _) in &tensors {
        if dims[0] % ty.block_size() as u64 != 0 {
            return Err(werr(format!("{name}: row length {} is not a multiple of {ty}'s block size", dims[0])));
        }
        w.add_tensor(name, ty, dims).map_err(|e| werr(format!("{name}: {e}")))?;
    }
    let mut sink = w.create(path)?;
    for (name, _, data) in &tensors {
        sink.write_tensor(&encode_tensor(ty, data, path, name)?)?;
    }
    sink.finish()?;
    Ok(())
}

/// Parse `blk.N.<proj>.weight.lora_{a,b}` into (layer, target, is_a).
pub fn parse_name(name: &str) -> Option<(usize, Target, bool)> {
    let (stem, is_a) =
        if let Some(s) = name.strip_suffix(".weight.lora_a") { (s, true) } else { (name.strip_suffix(".weight.lora_b")?, false) };
    let rest = stem.strip_prefix("blk.")?;
    let (il, proj) = rest.split_once('.')?;
    let il: usize = il.parse().ok()?;
    let t = match proj {
        "attn_q" => Target::Q,
        "attn_k" => Target::K,
        "attn_v" => Target::V,
        "attn_output" => Target::O,
        "ffn_gate" => Target::Gate,
        "ffn_up" => Target::Up,
        "ffn_down" => Target::Down,
        _ => return None,
    };
    Some((il, t, is_a))
}

/// The A and B halves of every LoRA pair, keyed by (layer, target): GGUF dims and f32 values.
pub(crate) type Halves = std::collections::BTreeMap<(usize, Target), [Option<(Vec<u64>, Vec<f32>)>; 2]>;

/// Check that `f` says it is a LoRA adapter (`general.type = adapter`, `adapter.type = lora`).
pub(crate) fn check_header(f: &GgufFile, path: &Path) -> Result<(), AdapterError> {
    let bad = |p: String| AdapterError::Invalid { file: path.into(), problem: p };
    match f.get_str("general.type") {
        Some("adapter") => {}
        other => return Err(bad(format!("general.type is {other:?}, expected \"adapter\" (is this a model file?)"))),
    }
    match f.get_str("adapter.type") {
        Some("lora") => {}
        other => return Err(bad(format!("adapter.type is {other:?}, expected \"lora\""))),
    }
    Ok(())
}

/// Decode every tensor of the adapter `f` into [`Halves`]: each must be a known
/// `<weight>.lora_a` / `.lora_b` name (of a layer below `n_layer`, when given), 2-D, of a
/// decodable type, and appear once; an adapter without tensors is an error.
pub(crate) fn read_halves(f: &GgufFile, path: &Path, n_layer: Option<usize>) -> Result<Halves, AdapterError> {
    let bad = |p: String| AdapterError::Invalid { file: path.into(), problem: p };
    let mut halves = Halves::new();
    for info in &f.tensors {
        let (il, t, is_a) =
            parse_name(&info.name).ok_or_else(|| bad(format!("tensor '{}' is not a LoRA tensor this engine knows", info.name)))?;
        if let Some(n) = n_layer.filter(|&n| il >= n) {
            return Err(bad(format!("tensor '{}': the model has only {n} layers", info.name)));
        }
        if !info.ty.can_decode() || info.dims.len() != 2 {
            return Err(bad(format!("tensor '{}': type {} / dims {:?} not supported", info.name, info.ty, info.dims)));
        }
        let mut data = vec![0f32; info.n_elements() as usize];
        quant::decode(info.ty, f.view(info).data, &mut data).map_err(|e| bad(format!("tensor '{}': {e}", info.name)))?;
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!(
                "tensor '{}' holds a non-finite value ({}) at element {i}; the adapter is corrupt (a diverged training run?)",
                info.name, data[i]
            )));
        }
        let slot = &mut halves.entry((il, t)).or_default()[usize::from(!is_a)];
        if slot.is_some() {
            return Err(bad(format!("tensor '{}' appears twice", info.name)));
        }
        *slot = Some((info.dims.clone(), data));
    }
    if halves.is_empty() {
        return Err(bad("the adapter has no LoRA tensors".into()));
    }
    Ok(halves)
}

/// Read a llama.cpp GGUF LoRA adapter and check it against `model` (architecture, layer
/// count, every tensor's shape). Tensors of any decodable type are converted to f32.
pub fn read_adapter(path: &Path, model: &Model) -> Result<LoraSet, AdapterError> {
    let f = GgufFile::open(path)?;
    let bad = |p: String| AdapterError::Invalid { file: path.into(), problem: p };
    check_header(&f, path)?;
    let alpha = f.get("adapter.lora.alpha").and_then(Value::as_f32).unwrap_or(0.0);
    if !alpha.is_finite() {
        return Err(bad(format!("adapter.lora.alpha is {alpha}; it must be a finite number")));
    }
    let arch = f.architecture().unwrap_or("");
    let want = model.cfg.arch.name();
    if arch != want {
        return Err(bad(format!("adapter is for architecture '{arch}', the model is '{want}'")));
    }
    let mut layers: Vec<Vec<(Target, LoraPair)>> = vec![Vec::new(); model.cfg.n_layer];
    let halves = read_halves(&f, path, Some(model.cfg.n_layer))?;
    for ((il, t), [a, b]) in halves {
        let name = t.tensor_name(il);
        let (Some((da, a)), Some((db, b))) = (a, b) else {
            return Err(bad(format!("{name}: lora_a or lora_b is missing")));
        };
        let w = model.weight(il, t);
        let (n_in, n_out) = (w.n_in(), w.n_out());
        let r = da[1] as usize;
        if da[0] as usize != n_in || db[0] as usize != r || db[1] as usize != n_out || r == 0 {
            return Err(bad(format!("{name}: lora_a ne {da:?} and lora_b ne {db:?} do not fit the weight's [n_in {n_in}, n_out {n_out}]")));
        }
        layers[il].push((t, LoraPair { n_in, n_out, r, a, b }));
    }
    for l in &mut layers {
        l.sort_by_key(|(t, _)| *t);
    }
    Ok(LoraSet { alpha, layers })
}
