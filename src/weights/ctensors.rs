//! compressed-tensors `pack-quantized` weights (what llm-compressor writes; vLLM's main format).
//!
//! Per quantized Linear module `P` (HF row order, `N` outputs × `K` inputs, `b` bits):
//! * `P.weight_packed` I32 `[N, ⌈K·b/32⌉]`: each row a little-endian `b`-bit stream of
//!   `q + 2^(b−1)` (q the signed quantized value);
//! * `P.weight_scale` F16/BF16/F32 `[N, K/G]` (group strategy), `[N, 1]` (channel), `[1]` (tensor);
//! * `P.weight_zero_point` I32 `[⌈N·b/32⌉, K/G]`, asymmetric only: signed zero points stored
//!   like q, each column a stream along N;
//! * `P.weight_g_idx` I32 `[K]`, optional (activation order "group"): the group of input `k`;
//! * `P.weight_shape` `[2]` = `[N, K]`.
//!
//! `W[n, k] = (q − zp) · scale` evaluated as the reference does (`dequantize` in
//! compressed-tensors): `q − zp` converted to the scale's dtype (exact), times the scale,
//! rounded to the scale's dtype. The config's `config_groups` (targets: `Linear`, a module name
//! or `re:` + a regex matched at the start of the name) and `ignore` decide which modules are
//! quantized; a module they leave dense is read from `P.weight`.

use std::sync::Arc;

use serde_json::Value as Json;

use super::bitstream;
use super::gguf::QMatrix;
use super::{QuantWeight, Weight, WeightFormat};
use crate::model::ModelError;
use crate::safetensors::{Dtype, TensorView};

/// How the scales are shared along a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Strategy {
    /// One scale per `group` consecutive inputs (or per `g_idx` group).
    Group(usize),
    /// One scale per output row.
    Channel,
    /// One scale for the whole matrix.
    Tensor,
}

/// The weight part of one `config_groups` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Scheme {
    group: String,
    bits: u32,
    symmetric: bool,
    strategy: Strategy,
}

/// A `pack-quantized` matrix read in place from the safetensors map.
#[derive(Clone, Debug)]
pub struct PackQuantizedMatrix<'a> {
    n_in: usize,
    n_out: usize,
    bits: u32,
    /// `weight_packed` bytes, `[n_out, row_words]` little-endian i32.
    packed: &'a [u8],
    row_words: usize,
    /// `weight_scale` bytes and dtype, `[n_out or 1, n_groups]`.
    scale: &'a [u8],
    scale_ty: Dtype,
    /// Scales per row (0 for the tensor strategy: every row reads row 0).
    scale_cols: usize,
    scale_row_stride: usize,
    /// Inputs per group (`n_in` for channel and tensor strategies); unused with `g_idx`.
    group: usize,
    /// `weight_zero_point` bytes, `[⌈n_out·b/32⌉, scale_cols]` (asymmetric only).
    zero: Option<&'a [u8]>,
    /// The group of each input (from `weight_g_idx`), validated.
    g_idx: Option<Vec<u32>>,
}

