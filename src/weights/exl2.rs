//! EXL2 weights (exllamav2): mixed-bit GPTQ-style groups along a permuted input axis.
//!
//! Per Linear module `P` (`N` outputs × `K` inputs, `Np` = `N` rounded up to 32):
//! * `P.q_weight` I32 `[Σ qrows, Np]`: for each output column a sequence of groups; group `g`
//!   starts at word-row `qrow_g` and holds its `rows_g` (permuted) input rows as a
//!   little-endian `bits_g`-bit stream of unsigned values with zero point `2^(bits_g − 1)`;
//! * `P.q_groups` I16 `[2·ng]`: pairs (`bits_g`, `qrow_g`), bits in descending order
//!   (8, 6, 5, 4, 3, 2); `rows_g = (qrow_{g+1} − qrow_g)·32 / bits_g`, the last group taking
//!   the remaining `K − Σ rows`;
//! * `P.q_scale` I32 `[ng, Np/8]`: nibble `n % 8` of word `n / 8` is `qs − 1`;
//! * `P.q_scale_max` F16 `[ng]`;
//! * `P.q_invperm` I32 `[K]`: input `i` is quantized row `q_invperm[i]` (`P.q_perm`, if
//!   present, must be its inverse).
//!
//! Dequantization in exllamav2's order of f16 roundings (`reconstruct` in q_matrix.cu):
//! `m = f16(q_scale_max / 256)`, `s = f16(f16(qs²) · m)`, `W[n, i] = f16((q − z) · s)`.

use std::sync::Arc;

use half::f16;
use serde_json::Value as Json;

use super::bitstream;
use super::ctensors::{check, int_values};
use super::{QuantWeight, Weight, WeightFormat};
use crate::model::ModelError;
use crate::safetensors::{Dtype, TensorView};

/// Bit widths EXL2 groups use.
pub const BITS: [u32; 6] = [8, 6, 5, 4, 3, 2];

/// Where input `i`'s value lives in every column's stream.
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// Bit position in the column's word stream.
    pos: u32,
    /// Its group.
    group: u16,
    /// The group's bit width.
    bits: u8,
}

/// An EXL2 matrix read in place from the safetensors map.
#[derive(Clone, Debug)]
pub struct Exl2Matrix<'a> {
    n_in: usize,
    n_out: usize,
    /// Columns of `q_weight` (`n_out` rounded up to 32).
    width: usize,
    q_weight: &'a [u8],
    q_scale: &'a [u8],
    /// `f16(q_scale_max[g] / 256)` per group.
    scale_max: Vec<f16>,
    /// One entry per input (original order), with `q_invperm` applied.
    slots: Vec<Slot>,
    /// Bits stored, for the average bits per weight.
    stored_bits: usize,
}

impl Exl2Matrix<'_> {
    /// Average bits per weight over the groups (without scales).
    pub fn bits_per_weight(&self) -> f64 {
        self.stored_bits as f64 / self.n_in.max(1) as f64
    }

    /// The dequantized scale of group `g` in column `n`.
    fn scale(&self, g: usize, n: usize) -> f16 {
        let w = bitstream::word(self.q_scale, g * (self.width / 8), 1, n / 8);
        let qs = ((w >> (4 * (n % 8))) & 15) + 1;
        f16::from_f32(f16::from_f32((qs * qs) as f32).to_f32() * self.scale_max[g].to_f32())
    }

    fn decode_span(&self, n: usize, c0: usize, c1: usize, out: &mut [f32]) {
        let mut scales = vec![None; self.scale_max.len()];
        for (slot, o) in self.slots[c0..c1].iter().zip(out.iter_mut()) {
            let g = slot.group as usize;
            let s = *scales[g].get_or_insert_with(|| self.scale(g, n));
            let q = bitstream::value(self.q_weight, n, self.width, slot.pos as usize, slot.bits as u32) as i32;
            let d = q - (1 << (slot.bits - 1));
            // The f32 product of two f16 values is exact; one rounding to f16, as __hmul.
            *o = f16::from_f32(d as f32 * s.to_f32()).to_f32();
        }
    }
}

