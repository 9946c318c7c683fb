//! GPTQ checkpoints (`quant_method: "gptq"`, as written by GPTQModel and AutoGPTQ), v1 and v2.
//!
//! K = in_features, N = out_features, b = bits (2, 3, 4, 8), ng = ⌈K / group_size⌉:
//! `qweight` I32 `[K·b/32, N]` packs the codes along K (column n's codes are a little-endian
//! bitstream down the rows; at 3 bits values straddle words), `qzeros` I32 `[ng, ⌈N·b/32⌉]`
//! packs the zero points along N the same way, `scales` F16 `[ng, N]`, `g_idx` I32 `[K]` (the
//! group of each input column; not monotonic with act-order / `desc_act`).
//! `W[n, k] = (q − z) · scales[g, n]` with `g = g_idx[k]`, rounded to the scales' dtype (the
//! reference computes it in f16).
//!
//! v1 (`checkpoint_format` "gptq" or absent) stores every zero minus one. GPTQModel, the
//! reference (transformers loads GPTQ through it), undoes that on load by adding one to every
//! field of each packed word as a whole-word integer add (0x11111111 at 4 bits), so a field
//! holding all ones (an asymmetric zero of 0 stored as −1) carries into the next field; at 3 bits
//! it adds one per field, modulo 8. This decoder does exactly that. Older readers (AutoGPTQ's
//! and vLLM's kernels) add one per field without a carry; the two disagree only where a v1 file
//! has an all-ones zero field, which [`open`] reports as a warning.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::Value;

use super::packed::{bool_key, field, group_size, int_key, round_to, str_key, word, Module, Scales};
use super::{QuantWeight, Weight, WeightFormat};
use crate::model::ModelError;
use crate::safetensors::{Dtype, TensorView};

/// How the stored zero points become the zero points of the formula.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Zeros {
    /// v2: as stored.
    Plain,
    /// v1 at 2/4/8 bits: add this constant to each packed word (mod 2³²), then unpack.
    WordAdd(u32),
    /// v1 at 3 bits: add one to each field, modulo 8.
    FieldAdd,
}

/// A GPTQ matrix read in place from the memory map.
#[derive(Debug)]
pub struct GptqMatrix<'a> {
    bits: u32,
    group: usize,
    n_in: usize,
    n_out: usize,
    qweight: &'a [u8],
    qzeros: &'a [u8],
    /// Words per row of `qzeros`.
    zw: usize,
    scales: Scales<'a>,
    g_idx: Vec<u32>,
    n_groups: usize,
    zeros: Zeros,
    /// `g_idx[k] = k / group` for every k (no act-order): groups are runs of columns.
    ordered: bool,
    /// Take the AVX2 path (4-bit, ordered groups).
    simd: bool,
}

/// Open the GPTQ module `prefix` (`{prefix}.qweight`, `.qzeros`, `.scales`, `.g_idx`) as an
/// `n_out × n_in` matrix, `qcfg` being `config.json`'s `quantization_config`.
pub fn open<'a>(
    get: &dyn Fn(&str) -> Option<TensorView<'a>>,
    prefix: &str,
    qcfg: &Value,
    n_in: usize,
    n_out: usize,
) -> Result<Weight<'a>, ModelError> {
    Ok(Arc::new(GptqMatrix::open(get, prefix, qcfg, n_in, n_out)?))
}