impl PackQuantizedMatrix<'_> {
    /// Bits per weight.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    fn scale_at(&self, r: usize, g: usize) -> f32 {
        let i = r * self.scale_row_stride + g;
        match self.scale_ty {
            Dtype::F32 => f32::from_le_bytes([self.scale[4 * i], self.scale[4 * i + 1], self.scale[4 * i + 2], self.scale[4 * i + 3]]),
            Dtype::F16 => half::f16::from_le_bytes([self.scale[2 * i], self.scale[2 * i + 1]]).to_f32(),
            _ => half::bf16::from_le_bytes([self.scale[2 * i], self.scale[2 * i + 1]]).to_f32(),
        }
    }

    /// `x` rounded to the scale's dtype, as torch stores the product.
    fn round(&self, x: f32) -> f32 {
        match self.scale_ty {
            Dtype::F16 => half::f16::from_f32(x).to_f32(),
            Dtype::BF16 => half::bf16::from_f32(x).to_f32(),
            _ => x,
        }
    }

    fn group_of(&self, k: usize) -> usize {
        match &self.g_idx {
            Some(g) => g[k] as usize,
            None => k / self.group,
        }
    }

    fn decode_span(&self, r: usize, c0: usize, c1: usize, out: &mut [f32]) {
        let offset = 1i32 << (self.bits - 1);
        let b = self.bits as usize;
        let mut cached = (usize::MAX, 0f32, 0i32);
        for (k, o) in (c0..c1).zip(out.iter_mut()) {
            let g = self.group_of(k);
            if g != cached.0 {
                let zp = match self.zero {
                    Some(z) => bitstream::value(z, g, self.scale_cols, r * b, self.bits) as i32 - offset,
                    None => 0,
                };
                cached = (g, self.scale_at(r, g), zp);
            }
            let q = bitstream::value(self.packed, r * self.row_words, 1, k * b, self.bits) as i32 - offset;
            // |q − zp| ≤ 255: exact in f16 and bf16, so the one rounding is the product's.
            *o = self.round((q - cached.2) as f32 * cached.1);
        }
    }
}

impl QuantWeight for PackQuantizedMatrix<'_> {
    fn n_in(&self) -> usize {
        self.n_in
    }
    fn n_out(&self) -> usize {
        self.n_out
    }
    fn format(&self) -> WeightFormat {
        WeightFormat::PackQuantized(self.bits as u8)
    }
    fn byte_size(&self) -> usize {
        self.packed.len() + self.scale.len() + self.zero.map_or(0, <[u8]>::len) + self.g_idx.as_ref().map_or(0, |g| 4 * g.len())
    }
    fn col_block(&self) -> usize {
        32
    }
    fn decode_cols(&self, r: usize, c0: usize, c1: usize, out: &mut [f32]) {
        self.decode_span(r, c0, c1, out)
    }
}