impl QuantWeight for Exl2Matrix<'_> {
    fn n_in(&self) -> usize {
        self.n_in
    }
    fn n_out(&self) -> usize {
        self.n_out
    }
    fn format(&self) -> WeightFormat {
        WeightFormat::Exl2
    }
    fn byte_size(&self) -> usize {
        self.q_weight.len() + self.q_scale.len() + 2 * self.scale_max.len() + 4 * self.n_in
    }
    fn col_block(&self) -> usize {
        32
    }
    fn decode_cols(&self, r: usize, c0: usize, c1: usize, out: &mut [f32]) {
        self.decode_span(r, c0, c1, out)
    }
}

/// Open the EXL2 Linear module `prefix` (`model.layers.0.self_attn.q_proj`): `qcfg` is
/// config.json's `quantization_config` (`quant_method: "exl2"`). Every tensor is checked
/// against `n_in`, `n_out` and the others (group rows summing to `n_in`, bit widths,
/// `q_invperm` a permutation) so that decoding never reads out of bounds.
pub fn open<'a>(
    get: &dyn Fn(&str) -> Option<TensorView<'a>>,
    prefix: &str,
    qcfg: &Json,
    n_in: usize,
    n_out: usize,
) -> Result<Weight<'a>, ModelError> {
    let qw_name = format!("{prefix}.q_weight");
    let q_weight = get(&qw_name);
    let file = q_weight.map_or_else(|| "the checkpoint".to_string(), |v| v.file.display().to_string());
    let method = qcfg.get("quant_method").and_then(Json::as_str).unwrap_or("");
    if method != "exl2" {
        return Err(ModelError::Key {
            file,
            key: "quantization_config".into(),
            problem: format!("quant_method is '{method}', not 'exl2'"),
        });
    }
    let err = |name: &str, problem: String| ModelError::Tensor { file: file.clone(), name: name.to_string(), problem };
    let need = |suffix: &str| {
        let name = format!("{prefix}.{suffix}");
        get(&name).ok_or_else(|| err(&name, "missing (an EXL2 module needs q_weight, q_groups, q_scale, q_scale_max, q_invperm)".into()))
    };
    let q_weight = q_weight
        .ok_or_else(|| err(&qw_name, "missing (an EXL2 module needs q_weight, q_groups, q_scale, q_scale_max, q_invperm)".into()))?;
    let (q_groups, q_scale, q_scale_max, q_invperm) = (need("q_groups")?, need("q_scale")?, need("q_scale_max")?, need("q_invperm")?);

    let width = n_out.div_ceil(32) * 32;
    if q_weight.shape.len() != 2 || q_weight.shape[1] != width {
        return Err(err(q_weight.name, format!("shape {:?}, expected [qrows, {width}] ({n_out} outputs padded to 32)", q_weight.shape)));
    }
    let qrows = q_weight.shape[0];
    check(&q_weight, &[Dtype::I32], &[qrows, width], &file)?;
    if q_groups.shape.len() != 1 || q_groups.shape[0] % 2 != 0 || q_groups.shape[0] == 0 {
        return Err(err(q_groups.name, format!("shape {:?}, expected [2·groups]", q_groups.shape)));
    }
    let ng = q_groups.shape[0] / 2;
    check(&q_groups, &[Dtype::I16, Dtype::U16, Dtype::I32], &[2 * ng], &file)?;
    check(&q_scale, &[Dtype::I32], &[ng, width / 8], &file)?;
    check(&q_scale_max, &[Dtype::F16], &[ng], &file)?;
    check(&q_invperm, &[Dtype::I32, Dtype::I16, Dtype::I64], &[n_in], &file)?;

    // Groups: (bits, first qrow); the I16 entries are read as exllamav2's uint16.
    let raw = int_values(&q_groups, &file)?;
    let groups: Vec<(u32, usize)> = raw
        .chunks_exact(2)
        .map(|p| (if q_groups.dtype == Dtype::I16 { p[0] as u16 as u32 } else { p[0] as u32 }, p[1] as u16 as usize))
        .collect();
    // Rows of each group and the stream position of each permuted row.
    let mut rows_pos: Vec<(u32, u16, u8)> = Vec::with_capacity(n_in);
    let mut stored_bits = 0usize;
    for (g, &(bits, qrow)) in groups.iter().enumerate() {
        let at = format!("group {g} (bits {bits}, first qrow {qrow})");
        if !BITS.contains(&bits) {
            return Err(err(q_groups.name, format!("{at}: {bits} bits is not an EXL2 width (8, 6, 5, 4, 3, 2)")));
        }
        if g > 0 && groups[g - 1].0 < bits {
            return Err(err(
                q_groups.name,
                format!("{at}: bit widths must not increase (exllamav2 decodes 8, 6, 5, 4, 3, 2 in that order)"),
            ));
        }
        if g == 0 && qrow != 0 {
            return Err(err(q_groups.name, format!("{at}: the first group must start at qrow 0")));
        }
        let next = groups.get(g + 1).map_or(qrows, |n| n.1);
        if next <= qrow || next > qrows {
            return Err(err(
                q_groups.name,
                format!("{at}: the next group starts at qrow {next}; qrows must increase within the {qrows} of {}", q_weight.name),
            ));
        }
        let span = next - qrow;
        let rows = if g + 1 < groups.len() {
            if span * 32 % bits as usize != 0 {
                return Err(err(q_groups.name, format!("{at}: {span} qrows do not hold a whole number of {bits}-bit rows")));
            }
            span * 32 / bits as usize
        } else {
            let rest = n_in.checked_sub(rows_pos.len()).filter(|&r| r > 0);
            let rest = rest.ok_or_else(|| {
                err(q_groups.name, format!("{at}: the groups before the last already hold {} rows of {n_in}", rows_pos.len()))
            })?;
            if bitstream::words_for(rest, bits as usize) != span {
                return Err(err(
                    q_groups.name,
                    format!(
                        "{at}: the last group's {rest} rows need {} qrows, {} has {span}",
                        bitstream::words_for(rest, bits as usize),
                        q_weight.name
                    ),
                ));
            }
            rest
        };
        if rows_pos.len() + rows > n_in {
            return Err(err(q_groups.name, format!("{at}: the groups hold more than the {n_in} input rows")));
        }
        for r in 0..rows {
            rows_pos.push(((qrow * 32 + r * bits as usize) as u32, g as u16, bits as u8));
        }
        stored_bits += rows * bits as usize;
    }
    if rows_pos.len() != n_in {
        return Err(err(q_groups.name, format!("the groups hold {} rows, the module has {n_in} inputs", rows_pos.len())));
    }
    if qrows * 32 > u32::MAX as usize || ng > u16::MAX as usize + 1 {
        return Err(err(q_weight.name, "too large".into()));
    }

    // The permutation: input i is quantized row invperm[i].
    let invperm = int_values(&q_invperm, &file)?;
    let mut seen = vec![false; n_in];
    for (i, &p) in invperm.iter().enumerate() {
        if p < 0 || p as usize >= n_in {
            return Err(err(q_invperm.name, format!("entry {i} is {p}, outside 0..{n_in}")));
        }
        if std::mem::replace(&mut seen[p as usize], true) {
            return Err(err(q_invperm.name, format!("entry {i} repeats row {p} (not a permutation)")));
        }
    }
    if let Some(perm) = get(&format!("{prefix}.q_perm")) {
        check(&perm, &[Dtype::I32, Dtype::I16, Dtype::I64], &[n_in], &file)?;
        let perm = int_values(&perm, &file)?;
        if let Some(i) = (0..n_in).find(|&i| perm[invperm[i] as usize] != i as i64) {
            return Err(err(&format!("{prefix}.q_perm"), format!("is not the inverse of q_invperm (q_perm[q_invperm[{i}]] ≠ {i})")));
        }
    }
    let slots = invperm
        .iter()
        .map(|&p| {
            let (pos, group, bits) = rows_pos[p as usize];
            Slot { pos, group, bits }
        })
        .collect();
    // exllamav2 scales q_scale_max by 1/256 in f16 at load (make_q_matrix).
    let scale_max = f16_values(q_scale_max.data).iter().map(|m| f16::from_f32(m.to_f32() / 256.0)).collect();
    Ok(Arc::new(Exl2Matrix { n_in, n_out, width, q_weight: q_weight.data, q_scale: q_scale.data, scale_max, slots, stored_bits }))
}

fn f16_values(bytes: &[u8]) -> Vec<f16> {
    bytes.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]])).collect()
}
