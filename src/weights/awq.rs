//! AWQ checkpoints in the GEMM layout (`quant_method: "awq"`, `version: "gemm"`; AutoAWQ,
//! GPTQModel, transformers, vLLM), 4-bit with zero points.
//!
//! K = in_features, N = out_features, G = group size: `qweight` I32 `[K, N/8]` packs the codes
//! along N, eight per word in the interleaved order `[0, 2, 4, 6, 1, 3, 5, 7]` (nibble i holds
//! column `8j + ORDER[i]`, so column n is at nibble `REV[n % 8]`, REV = `[0, 4, 1, 5, 2, 6, 3, 7]`),
//! `qzeros` I32 `[K/G, N/8]` the same way, `scales` F16 (or BF16) `[K/G, N]`.
//! `W[n, k] = (q − z) · scales[k/G, n]`, rounded to the scales' dtype (the reference,
//! `dequantize_gemm`, computes it in f16). Words are read as unsigned (logical shifts).

use std::sync::Arc;

use serde_json::Value;

use super::packed::{bool_key, group_size, int_key, round_to, str_key, word, Module, Scales};
use super::{QuantWeight, Weight, WeightFormat};
use crate::model::ModelError;
use crate::safetensors::{Dtype, TensorView};

/// Nibble of column `n % 8` within its word.
const REV: [u32; 8] = [0, 4, 1, 5, 2, 6, 3, 7];

/// An AWQ-GEMM matrix read in place from the memory map.
#[derive(Debug)]
pub struct AwqMatrix<'a> {
    group: usize,
    n_in: usize,
    n_out: usize,
    qweight: &'a [u8],
    qzeros: &'a [u8],
    scales: Scales<'a>,
    /// Take the AVX2 path.
    simd: bool,
}

/// Open the AWQ module `prefix` (`{prefix}.qweight`, `.qzeros`, `.scales`) as an
/// `n_out × n_in` matrix, `qcfg` being `config.json`'s `quantization_config`.
pub fn open<'a>(
    get: &dyn Fn(&str) -> Option<TensorView<'a>>,
    prefix: &str,
    qcfg: &Value,
    n_in: usize,
    n_out: usize,
) -> Result<Weight<'a>, ModelError> {
    Ok(Arc::new(AwqMatrix::open(get, prefix, qcfg, n_in, n_out)?))
}

impl<'a> AwqMatrix<'a> {
    /// See [`open`].
    pub fn open(
        get: &dyn Fn(&str) -> Option<TensorView<'a>>,
        prefix: &str,
        qcfg: &Value,
        n_in: usize,
        n_out: usize,
    ) -> Result<Self, ModelError> {
        let m = Module::new(get, prefix, "AWQ");
        if let Some(method) = str_key(&m, qcfg, &["quant_method"])? {
            if method != "awq" {
                return Err(m.key_err("quant_method", format!("'{method}', expected 'awq'")));
            }
        }
        if let Some(skip) = qcfg.get("modules_to_not_convert").and_then(Value::as_array) {
            if let Some(s) = skip.iter().filter_map(Value::as_str).find(|s| !s.is_empty() && prefix.contains(s)) {
                return Err(m.err("qweight", format!("the module is listed in modules_to_not_convert ('{s}'): a dense weight")));
            }
        }
        let bits = int_key(&m, qcfg, &["bits", "w_bit"], Some(4))?;
        if bits != 4 {
            return Err(m.key_err("bits", format!("{bits}-bit AWQ is not supported (the GEMM layout is 4-bit)")));
        }
        match str_key(&m, qcfg, &["version", "format"])?.as_deref() {
            None | Some("gemm") => {}
            Some(v) => return Err(m.key_err("version", format!("'{v}' is not an AWQ layout this reads (gemm)"))),
        }
        let g = int_key(&m, qcfg, &["group_size", "q_group_size"], Some(128))?;
        let group = group_size(&m, "group_size", g, n_in)?;
        let zero_point = bool_key(&m, qcfg, "zero_point", true)?;
        if n_in == 0 || n_out == 0 || n_out % 8 != 0 {
            return Err(m.err("qweight", format!("{n_out} output features are not a multiple of 8 (eight per word)")));
        }
        if n_in % group != 0 {
            return Err(m.key_err("group_size", format!("{group} does not divide the {n_in} input features of {prefix}")));
        }
        let ng = n_in / group;
        let qweight = m.need("qweight", &[Dtype::I32, Dtype::U32], &[n_in, n_out / 8])?;
        if m.opt("qzeros").is_none() && !zero_point {
            return Err(m.err("qzeros", "missing (zero_point is false, a layout without zero points that the GEMM format does not have)"));
        }
        let qzeros = m.need("qzeros", &[Dtype::I32, Dtype::U32], &[ng, n_out / 8])?;
        let sv = m.need("scales", &[Dtype::F16, Dtype::BF16, Dtype::F32], &[ng, n_out])?;
        Ok(AwqMatrix {
            group,
            n_in,
            n_out,
            qweight: qweight.data,
            qzeros: qzeros.data,
            scales: Scales { data: sv.data, dtype: sv.dtype, n: n_out },
            simd: simd_default(),
        })
    }