impl<'a> GptqMatrix<'a> {
    /// See [`open`].
    pub fn open(
        get: &dyn Fn(&str) -> Option<TensorView<'a>>,
        prefix: &str,
        qcfg: &Value,
        n_in: usize,
        n_out: usize,
    ) -> Result<Self, ModelError> {
        let m = Module::new(get, prefix, "GPTQ");
        if let Some(method) = str_key(&m, qcfg, &["quant_method"])? {
            if method != "gptq" {
                return Err(m.key_err("quant_method", format!("'{method}', expected 'gptq'")));
            }
        }
        let over = dynamic_override(&m, qcfg)?;
        let q = |k: &str| pick(&over, qcfg, k);
        let bits = int_key(&m, q("bits"), &["bits"], None)?;
        if ![2, 3, 4, 8].contains(&bits) {
            return Err(m.key_err("bits", format!("{bits}-bit GPTQ is not supported (2, 3, 4 or 8)")));
        }
        let bits = bits as u32;
        let group = group_size(&m, "group_size", int_key(&m, q("group_size"), &["group_size"], Some(-1))?, n_in)?;
        let desc_act = bool_key(&m, q("desc_act"), "desc_act", false)?;
        let sym = bool_key(&m, q("sym"), "sym", true)?;
        let fmt = str_key(&m, qcfg, &["checkpoint_format", "format"])?;
        let v2 = match fmt.as_deref() {
            None | Some("gptq") => false,
            Some("gptq_v2") => true,
            Some(f) => return Err(m.key_err("checkpoint_format", format!("'{f}' is not a GPTQ layout this reads (gptq, gptq_v2)"))),
        };
        if let Some(p) = str_key(&m, qcfg, &["pack_dtype"])? {
            if p != "int32" {
                return Err(m.key_err("pack_dtype", format!("'{p}' is not supported (int32)")));
            }
        }
        if n_in == 0 || n_out == 0 || (n_in * bits as usize) % 32 != 0 {
            return Err(m.err("qweight", format!("{n_in} input features at {bits} bits do not fill whole 32-bit words")));
        }
        let n_groups = n_in.div_ceil(group);
        let zw = (n_out * bits as usize).div_ceil(32);
        let qweight = m.need("qweight", &[Dtype::I32, Dtype::U32], &[n_in * bits as usize / 32, n_out])?;
        let qzeros = m.need("qzeros", &[Dtype::I32, Dtype::U32], &[n_groups, zw])?;
        let sv = m.need("scales", &[Dtype::F16, Dtype::BF16, Dtype::F32], &[n_groups, n_out])?;
        let g_idx = match m.opt("g_idx") {
            Some(v) => {
                m.check(&v, "g_idx", &[Dtype::I32, Dtype::I64], &[n_in])?;
                let mut g = Vec::with_capacity(n_in);
                for k in 0..n_in {
                    let x = match v.dtype {
                        Dtype::I32 => word(v.data, k) as i32 as i64,
                        _ => i64::from_le_bytes(v.data[8 * k..8 * k + 8].try_into().unwrap_or([0; 8])),
                    };
                    if x < 0 || x as usize >= n_groups {
                        return Err(m.err("g_idx", format!("g_idx[{k}] = {x} is outside the {n_groups} groups of scales")));
                    }
                    g.push(x as u32);
                }
                g
            }
            None if desc_act => return Err(m.err("g_idx", "missing (desc_act is set, so the groups are not in order)")),
            None => (0..n_in).map(|k| (k / group) as u32).collect(),
        };
        let zeros = match (v2, bits) {
            (true, _) => Zeros::Plain,
            (false, 3) => Zeros::FieldAdd,
            (false, b) => Zeros::WordAdd((0..32 / b).fold(0u32, |acc, i| acc | 1 << (b * i))),
        };
        let ordered = g_idx.iter().enumerate().all(|(k, &g)| g as usize == k / group);
        let w = GptqMatrix {
            bits,
            group,
            n_in,
            n_out,
            qweight: qweight.data,
            qzeros: qzeros.data,
            zw,
            scales: Scales { data: sv.data, dtype: sv.dtype, n: n_out },
            g_idx,
            ordered,
            n_groups,
            zeros,
            simd: simd_default(),
        };
        // Once per process: a model has this in many modules.
        static WARNED: AtomicBool = AtomicBool::new(false);
        if !v2 && !sym && bits != 3 && !WARNED.load(Ordering::Relaxed) && w.has_all_ones_zero() {
            WARNED.store(true, Ordering::Relaxed);
            eprintln!(
                "warning: {}: {} (and maybe other modules): GPTQ v1 zero points with every bit set (an asymmetric zero \
                 of 0 stored as -1): decoded as GPTQModel/transformers do (a carrying add); AutoGPTQ and vLLM kernels \
                 read these weights differently",
                m.file(),
                m.name("qzeros")
            );
        }
        Ok(w)
    }