/// Open the Linear module `prefix` (`model.layers.0.self_attn.q_proj`) of a compressed-tensors
/// checkpoint: a [`PackQuantizedMatrix`] when `qcfg` (config.json's `quantization_config`)
/// quantizes it, else its dense `prefix.weight`. Every tensor is checked against `n_in`,
/// `n_out` and the scheme.
pub fn open<'a>(
    get: &dyn Fn(&str) -> Option<TensorView<'a>>,
    prefix: &str,
    qcfg: &Json,
    n_in: usize,
    n_out: usize,
) -> Result<Weight<'a>, ModelError> {
    let packed_name = format!("{prefix}.weight_packed");
    let packed = get(&packed_name);
    let file = packed
        .map_or_else(|| get(&format!("{prefix}.weight")).map(|v| v.file.display().to_string()), |v| Some(v.file.display().to_string()));
    let file = file.unwrap_or_else(|| "the checkpoint".to_string());
    let cfg_err = |problem: String| ModelError::Key { file: file.clone(), key: "quantization_config".into(), problem };
    let Some(scheme) = scheme_for(prefix, qcfg).map_err(cfg_err)? else {
        return dense(get, prefix, &file, n_in, n_out, packed.is_some());
    };
    let err = |name: &str, problem: String| ModelError::Tensor { file: file.clone(), name: name.to_string(), problem };
    let packed = packed.ok_or_else(|| err(&packed_name, format!("missing (config_groups.{} quantizes {prefix})", scheme.group)))?;
    let need = |suffix: &str| {
        let name = format!("{prefix}.{suffix}");
        get(&name).ok_or_else(|| err(&name, format!("missing (config_groups.{} quantizes {prefix})", scheme.group)))
    };
    let (b, bits) = (scheme.bits as usize, scheme.bits);
    let row_words = bitstream::words_for(n_in, b);
    check(&packed, &[Dtype::I32], &[n_out, row_words], &file)?;
    if let Some(shape) = get(&format!("{prefix}.weight_shape")) {
        let dims = int_values(&shape, &file)?;
        if dims != [n_out as i64, n_in as i64] {
            return Err(err(shape.name, format!("says {dims:?}, the model expects [{n_out}, {n_in}]")));
        }
    }
    let scale = need("weight_scale")?;
    let g_idx_view = get(&format!("{prefix}.weight_g_idx"));
    let (scale_cols, group) = match scheme.strategy {
        Strategy::Group(g) => {
            if n_in % g != 0 {
                return Err(err(&packed_name, format!("{n_in} inputs are not a whole number of groups of {g}")));
            }
            (n_in / g, g)
        }
        Strategy::Channel | Strategy::Tensor => (1, n_in),
    };
    let (scale_shape, scale_row_stride): (Vec<usize>, usize) = match scheme.strategy {
        Strategy::Tensor => (if scale.shape.len() == 2 { vec![1, 1] } else { vec![1] }, 0),
        _ => (vec![n_out, scale_cols], scale_cols),
    };
    check(&scale, &[Dtype::F16, Dtype::BF16, Dtype::F32], &scale_shape, &file)?;
    if scale_cols == 0 {
        return Err(err(scale.name, "has no groups".into()));
    }
    let zero = if scheme.symmetric {
        None
    } else {
        if scheme.strategy == Strategy::Tensor {
            return Err(cfg_err(format!("config_groups.{}: asymmetric tensor-strategy weights are not supported", scheme.group)));
        }
        let z = need("weight_zero_point")?;
        check(&z, &[Dtype::I32], &[bitstream::words_for(n_out, b), scale_cols], &file)?;
        Some(z.data)
    };
    let g_idx = match g_idx_view {
        None => None,
        Some(v) => {
            check(&v, &[Dtype::I32], &[n_in], &file)?;
            let vals = int_values(&v, &file)?;
            // The reference (compressed-tensors ≤ 0.13 `_process_quantization`) sorts the
            // inputs by g_idx and cuts them into groups of `group_size`: exact when every group
            // has `group_size` members, which we require. A -1 anywhere means "not initialized":
            // column order, as there.
            if vals.contains(&-1) {
                None
            } else {
                let mut count = vec![0usize; scale_cols];
                for (k, &g) in vals.iter().enumerate() {
                    if g < 0 || g as usize >= scale_cols {
                        return Err(err(v.name, format!("entry {k} is {g}, outside the {scale_cols} groups of {}", scale.name)));
                    }
                    count[g as usize] += 1;
                }
                if let Some(g) = count.iter().position(|&c| c != group) {
                    return Err(err(v.name, format!("group {g} has {} inputs, the group size is {group}", count[g])));
                }
                Some(vals.iter().map(|&g| g as u32).collect())
            }
        }
    };
    Ok(Arc::new(PackQuantizedMatrix {
        n_in,
        n_out,
        bits,
        packed: packed.data,
        row_words,
        scale: scale.data,
        scale_ty: scale.dtype,
        scale_cols,
        scale_row_stride,
        group,
        zero,
        g_idx,
    }))
}

/// A module the config leaves unquantized: its float `prefix.weight`, read in place.
fn dense<'a>(
    get: &dyn Fn(&str) -> Option<TensorView<'a>>,
    prefix: &str,
    file: &str,
    n_in: usize,
    n_out: usize,
    has_packed: bool,
) -> Result<Weight<'a>, ModelError> {
    let name = format!("{prefix}.weight");
    let Some(v) = get(&name) else {
        let problem = if has_packed {
            format!("missing; {prefix}.weight_packed is there but no config_groups entry quantizes {prefix} (or it is ignored)")
        } else {
            "missing".to_string()
        };
        return Err(ModelError::Tensor { file: file.to_string(), name, problem });
    };
    check(&v, &[Dtype::F16, Dtype::BF16, Dtype::F32], &[n_out, n_in], file)?;
    let ty = v.dtype.ggml().expect("float dtype checked");
    Ok(Arc::new(QMatrix { ty, n_in, n_out, data: v.data }))
}

