//! Merging adapters into a model file (for LM Studio and anything that only takes one GGUF):
//! `W' = W + Σ scale_k · (alpha_k / r_k) · B_k·A_k` for every adapted weight, stored by default
//! in the smallest type that keeps ≥ 99% of that weight's update (its own type where that holds,
//! else Q8_0, else F16). Streaming: one tensor is decoded at a time (never the whole model);
//! untouched tensors are copied byte for byte; all metadata (tokenizer, chat template, …) is
//! kept and `general.name` says the model was merged. Split models are read through their
//! first shard and written as one file, atomically.

use std::path::Path;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::gguf::{GgufModel, GgufWriter, TensorInfo, Value};
use crate::lora::{LoraSet, Target};
use crate::quant::{self, GgmlType};

/// What type merged (adapted) tensors get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeType {
    /// Per tensor, the smallest type that carries at least [`AUTO_RETAIN`] of its update: the
    /// weight's own type where that holds, otherwise Q8_0, otherwise F16.
    Auto,
    /// Each weight's own type.
    Same,
    /// One type for every merged weight (untouched tensors keep theirs).
    Fixed(GgmlType),
}

/// The fraction of a tensor's update that `--type auto` keeps at least.
pub const AUTO_RETAIN: f64 = 0.99;

impl MergeType {
    /// Parse `auto`, `same` or a type name that we can encode (`F16`, `Q8_0`, `Q4_K`, …).
    pub fn parse(s: &str) -> Result<Self> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(MergeType::Auto);
        }
        if s.eq_ignore_ascii_case("same") {
            return Ok(MergeType::Same);
        }
        let name = s.to_ascii_uppercase();
        let name = match name.as_str() {
            "Q4_K_M" | "Q4_K_S" => "Q4_K",
            "Q5_K_M" | "Q5_K_S" => "Q5_K",
            n => n,
        };
        match GgmlType::from_name(name) {
            Some(t) if t.can_encode() => Ok(MergeType::Fixed(t)),
            _ => Err(Error::usage(format!("--type {s}: use auto, same, F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K"))),
        }
    }
}

/// What a merge did.
#[derive(Debug, Default)]
pub struct MergeReport {
    /// Tensors that received a LoRA update.
    pub merged: usize,
    /// Tensors copied unchanged.
    pub copied: usize,
    /// Σ‖Δ‖² over merged tensors: the energy of the intended update `scale·B·A`.
    pub delta_energy: f64,
    /// Σ⟨Q(W+Δ) − W, Δ⟩: the part of the update that survived requantization (projection).
    pub kept_energy: f64,
    /// Merged tensors whose type changed: (from, to, count), in first-seen order.
    pub type_changes: Vec<(GgmlType, GgmlType, usize)>,
    /// Bytes of tensor data in the base model.
    pub base_bytes: u64,
    /// Bytes of tensor data written.
    pub out_bytes: u64,
}

impl MergeReport {
    /// Fraction of the adapters' update that survived requantization (1 = all; a low value
    /// means the update is smaller than the type's quantization step: use a finer `--type`).
    pub fn retained(&self) -> f64 {
        if self.delta_energy > 0.0 {
            self.kept_energy / self.delta_energy
        } else {
            1.0
        }
    }

    fn count_change(&mut self, from: GgmlType, to: GgmlType) {
        if from == to {
            return;
        }
        match self.type_changes.iter_mut().find(|c| c.0 == from && c.1 == to) {
            Some(c) => c.2 += 1,
            None => self.type_changes.push((from, to, 1)),
        }
    }
}

fn target_of(name: &str) -> Option<(usize, Target)> {
    let rest = name.strip_prefix("blk.")?;
    let (il, proj) = rest.split_once('.')?;
    let t = match proj {
        "attn_q.weight" => Target::Q,
        "attn_k.weight" => Target::K,
        "attn_v.weight" => Target::V,
        "attn_output.weight" => Target::O,
        "ffn_gate.weight" => Target::Gate,
        "ffn_up.weight" => Target::Up,
        "ffn_down.weight" => Target::Down,
        _ => return None,
    };
    Some((il.parse().ok()?, t))
}

/// `W` decoded and `W + Σ Δ_k` for the adapted tensor `info` (layer `il`, target `t`).
fn merged_weights(base: &GgufModel, info: &TensorInfo, il: usize, t: Target, adapters: &[(LoraSet, f32)]) -> Result<(Vec<f32>, Vec<f32>)> {
    let name = &info.name;
    let view = base.tensor(name).ok_or_else(|| Error::tensor(name, "tensor vanished"))?;
    let n_in = info.dims[0] as usize;
    let n_out = (info.n_elements() as usize) / n_in;
    let mut w0 = vec![0f32; n_in * n_out];
    quant::decode_par(info.ty, view.data, &mut w0).map_err(|e| Error::tensor(name, e))?;
    let mut wf = w0.clone();
    for (set, user_scale) in adapters {
        let Some(p) = set.get(il, t) else { continue };
        if p.n_in != n_in || p.n_out != n_out {
            return Err(Error::tensor(name, format!("adapter shape [{}, {}] does not fit [{n_in}, {n_out}]", p.n_in, p.n_out)));
        }
        let s = user_scale * set.scale(p);
        let r = p.r;
        // W[o, i] += s · Σ_j B[o, j] · A[j, i]
        wf.par_chunks_mut(n_in).enumerate().for_each(|(o, row)| {
            for j in 0..r {
                let b = s * p.b[o * r + j];
                if b != 0.0 {
                    row.iter_mut().zip(&p.a[j * n_in..(j + 1) * n_in]).for_each(|(w, &a)| *w += b * a);
                }
            }
        });
    }
    Ok((w0, wf))
}

