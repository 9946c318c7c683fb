//! What the Hugging Face packed-integer formats (GPTQ, AWQ) share: integer codes packed into
//! little-endian 32-bit words, scales in f16/bf16/f32, the checks of each tensor against the
//! shape the config implies, and the config values themselves. Everything reads the raw bytes of
//! safetensors views in place (they need not be aligned).

use half::{bf16, f16};
use serde_json::Value;

use crate::model::ModelError;
use crate::safetensors::{Dtype, TensorView};

/// Word `i` of `data`, little-endian (the bytes of an I32 tensor).
#[inline(always)]
pub fn word(data: &[u8], i: usize) -> u32 {
    let b = &data[4 * i..4 * i + 4];
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Value `i` (bits `bits·i .. bits·i + bits`) of the little-endian bitstream whose `j`-th word
/// is `w(j)`; a value may straddle two words (3-bit packing).
#[inline(always)]
pub fn field(w: impl Fn(usize) -> u32, i: usize, bits: u32) -> u32 {
    let p = i * bits as usize;
    let (j, s) = (p / 32, (p % 32) as u32);
    let mut v = w(j) >> s;
    if s + bits > 32 {
        v |= w(j + 1) << (32 - s);
    }
    v & ((1u32 << bits) - 1)
}

/// The scales tensor: its bytes and element type. `(q − z)·scale` is rounded to this type, as
/// the reference computes it in the scale's dtype (torch promotes the integer difference).
#[derive(Clone, Copy, Debug)]
pub struct Scales<'a> {
    /// Raw little-endian values, row-major `[groups, n_out]`.
    pub data: &'a [u8],
    /// F16, BF16 or F32.
    pub dtype: Dtype,
    /// Row length (`n_out`).
    pub n: usize,
}

impl Scales<'_> {
    /// Scale of group `g`, output `n`.
    #[inline(always)]
    pub fn get(&self, g: usize, n: usize) -> f32 {
        let i = g * self.n + n;
        match self.dtype {
            Dtype::F16 => f16::from_bits(u16::from_le_bytes([self.data[2 * i], self.data[2 * i + 1]])).to_f32(),
            Dtype::BF16 => bf16::from_bits(u16::from_le_bytes([self.data[2 * i], self.data[2 * i + 1]])).to_f32(),
            _ => f32::from_bits(word(self.data, i)),
        }
    }
}

/// Round `x` to the precision of `dtype` (F16, BF16; F32 unchanged), to nearest even.
#[inline(always)]
pub fn round_to(dtype: Dtype, x: f32) -> f32 {
    match dtype {
        Dtype::F16 => f16::from_f32(x).to_f32(),
        Dtype::BF16 => bf16::from_f32(x).to_f32(),
        _ => x,
    }
}

/// Looks tensors of one module up and reports what is wrong with them.
pub struct Module<'g, 'a> {
    get: &'g dyn Fn(&str) -> Option<TensorView<'a>>,
    /// The module prefix (`model.layers.0.self_attn.q_proj`).
    pub prefix: &'g str,
    /// The format's name for messages (`GPTQ`, `AWQ`).
    pub format: &'static str,
}

impl<'g, 'a> Module<'g, 'a> {
    /// The tensors of `prefix` through `get`.
    pub fn new(get: &'g dyn Fn(&str) -> Option<TensorView<'a>>, prefix: &'g str, format: &'static str) -> Self {
        Module { get, prefix, format }
    }