    /// Whether some stored zero field is all ones (the v1 overflow case).
    fn has_all_ones_zero(&self) -> bool {
        let mask = (1u32 << self.bits) - 1;
        (0..self.n_groups).any(|g| (0..self.n_out).any(|n| field(|j| word(self.qzeros, g * self.zw + j), n, self.bits) == mask))
    }

    /// The zero point of group `g`, output `n`.
    #[inline]
    fn zero(&self, g: usize, n: usize) -> u32 {
        let row = g * self.zw;
        match self.zeros {
            Zeros::Plain => field(|j| word(self.qzeros, row + j), n, self.bits),
            Zeros::FieldAdd => (field(|j| word(self.qzeros, row + j), n, self.bits) + 1) & 7,
            Zeros::WordAdd(c) => field(|j| word(self.qzeros, row + j).wrapping_add(c), n, self.bits),
        }
    }

    /// Bits per code.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Decode columns `c0..c1` of row `n`; `val(g, q)` is the weight of code `q` in group `g`.
    fn decode_row(&self, n: usize, c0: usize, c1: usize, val: impl Fn(usize, u32) -> f32, out: &mut [f32]) {
        let b = self.bits;
        let col = |j: usize| word(self.qweight, j * self.n_out + n);
        if b == 3 {
            // 32 codes per three words.
            let mut k = c0;
            while k < c1 {
                let u = k / 32;
                let bits = col(3 * u) as u128 | (col(3 * u + 1) as u128) << 32 | (col(3 * u + 2) as u128) << 64;
                let end = (32 * u + 32).min(c1);
                for kk in k..end {
                    let q = ((bits >> (3 * (kk - 32 * u))) & 7) as u32;
                    out[kk - c0] = val(self.g_idx[kk] as usize, q);
                }
                k = end;
            }
        } else {
            let per = (32 / b) as usize;
            let mask = (1u32 << b) - 1;
            let mut k = c0;
            while k < c1 {
                let j = k / per;
                let w = col(j);
                let end = (per * j + per).min(c1);
                for kk in k..end {
                    let q = (w >> (b as usize * (kk - per * j))) & mask;
                    out[kk - c0] = val(self.g_idx[kk] as usize, q);
                }
                k = end;
            }
        }
    }

    /// Use the AVX2 path where the CPU has it (`on`, the default) or the scalar reference
    /// (`!on`); both give the same bits.
    pub fn with_simd(mut self, on: bool) -> Self {
        self.simd = on && simd_default();
        self
    }