/// `W + Δ` encoded as `ty`, with ‖Δ‖² and ⟨Q(W+Δ) − W, Δ⟩ (how much of Δ the encoded tensor carries).
fn encode_measure(name: &str, ty: GgmlType, n_in: usize, w0: &[f32], wf: &[f32]) -> Result<(Vec<u8>, f64, f64)> {
    let n_out = wf.len() / n_in;
    let n_bytes = ty.row_bytes(n_in as u64).ok_or_else(|| Error::tensor(name, "row not a block multiple"))? as usize * n_out;
    let mut bytes = vec![0u8; n_bytes];
    quant::encode_par(ty, wf, &mut bytes).map_err(|e| Error::tensor(name, e))?;
    let mut back = vec![0f32; wf.len()];
    quant::decode_par(ty, &bytes, &mut back).map_err(|e| Error::tensor(name, e))?;
    let (de, ke) = (0..wf.len())
        .into_par_iter()
        .with_min_len(4096)
        .map(|i| {
            let d = (wf[i] - w0[i]) as f64;
            (d * d, (back[i] - w0[i]) as f64 * d)
        })
        .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    Ok((bytes, de, ke))
}

/// The types `--type auto` tries for a weight of type `own` with rows of `n_in`, smallest first.
fn auto_candidates(own: GgmlType, n_in: usize) -> Vec<GgmlType> {
    let mut c = Vec::new();
    if own.can_encode() && own.row_bytes(n_in as u64).is_some() {
        c.push(own);
    }
    for t in [GgmlType::Q8_0, GgmlType::F16] {
        if !c.contains(&t) && t.row_bytes(n_in as u64).is_some() {
            c.push(t);
        }
    }
    if c.is_empty() {
        c.push(GgmlType::F16);
    }
    c
}

/// Merge `adapters` (each with its user scale) into the model `base` and write `out`.
///
/// With [`MergeType::Auto`] every adapted tensor is merged twice: once to choose its type
/// (the header, written first, needs all types) and once to write it, so memory stays one
/// tensor at a time.
pub fn merge(base: &GgufModel, adapters: &[(LoraSet, f32)], out: &Path, ty: MergeType) -> Result<MergeReport> {
    let main = base.main();
    let mut w = GgufWriter::new();
    for (k, v) in &main.metadata {
        if k.starts_with("split.") {
            continue;
        }
        w.set(k.clone(), v.clone());
    }
    let name = main.get_str("general.name").unwrap_or("model");
    w.set("general.name", Value::String(format!("{name} (merged LoRA)")));
    merge_with(base, adapters, out, ty, w)
}

/// [`merge`] with the metadata already set in `w` (the caller chooses `general.name`).
pub fn merge_with(base: &GgufModel, adapters: &[(LoraSet, f32)], out: &Path, ty: MergeType, mut w: GgufWriter) -> Result<MergeReport> {
    // Plan: every tensor with its output type.
    let infos: Vec<_> = base.tensor_infos().cloned().collect();
    let mut plan: Vec<(GgmlType, Option<(usize, Target)>)> = Vec::with_capacity(infos.len());
    for info in &infos {
        let target = target_of(&info.name).filter(|&(il, t)| adapters.iter().any(|(set, _)| set.get(il, t).is_some()));
        let out_ty = match (target, ty) {
            (None, _) | (Some(_), MergeType::Same) => info.ty,
            (Some(_), MergeType::Fixed(t)) => t,
            (Some((il, t)), MergeType::Auto) => {
                let n_in = info.dims[0] as usize;
                let cands = auto_candidates(info.ty, n_in);
                let (w0, wf) = merged_weights(base, info, il, t, adapters)?;
                let mut chosen = *cands.last().unwrap_or(&GgmlType::F16);
                for &c in &cands {
                    let (_, de, ke) = encode_measure(&info.name, c, n_in, &w0, &wf)?;
                    if de <= 0.0 || ke >= AUTO_RETAIN * de {
                        chosen = c;
                        break;
                    }
                }
                chosen
            }
        };
        if target.is_some() && !out_ty.can_encode() {
            return Err(Error::tensor(&info.name, format!("cannot requantize to {out_ty} (no encoder); use --type Q8_0 or F16")));
        }
        w.add_tensor(&info.name, out_ty, &info.dims).map_err(|e| Error::tensor(&info.name, e))?;
        plan.push((out_ty, target));
    }
    if !plan.iter().any(|p| p.1.is_some()) {
        return Err(Error::usage("no tensor of the model matched the adapters"));
    }
    let mut sink = w.create(out)?;
    let mut report = MergeReport::default();
    for (info, &(out_ty, target)) in infos.iter().zip(&plan) {
        report.base_bytes += info.n_bytes();
        let Some((il, t)) = target else {
            let view = base.tensor(&info.name).ok_or_else(|| Error::tensor(&info.name, "tensor vanished"))?;
            sink.write_tensor(view.data)?;
            report.copied += 1;
            report.out_bytes += view.data.len() as u64;
            continue;
        };
        let (w0, wf) = merged_weights(base, info, il, t, adapters)?;
        let (bytes, de, ke) = encode_measure(&info.name, out_ty, info.dims[0] as usize, &w0, &wf)?;
        report.delta_energy += de;
        report.kept_energy += ke;
        report.out_bytes += bytes.len() as u64;
        report.count_change(info.ty, out_ty);
        sink.write_tensor(&bytes)?;
        report.merged += 1;
    }
    sink.finish()?;
    Ok(report)
}