/// `v` has one of `dtypes` and exactly `shape`.
pub(crate) fn check(v: &TensorView<'_>, dtypes: &[Dtype], shape: &[usize], file: &str) -> Result<(), ModelError> {
    let err = |problem: String| ModelError::Tensor { file: file.to_string(), name: v.name.to_string(), problem };
    if !dtypes.contains(&v.dtype) {
        let want: Vec<&str> = dtypes.iter().map(|d| d.name()).collect();
        return Err(err(format!("dtype {}, expected {}", v.dtype, want.join(" or "))));
    }
    if v.shape != shape {
        return Err(err(format!("shape {:?}, expected {shape:?}", v.shape)));
    }
    if v.data.len() != v.numel() * v.dtype.size() {
        return Err(err(format!("{} bytes of data for shape {:?} of {}", v.data.len(), v.shape, v.dtype)));
    }
    Ok(())
}

/// The values of an integer tensor (I64, I32, I16, U16) widened to i64.
pub(crate) fn int_values(v: &TensorView<'_>, file: &str) -> Result<Vec<i64>, ModelError> {
    let d = v.data;
    let vals: Vec<i64> = match v.dtype {
        Dtype::I64 => d.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect(),
        Dtype::I32 => d.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect(),
        Dtype::I16 => d.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as i64).collect(),
        Dtype::U16 => d.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as i64).collect(),
        other => {
            return Err(ModelError::Tensor {
                file: file.to_string(),
                name: v.name.to_string(),
                problem: format!("dtype {other} is not an integer type"),
            })
        }
    };
    if vals.len() != v.numel() {
        return Err(ModelError::Tensor {
            file: file.to_string(),
            name: v.name.to_string(),
            problem: format!("{} bytes of data for shape {:?} of {}", d.len(), v.shape, v.dtype),
        });
    }
    Ok(vals)
}

/// Whether `target` (a `targets`/`ignore` entry) names the Linear module `prefix`.
fn matches(target: &str, prefix: &str) -> Result<bool, String> {
    if let Some(re) = target.strip_prefix("re:") {
        // Python's re.match: anchored at the start only.
        let r = fancy_regex::Regex::new(&format!("^(?:{re})")).map_err(|e| format!("regex '{re}' does not compile: {e}"))?;
        return r.is_match(prefix).map_err(|e| format!("regex '{re}': {e}"));
    }
    Ok(target == prefix || target == "Linear")
}

fn str_list<'j>(v: Option<&'j Json>, what: &str) -> Result<Vec<&'j str>, String> {
    match v {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::Array(a)) => a.iter().map(|x| x.as_str().ok_or_else(|| format!("{what} has a non-string entry {x}"))).collect(),
        Some(other) => Err(format!("{what} is {other}, not a list of strings")),
    }
}