    /// Use the AVX2 path where the CPU has it (`on`, the default) or the scalar reference
    /// (`!on`); both give the same bits.
    pub fn with_simd(mut self, on: bool) -> Self {
        self.simd = on && simd_default();
        self
    }

    /// The 16 possible weights of output `n` in group `g`: `(q − z)·s` rounded, for q = 0..16.
    #[inline]
    fn lut(&self, g: usize, n: usize) -> [f32; 16] {
        let z = ((word(self.qzeros, g * (self.n_out / 8) + n / 8) >> (4 * REV[n % 8])) & 15) as f32;
        let (s, dt) = (self.scales.get(g, n), self.scales.dtype);
        std::array::from_fn(|q| round_to(dt, (q as f32 - z) * s))
    }

    /// Decode rows `r0..r1`, columns `c0..c1` into `out` (row stride `c1 − c0`). Eight
    /// consecutive rows share each word: they are decoded together so a word is read once.
    fn block(&self, r0: usize, r1: usize, c0: usize, c1: usize, out: &mut [f32]) {
        let (ld, nw) = (c1 - c0, self.n_out / 8);
        let mut n = r0;
        while n < r1 && ld > 0 {
            let wcol = n / 8;
            let hi = (8 * wcol + 8).min(r1);
            let rows = hi - n;
            let base = (n - r0) * ld;
            let shifts: [u32; 8] = std::array::from_fn(|i| 4 * REV[(n + i) % 8]);
            let mut k = c0;
            while k < c1 {
                // The 16 possible weights of each row in this group, then lookups.
                let g = k / self.group;
                let end = ((g + 1) * self.group).min(c1);
                let luts: [[f32; 16]; 8] = std::array::from_fn(|i| if i < rows { self.lut(g, n + i) } else { [0.0; 16] });
                #[allow(unused_mut)]
                let mut done = 0;
                #[cfg(target_arch = "x86_64")]
                if self.simd {
                    let o = &mut out[base + k - c0..];
                    // SAFETY: `simd` is set only where AVX2 is available.
                    done = unsafe { super::packed_x86::awq_rows(self.qweight, nw, wcol, k, end - k, &shifts, &luts, rows, o, ld) };
                }
                #[cfg(target_arch = "aarch64")]
                if self.simd {
                    let o = &mut out[base + k - c0..];
                    done = super::packed_arm::awq_rows(self.qweight, nw, wcol, k, end - k, &shifts, &luts, rows, o, ld);
                }
                for kk in k + done..end {
                    let w = word(self.qweight, kk * nw + wcol);
                    for i in 0..rows {
                        out[base + i * ld + kk - c0] = luts[i][((w >> shifts[i]) & 15) as usize];
                    }
                }
                k = end;
            }
            n = hi;
        }
    }
}

/// Whether new matrices take the SIMD path (AVX2 on x86-64, NEON on AArch64).
fn simd_default() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::packed_x86::available()
    }
    #[cfg(target_arch = "aarch64")]
    {
        super::packed_arm::available()
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

impl QuantWeight for AwqMatrix<'_> {
    fn n_in(&self) -> usize {
        self.n_in
    }
    fn n_out(&self) -> usize {
        self.n_out
    }
    fn format(&self) -> WeightFormat {
        WeightFormat::Awq { bits: 4, group: self.group }
    }
    fn byte_size(&self) -> usize {
        self.qweight.len() + self.qzeros.len() + self.scales.data.len()
    }
    fn decode_rows(&self, r0: usize, r1: usize, out: &mut [f32]) {
        self.block(r0, r1, 0, self.n_in, out);
    }
    fn decode_block(&self, r0: usize, r1: usize, c0: usize, c1: usize, out: &mut [f32]) {
        self.block(r0, r1, c0, c1, out);
    }
    fn col_block(&self) -> usize {
        32
    }
    fn decode_cols(&self, r: usize, c0: usize, c1: usize, out: &mut [f32]) {
        self.block(r, r + 1, c0, c1, &mut out[..c1 - c0]);
    }
}