    /// Decode columns `c0..c1` (any range) of row `n`. At up to 4 bits each group's 2^b
    /// possible weights are computed once (`(q − z)·s` rounded, the same arithmetic) and the
    /// codes look them up; at 8 bits each weight is computed. No heap allocation: ordered
    /// groups use a table on the stack, act-order a per-thread scratch table.
    fn decode(&self, n: usize, c0: usize, c1: usize, out: &mut [f32]) {
        let dt = self.scales.dtype;
        let l = 1usize << self.bits;
        if self.ordered && self.bits <= 4 {
            let mut k = c0;
            while k < c1 {
                let g = k / self.group;
                let end = ((g + 1) * self.group).min(c1);
                let (z, s) = (self.zero(g, n) as f32, self.scales.get(g, n));
                let lut: [f32; 16] = std::array::from_fn(|q| if q < l { round_to(dt, (q as f32 - z) * s) } else { 0.0 });
                #[allow(unused_mut)]
                let mut done = 0;
                #[cfg(target_arch = "x86_64")]
                if self.simd && self.bits == 4 && k % 8 == 0 {
                    let o = &mut out[k - c0..end - c0];
                    // SAFETY: `simd` is set only where AVX2 is available.
                    done = unsafe { super::packed_x86::gptq4_column(self.qweight, self.n_out, n, k / 8, &lut, o) };
                }
                #[cfg(target_arch = "aarch64")]
                if self.simd && self.bits == 4 && k % 8 == 0 {
                    done = super::packed_arm::gptq4_column(self.qweight, self.n_out, n, k / 8, &lut, &mut out[k - c0..end - c0]);
                }
                self.decode_row(n, k + done, end, |_, q| lut[q as usize], &mut out[k + done - c0..end - c0]);
                k = end;
            }
            return;
        }
        thread_local! {
            static TAB: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        TAB.with_borrow_mut(|tab| {
            tab.clear();
            if self.bits <= 4 {
                for g in 0..self.n_groups {
                    let (z, s) = (self.zero(g, n) as f32, self.scales.get(g, n));
                    tab.extend((0..l).map(|q| round_to(dt, (q as f32 - z) * s)));
                }
                self.decode_row(n, c0, c1, |g, q| tab[g * l + q as usize], out);
            } else {
                for g in 0..self.n_groups {
                    tab.extend([self.zero(g, n) as f32, self.scales.get(g, n)]);
                }
                self.decode_row(n, c0, c1, |g, q| round_to(dt, (q as f32 - tab[2 * g]) * tab[2 * g + 1]), out);
            }
        });
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

impl QuantWeight for GptqMatrix<'_> {
    fn n_in(&self) -> usize {
        self.n_in
    }
    fn n_out(&self) -> usize {
        self.n_out
    }
    fn format(&self) -> WeightFormat {
        WeightFormat::Gptq { bits: self.bits as u8, group: self.group }
    }
    fn byte_size(&self) -> usize {
        self.qweight.len() + self.qzeros.len() + self.scales.data.len() + 4 * self.g_idx.len()
    }
    fn decode_rows(&self, r0: usize, r1: usize, out: &mut [f32]) {
        for (n, row) in (r0..r1).zip(out.chunks_exact_mut(self.n_in)) {
            self.decode(n, 0, self.n_in, row);
        }
    }
    fn col_block(&self) -> usize {
        32
    }
    fn decode_cols(&self, r: usize, c0: usize, c1: usize, out: &mut [f32]) {
        self.decode(r, c0, c1, &mut out[..c1 - c0]);
    }
}

/// The object a key is read from: the module's dynamic override when it sets the key.
fn pick<'v>(over: &'v Option<Value>, qcfg: &'v Value, key: &str) -> &'v Value {
    match over {
        Some(o) if o.get(key).is_some() => o,
        _ => qcfg,
    }
}

/// GPTQModel's `dynamic` per-module overrides: the first pattern (in file order; `+:` or no
/// prefix positive, `-:` negative, matched at the start of the module name) that matches
/// `prefix` decides. A positive match returns its override object; a negative one means the
/// module is not quantized (an error here: it has a dense `weight` instead).
fn dynamic_override(m: &Module, qcfg: &Value) -> Result<Option<Value>, ModelError> {
    let Some(dynamic) = qcfg.get("dynamic").filter(|d| !d.is_null()) else {
        return Ok(None);
    };
    let Some(rules) = dynamic.as_object() else {
        return Err(m.key_err("dynamic", "is not an object of pattern → overrides"));
    };
    for (pat, over) in rules {
        let (neg, raw) = match pat.split_at_checked(2) {
            Some(("-:", r)) => (true, r),
            Some(("+:", r)) => (false, r),
            _ => (false, pat.as_str()),
        };
        let re = fancy_regex::Regex::new(&format!("^(?:{raw})"))
            .map_err(|e| m.key_err("dynamic", format!("pattern '{pat}' does not compile ({e})")))?;
        if re.is_match(m.prefix).unwrap_or(false) {
            if neg {
                return Err(m.err("qweight", format!("the module is excluded from quantization by the dynamic pattern '{pat}'")));
            }
            if !over.is_object() {
                return Err(m.key_err("dynamic", format!("the overrides of '{pat}' are not an object")));
            }
            return Ok(Some(over.clone()));
        }
    }
    Ok(None)
}