    /// `{prefix}.{suffix}`.
    pub fn name(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.prefix)
    }

    /// The file the module's tensors are in (for messages about the module as a whole).
    pub fn file(&self) -> String {
        ["qweight", "scales", "qzeros", "g_idx"]
            .iter()
            .find_map(|s| (self.get)(&self.name(s)))
            .map_or_else(|| "the model's safetensors".to_string(), |v| v.file.display().to_string())
    }

    /// The module's `config.json` (beside its safetensors) for messages about the config.
    pub fn config_file(&self) -> String {
        ["qweight", "scales"]
            .iter()
            .find_map(|s| (self.get)(&self.name(s)))
            .and_then(|v| v.file.parent().map(|d| d.join("config.json").display().to_string()))
            .unwrap_or_else(|| "config.json".to_string())
    }

    /// An error about tensor `suffix`.
    pub fn err(&self, suffix: &str, problem: impl Into<String>) -> ModelError {
        let file = (self.get)(&self.name(suffix)).map_or_else(|| self.file(), |v| v.file.display().to_string());
        ModelError::Tensor { file, name: self.name(suffix), problem: format!("{} weight: {}", self.format, problem.into()) }
    }

    /// An error about the `quantization_config` key `key`.
    pub fn key_err(&self, key: &str, problem: impl Into<String>) -> ModelError {
        ModelError::Key { file: self.config_file(), key: format!("quantization_config.{key}"), problem: problem.into() }
    }

    /// Tensor `suffix`, if present.
    pub fn opt(&self, suffix: &str) -> Option<TensorView<'a>> {
        (self.get)(&self.name(suffix))
    }

    /// Tensor `suffix` of one of `dtypes` and exactly `shape`.
    pub fn need(&self, suffix: &str, dtypes: &[Dtype], shape: &[usize]) -> Result<TensorView<'a>, ModelError> {
        let v = self.opt(suffix).ok_or_else(|| self.err(suffix, "missing"))?;
        self.check(&v, suffix, dtypes, shape)?;
        Ok(v)
    }

    /// Check `v` (tensor `suffix`) has one of `dtypes` and exactly `shape`, and that its bytes
    /// are all there.
    pub fn check(&self, v: &TensorView<'a>, suffix: &str, dtypes: &[Dtype], shape: &[usize]) -> Result<(), ModelError> {
        if !dtypes.contains(&v.dtype) {
            let names: Vec<&str> = dtypes.iter().map(|d| d.name()).collect();
            return Err(self.err(suffix, format!("dtype {}, expected {}", v.dtype, names.join(" or "))));
        }
        if v.shape != shape {
            return Err(self.err(suffix, format!("shape {:?}, expected {shape:?}", v.shape)));
        }
        let want = shape.iter().product::<usize>() * v.dtype.size();
        if v.data.len() != want {
            return Err(self.err(suffix, format!("{} bytes of data, expected {want}", v.data.len())));
        }
        Ok(())
    }
}

/// An integer `quantization_config` value under any of `keys` (the first present), or `default`.
pub fn int_key(m: &Module, q: &Value, keys: &[&str], default: Option<i64>) -> Result<i64, ModelError> {
    for k in keys {
        if let Some(v) = q.get(*k) {
            return v.as_i64().ok_or_else(|| m.key_err(k, format!("{v} is not an integer")));
        }
    }
    default.ok_or_else(|| m.key_err(keys[0], "missing"))
}

/// A boolean `quantization_config` value, or `default` when absent.
pub fn bool_key(m: &Module, q: &Value, key: &str, default: bool) -> Result<bool, ModelError> {
    match q.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_bool().ok_or_else(|| m.key_err(key, format!("{v} is not true or false"))),
    }
}

/// A string `quantization_config` value under any of `keys`, lower-cased, if present.
pub fn str_key(m: &Module, q: &Value, keys: &[&str]) -> Result<Option<String>, ModelError> {
    for k in keys {
        match q.get(*k) {
            None | Some(Value::Null) => continue,
            Some(v) => return v.as_str().map(|s| Some(s.to_ascii_lowercase())).ok_or_else(|| m.key_err(k, format!("{v} is not a string"))),
        }
    }
    Ok(None)
}

/// The group size: `group_size` (−1 or 0: one group of the whole row), checked positive.
pub fn group_size(m: &Module, key: &str, g: i64, n_in: usize) -> Result<usize, ModelError> {
    match g {
        -1 | 0 => Ok(n_in.max(1)),
        g if g > 0 => Ok(g as usize),
        g => Err(m.key_err(key, format!("{g} is not a group size (a positive number or -1)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitstream_fields_straddle_words() {
        // 32 three-bit values 0..7 repeating, packed by hand as a 96-bit little-endian stream.
        let vals: Vec<u32> = (0..32).map(|i| (i * 5 + 3) % 8).collect();
        let mut bits = 0u128;
        for (i, v) in vals.iter().enumerate() {
            bits |= (*v as u128) << (3 * i);
        }
        let words = [bits as u32, (bits >> 32) as u32, (bits >> 64) as u32];
        for (i, v) in vals.iter().enumerate() {
            assert_eq!(field(|j| words[j], i, 3), *v, "value {i}");
        }
        assert_eq!(field(|_| 0xF0F0_F0F0, 1, 4), 0xF);
        assert_eq!(field(|_| 0x8000_0001, 15, 2), 2);
    }

    #[test]
    fn rounding_follows_the_scale_dtype() {
        let x = 1.0 + 1.0 / 4096.0;
        assert_eq!(round_to(Dtype::F16, x), 1.0);
        assert_eq!(round_to(Dtype::BF16, 1.0 + 1.0 / 512.0), 1.0);
        assert_eq!(round_to(Dtype::BF16, 1.0 + 1.0 / 200.0), 1.0 + 1.0 / 128.0);
        assert_eq!(round_to(Dtype::F32, x), x);
    }
}
