//! `quantization_config` of a Hugging Face directory (in `config.json`, or the legacy
//! `quant_config.json` of old AWQ repositories) and the one place a matrix of each format is
//! opened.
//!
//! Contract for a format file (`weights/{awq,gptq,ctensors,exl2}.rs`):
//!
//! ```text
//! pub fn open<'a>(get: &dyn Fn(&str) -> Option<TensorView<'a>>, prefix: &str, qcfg: &serde_json::Value,
//!                 n_in: usize, n_out: usize) -> Result<Weight<'a>, ModelError>
//! ```
//!
//! `prefix` is the module (`model.layers.0.self_attn.q_proj`), `get` finds its tensors
//! (`{prefix}.qweight`, …) in whichever shard holds them, `qcfg` is the raw
//! `quantization_config`; the matrix comes back in HF row order (the caller applies the q/k row
//! permutation around it) and its errors name the file and tensor.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use super::dense::DenseMatrix;
use crate::model::ModelError;
use crate::safetensors::TensorView;
use crate::weights::Weight;

/// The quantization of a directory: the method and its raw configuration.
#[derive(Clone, Debug, Default)]
pub struct QuantConfig {
    /// `quant_method` (`awq`, `gptq`, `compressed-tensors`, `exl2`, …); `None`: dense weights.
    pub method: Option<String>,
    /// The whole `quantization_config` object (`Null` when dense).
    pub raw: Json,
    /// The file it was read from (`config.json` or `quant_config.json`).
    pub file: PathBuf,
}

impl QuantConfig {
    /// Read from `config.json` (`cfg`, at `file`), else `dir/quant_config.json`.
    pub fn read(cfg: &Json, file: &Path, dir: &Path) -> crate::error::Result<Self> {
        if let Some(q) = cfg.get("quantization_config").filter(|q| !q.is_null()) {
            return Self::from_json(q.clone(), file);
        }
        let legacy = dir.join("quant_config.json");
        if legacy.exists() {
            let bytes = crate::util::input::read_input(&legacy, 1 << 20).map_err(|e| crate::Error::io(&legacy, e))?;
            let q: Json = serde_json::from_slice(&bytes).map_err(|e| crate::Error::format(&legacy, format!("not valid JSON: {e}")))?;
            let mut q = q;
            // AutoAWQ's legacy file has no quant_method: it is AWQ by its name.
            if q.get("quant_method").is_none() {
                if let Some(o) = q.as_object_mut() {
                    o.insert("quant_method".into(), Json::String("awq".into()));
                }
            }
            return Self::from_json(q, &legacy);
        }
        Ok(QuantConfig { method: None, raw: Json::Null, file: file.to_path_buf() })
    }

    fn from_json(q: Json, file: &Path) -> crate::error::Result<Self> {
        let method = match q.get("quant_method") {
            Some(Json::String(s)) => s.clone(),
            other => {
                return Err(crate::Error::format(
                    file,
                    format!("quantization_config.quant_method is {}, expected a string", other.map_or("missing".into(), Json::to_string)),
                ))
            }
        };
        Ok(QuantConfig { method: Some(method), raw: q, file: file.to_path_buf() })
    }

    /// The method for display: `none (dense)` or the `quant_method`.
    pub fn describe(&self) -> String {
        self.method.clone().unwrap_or_else(|| "none (dense)".into())
    }
}

/// Open the `n_out × n_in` matrix of module `prefix` (HF row order). A module stored as a plain
/// float `{prefix}.weight` (a dense directory, or a module the quantizer left alone such as
/// `lm_head` or `modules_to_not_convert`) is a [`DenseMatrix`]; anything else goes to its
/// format's `open`.
pub fn open_matrix<'a>(
    qc: &QuantConfig,
    get: &dyn Fn(&str) -> Option<TensorView<'a>>,
    prefix: &str,
    n_in: usize,
    n_out: usize,
) -> Result<Weight<'a>, ModelError> {
    let dense = get(&format!("{prefix}.weight")).filter(|v| v.dtype.is_float());
    if let Some(v) = dense {
        return Ok(std::sync::Arc::new(DenseMatrix::new(&v, n_in, n_out)?));
    }
    let file = qc.file.display().to_string();
    let Some(method) = qc.method.as_deref() else {
        return Err(ModelError::Tensor { file, name: format!("{prefix}.weight"), problem: "missing".into() });
    };
    match method {
        "awq" => crate::weights::awq::open(get, prefix, &qc.raw, n_in, n_out),
        "gptq" => crate::weights::gptq::open(get, prefix, &qc.raw, n_in, n_out),
        "compressed-tensors" => crate::weights::ctensors::open(get, prefix, &qc.raw, n_in, n_out),
        "exl2" => crate::weights::exl2::open(get, prefix, &qc.raw, n_in, n_out),
        other => Err(ModelError::Key {
            file,
            key: "quantization_config.quant_method".into(),
            problem: format!(
                "'{other}': quant_method {other} is not supported (needed by {prefix}; supported: awq, gptq, compressed-tensors, exl2)"
            ),
        }),
    }
}