/// The weight scheme that quantizes `prefix`, or `None` when the module stays dense.
fn scheme_for(prefix: &str, qcfg: &Json) -> Result<Option<Scheme>, String> {
    let method = qcfg.get("quant_method").and_then(Json::as_str).unwrap_or("");
    if method != "compressed-tensors" {
        return Err(format!("quant_method is '{method}', not 'compressed-tensors'"));
    }
    for t in str_list(qcfg.get("ignore"), "ignore")? {
        if matches(t, prefix)? && t != "Linear" {
            return Ok(None);
        }
    }
    let groups = qcfg.get("config_groups").and_then(Json::as_object).ok_or("has no config_groups object")?;
    for (name, g) in groups {
        let targets = str_list(g.get("targets"), &format!("config_groups.{name}.targets"))?;
        let mut hit = false;
        for t in targets {
            hit |= matches(t, prefix)?;
        }
        if !hit {
            continue;
        }
        let w = match g.get("weights") {
            None | Some(Json::Null) => return Ok(None),
            Some(w) => w,
        };
        let at = |k: &str| format!("config_groups.{name}.weights.{k}");
        let format = g.get("format").and_then(Json::as_str).or_else(|| qcfg.get("format").and_then(Json::as_str)).unwrap_or("");
        if format != "pack-quantized" {
            return Err(format!("config_groups.{name}: format '{format}' is not supported (only 'pack-quantized')"));
        }
        let ty = w.get("type").and_then(Json::as_str).unwrap_or("int");
        if ty != "int" {
            return Err(format!("{} is '{ty}'; pack-quantized weights are integers", at("type")));
        }
        let bits = w.get("num_bits").and_then(Json::as_u64).ok_or_else(|| format!("{} is missing or not a number", at("num_bits")))?;
        if !(1..=8).contains(&bits) {
            return Err(format!("{} is {bits}; pack-quantized holds 1 to 8 bits", at("num_bits")));
        }
        let symmetric = w.get("symmetric").and_then(Json::as_bool).unwrap_or(true);
        let strategy = match w.get("strategy").and_then(Json::as_str).unwrap_or("tensor") {
            "group" => {
                let gs = w.get("group_size").and_then(Json::as_u64).filter(|&g| g > 0);
                Strategy::Group(gs.ok_or_else(|| format!("{} must be a positive number for strategy 'group'", at("group_size")))? as usize)
            }
            "channel" => Strategy::Channel,
            "tensor" => Strategy::Tensor,
            other => return Err(format!("{} '{other}' is not supported (group, channel, tensor)", at("strategy"))),
        };
        return Ok(Some(Scheme { group: name.clone(), bits: bits as u32, symmetric, strategy }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Json {
        serde_json::json!({
            "quant_method": "compressed-tensors", "format": "pack-quantized",
            "config_groups": {
                "attn": {"targets": ["re:.*self_attn\\.(q|k)_proj$"], "weights": {"num_bits": 3, "symmetric": false, "strategy": "group", "group_size": 64}},
                "rest": {"targets": ["Linear"], "weights": {"num_bits": 8, "strategy": "channel"}}
            },
            "ignore": ["lm_head", "re:.*layers\\.1\\.mlp"]
        })
    }

    #[test]
    fn targets_and_ignore_pick_the_scheme() {
        let c = cfg();
        let q = scheme_for("model.layers.0.self_attn.q_proj", &c).unwrap().unwrap();
        assert_eq!((q.group.as_str(), q.bits, q.symmetric, q.strategy), ("attn", 3, false, Strategy::Group(64)));
        let v = scheme_for("model.layers.0.self_attn.v_proj", &c).unwrap().unwrap();
        assert_eq!((v.group.as_str(), v.bits, v.strategy), ("rest", 8, Strategy::Channel));
        assert_eq!(scheme_for("lm_head", &c).unwrap(), None);
        assert_eq!(scheme_for("model.layers.1.mlp.up_proj", &c).unwrap(), None);
        assert!(scheme_for("model.layers.0.mlp.up_proj", &c).unwrap().is_some());
    }

    #[test]
    fn other_formats_and_bits_are_refused() {
        let mut c = cfg();
        c["format"] = "naive-quantized".into();
        assert!(scheme_for("model.layers.0.mlp.up_proj", &c).unwrap_err().contains("format 'naive-quantized' is not supported"));
        let mut c = cfg();
        c["config_groups"]["rest"]["weights"]["num_bits"] = 16.into();
        assert!(scheme_for("model.layers.0.mlp.up_proj", &c).unwrap_err().contains("1 to 8 bits"));
        let mut c = cfg();
        c["quant_method"] = "awq".into();
        assert!(scheme_for("x", &c).unwrap_err().contains("not 'compressed-tensors'"));
    }
}
