//! Merging adapters into a model file (for LM Studio and anything that only takes one GGUF):
//! `W' = W + Σ scale_k · (alpha_k / r_k) · B_k·A_k` for every adapted weight, requantized to
//! its own type by default. Streaming: one tensor is decoded at a time (never the whole model);
//! untouched tensors are copied byte for byte; all metadata (tokenizer, chat template, …) is
//! kept and `general.name` says the model was merged. Split models are read through their
//! first shard and written as one file, atomically.

use std::path::Path;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::gguf::{GgufModel, GgufWriter, Value};
use crate::lora::{LoraSet, Target};
use crate::quant::{self, GgmlType};

/// What type merged (adapted) tensors get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeType {
    /// Each weight's own type.
    Same,
    /// One type for every merged weight (untouched tensors keep theirs).
    Fixed(GgmlType),
}

impl MergeType {
    /// Parse `same` or a type name that we can encode (`F16`, `Q8_0`, `Q4_K`, …).
    pub fn parse(s: &str) -> Result<Self> {
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
            _ => Err(Error::usage(format!("--type {s}: use same, F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K"))),
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

/// Merge `adapters` (each with its user scale) into the model `base` and write `out`.
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
    // Plan: every tensor with its output type.
    let infos: Vec<_> = base.tensor_infos().cloned().collect();
    let mut plan: Vec<(String, GgmlType, bool)> = Vec::with_capacity(infos.len());
    for info in &infos {
        let adapted = target_of(&info.name).is_some_and(|(il, t)| adapters.iter().any(|(set, _)| set.get(il, t).is_some()));
        let out_ty = match (adapted, ty) {
            (true, MergeType::Fixed(t)) => t,
            _ => info.ty,
        };
        if adapted && !out_ty.can_encode() {
            return Err(Error::tensor(&info.name, format!("cannot requantize to {out_ty} (no encoder); use --type Q8_0 or F16")));
        }
        w.add_tensor(&info.name, out_ty, &info.dims).map_err(|e| Error::tensor(&info.name, e))?;
        plan.push((info.name.clone(), out_ty, adapted));
    }
    if !plan.iter().any(|p| p.2) {
        return Err(Error::usage("no tensor of the model matched the adapters"));
    }
    let mut sink = w.create(out)?;
    let mut report = MergeReport::default();
    for (info, (name, out_ty, adapted)) in infos.iter().zip(&plan) {
        let view = base.tensor(name).ok_or_else(|| Error::tensor(name, "tensor vanished"))?;
        if !adapted {
            sink.write_tensor(view.data)?;
            report.copied += 1;
            continue;
        }
        let (il, t) = target_of(name).unwrap_or_else(|| unreachable!());
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
        let n_bytes = out_ty.row_bytes(n_in as u64).ok_or_else(|| Error::tensor(name, "row not a block multiple"))? as usize * n_out;
        let mut bytes = vec![0u8; n_bytes];
        quant::encode_par(*out_ty, &wf, &mut bytes).map_err(|e| Error::tensor(name, e))?;
        // How much of Δ = wf − w0 the requantized tensor still carries.
        let mut back = vec![0f32; n_in * n_out];
        quant::decode_par(*out_ty, &bytes, &mut back).map_err(|e| Error::tensor(name, e))?;
        let (de, ke) = (0..wf.len())
            .into_par_iter()
            .with_min_len(4096)
            .map(|i| {
                let d = (wf[i] - w0[i]) as f64;
                (d * d, (back[i] - w0[i]) as f64 * d)
            })
            .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        report.delta_energy += de;
        report.kept_energy += ke;
        sink.write_tensor(&bytes)?;
        report.merged += 1;
    }
    sink.finish()?;
    Ok(report)
}
