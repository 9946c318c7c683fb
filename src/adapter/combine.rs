//! Combine several LoRA adapters into one by concatenating their ranks.
//!
//! llama.cpp adds, for every adapter `i` loaded with user scale `s_i`, `s_i·α_i/r_i · B_i·A_i`
//! to a weight (`α_i` is the file's `adapter.lora.alpha`, `r_i` the rank of that weight's
//! tensor pair; `α = 0` means a factor of 1). One adapter whose pair is
//! `A = [A_1; A_2; …]` (rows stacked, rank `R = Σ r_i`) and `B = [c_1·B_1, c_2·B_2, …]` (columns
//! side by side) gives `B·A = Σ c_i·B_i·A_i`. The combined file stores `α = R` when every adapted
//! weight ends up with the same total rank `R` (so llama.cpp's factor `α/R` is exactly 1 and
//! `c_i = s_i·α_i/r_i`), else `α` = the largest total rank `R_max` and `c_i = s_i·α_i/r_i ·
//! R_t/R_max` for a weight of total rank `R_t`. Loaded with scale 1, the combined adapter applies
//! exactly the sum of the inputs' updates (up to f32 rounding of `c_i·B_i`); adapters may adapt
//! different weights (a weight adapted by only some inputs gets only their ranks).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::gguf_lora::{check_header, read_halves, write_adapter, AdapterError, BaseInfo};
use crate::error::{Error, Result};
use crate::gguf::{GgufFile, Value};
use crate::lora::{LoraPair, LoraSet, Target};
use crate::quant::GgmlType;

/// One input: a file and the user scale it is combined with.
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    /// The adapter file.
    pub path: PathBuf,
    /// The user scale (llama.cpp's `--lora-scaled` factor).
    pub scale: f32,
}

impl Input {
    /// Parse `A.gguf` (scale 1) or `A.gguf:SCALE`; a suffix that is not a number is part of the
    /// path.
    pub fn parse(spec: &str) -> Input {
        match spec.rsplit_once(':') {
            Some((p, s)) if !p.is_empty() => match s.parse::<f32>() {
                Ok(scale) => Input { path: p.into(), scale },
                Err(_) => Input { path: spec.into(), scale: 1.0 },
            },
            _ => Input { path: spec.into(), scale: 1.0 },
        }
    }
}

/// An adapter file read without a model: its pairs and what it says about its base.
#[derive(Clone, Debug)]
pub struct AdapterFile {
    /// The file.
    pub path: PathBuf,
    /// `general.architecture`.
    pub architecture: String,
    /// `general.base_model.0.name`, if present.
    pub base_name: Option<String>,
    /// `finetune.base_model.file`, if present.
    pub base_file: Option<String>,
    /// The pairs (as many layers as the highest adapted block + 1).
    pub set: LoraSet,
}

/// One input's contribution to a weight: input index, pair, coefficient `s_i·α_i/r_i`.
type Part<'a> = (usize, &'a LoraPair, f64);

/// Read a GGUF LoRA adapter without its base model: type checks, both halves of every pair,
/// consistent ranks; tensors of any decodable type are converted to f32.
pub fn read_file(path: &Path) -> Result<AdapterFile, AdapterError> {
    let f = GgufFile::open(path)?;
    let bad = |p: String| AdapterError::Invalid { file: path.into(), problem: p };
    check_header(&f, path)?;
    let architecture = f.architecture().ok_or_else(|| bad("no general.architecture".into()))?.to_string();
    let alpha = f.get("adapter.lora.alpha").and_then(Value::as_f32).unwrap_or(0.0);
    if !alpha.is_finite() {
        return Err(bad(format!("adapter.lora.alpha is {alpha}; it must be a finite number")));
    }
    let halves = read_halves(&f, path, None)?;
    let n_layer = halves.keys().map(|(il, _)| il + 1).max().unwrap_or(0);
    let mut layers: Vec<Vec<(Target, LoraPair)>> = vec![Vec::new(); n_layer];
    for ((il, t), [a, b]) in halves {
        let name = t.tensor_name(il);
        let (Some((da, a)), Some((db, b))) = (a, b) else {
            return Err(bad(format!("{name}: lora_a or lora_b is missing")));
        };
        let (n_in, r, n_out) = (da[0] as usize, da[1] as usize, db[1] as usize);
        if db[0] as usize != r || r == 0 {
            return Err(bad(format!("{name}: lora_a ne {da:?} and lora_b ne {db:?} have different ranks")));
        }
        layers[il].push((t, LoraPair { n_in, n_out, r, a, b }));
    }
    Ok(AdapterFile {
        path: path.into(),
        architecture,
        base_name: f.get_str("general.base_model.0.name").map(str::to_string),
        base_file: f.get_str("finetune.base_model.file").map(str::to_string),
        set: LoraSet { alpha, layers },
    })
}

/// Combine `(set, user scale)` pairs into one set whose update, applied with scale 1 the way
/// llama.cpp does (`α/r` per pair), equals the sum of the inputs' scaled updates. Pairs of the
/// same weight must have the same `n_in`/`n_out` (else `Err` naming the weight and inputs).
pub fn combine(inputs: &[(&LoraSet, f32)]) -> Result<LoraSet> {
    let n_layer = inputs.iter().map(|(s, _)| s.layers.len()).max().unwrap_or(0);
    // Per weight, the contributing (input index, pair, coefficient s_i·α_i/r_i).
    let mut parts: BTreeMap<(usize, Target), Vec<Part>> = BTreeMap::new();
    for (i, (set, s)) in inputs.iter().enumerate() {
        for (il, layer) in set.layers.iter().enumerate() {
            for (t, p) in layer {
                parts.entry((il, *t)).or_default().push((i, p, *s as f64 * set.scale(p) as f64));
            }
        }
    }
    let ranks: Vec<usize> = parts.values().map(|v| v.iter().map(|(_, p, _)| p.r).sum()).collect();
    let r_max = ranks.iter().copied().max().ok_or_else(|| Error::usage("the adapters have no pairs"))?;
    let same = ranks.iter().all(|&r| r == r_max);
    let mut layers: Vec<Vec<(Target, LoraPair)>> = vec![Vec::new(); n_layer];
    for ((il, t), v) in parts {
        let (n_in, n_out) = (v[0].1.n_in, v[0].1.n_out);
        if let Some((j, p, _)) = v.iter().find(|(_, p, _)| p.n_in != n_in || p.n_out != n_out) {
            return Err(Error::tensor(
                t.tensor_name(il),
                format!(
                    "input {} has n_in {n_in} × n_out {n_out}, input {} has {} × {} (adapters of different base models?)",
                    v[0].0 + 1,
                    j + 1,
                    p.n_in,
                    p.n_out
                ),
            ));
        }
        let r_t: usize = v.iter().map(|(_, p, _)| p.r).sum();
        let norm = if same { 1.0 } else { r_t as f64 / r_max as f64 };
        let mut a = Vec::with_capacity(r_t * n_in);
        for (_, p, _) in &v {
            a.extend_from_slice(&p.a);
        }
        let mut b = vec![0f32; n_out * r_t];
        let mut col = 0;
        for (_, p, c) in &v {
            let f = (c * norm) as f32;
            for o in 0..n_out {
                for j in 0..p.r {
                    b[o * r_t + col + j] = f * p.b[o * p.r + j];
                }
            }
            col += p.r;
        }
        layers[il].push((t, LoraPair { n_in, n_out, r: r_t, a, b }));
    }
    for l in &mut layers {
        l.sort_by_key(|(t, _)| *t);
    }
    Ok(LoraSet { alpha: r_max as f32, layers })
}

/// What [`combine_files`] wrote.
#[derive(Clone, Debug)]
pub struct Combined {
    /// The combined set as written (before storage-type rounding).
    pub set: LoraSet,
    /// Number of adapted weights.
    pub weights: usize,
    /// The inputs as read.
    pub inputs: Vec<AdapterFile>,
}

/// Read the inputs, check they belong together (same architecture; with `base`, every pair
/// fits the base's weights; without it, equal base-model names where both files record one),
/// combine them and write `out` (atomically) with storage type `ty`.
pub fn combine_files(inputs: &[Input], base: Option<&Path>, out: &Path, ty: GgmlType) -> Result<Combined, AdapterError> {
    let invalid = |file: &Path, problem: String| AdapterError::Invalid { file: file.into(), problem };
    if inputs.len() < 2 {
        return Err(invalid(out, "give at least two adapters to combine".into()));
    }
    let files = inputs.iter().map(|i| read_file(&i.path)).collect::<Result<Vec<_>, _>>()?;
    let first = &files[0];
    for f in &files[1..] {
        if f.architecture != first.architecture {
            return Err(invalid(
                &f.path,
                format!("adapter is for architecture '{}', {} is for '{}'", f.architecture, first.path.display(), first.architecture),
            ));
        }
    }
    let base_file = base.map(GgufFile::open).transpose()?;
    let info = match (&base_file, base) {
        (Some(g), Some(bp)) => {
            let arch = g.architecture().unwrap_or("");
            if arch != first.architecture {
                return Err(invalid(
                    &first.path,
                    format!("adapter is for architecture '{}', the base {} is '{arch}'", first.architecture, bp.display()),
                ));
            }
            for f in &files {
                check_fits(f, g)?;
            }
            BaseInfo::from_gguf(g)
        }
        _ => {
            for f in &files[1..] {
                let names = [(&first.base_name, &f.base_name), (&first.base_file, &f.base_file)];
                if let Some((a, b)) = names.iter().find_map(|(a, b)| Some((a.as_ref()?, b.as_ref()?)).filter(|(a, b)| a != b)) {
                    return Err(invalid(
                        &f.path,
                        format!(
                            "adapter records base model '{b}', {} records '{a}'; pass --model BASE.gguf to check both against the base instead",
                            first.path.display()
                        ),
                    ));
                }
            }
            BaseInfo { architecture: first.architecture.clone(), name: first.base_name.clone(), file_name: first.base_file.clone() }
        }
    };
    let pairs: Vec<(&LoraSet, f32)> = files.iter().zip(inputs).map(|(f, i)| (&f.set, i.scale)).collect();
    let set = combine(&pairs).map_err(|p| invalid(out, p.to_string()))?;
    let bs = ty.block_size();
    if let Some(r) = set.layers.iter().flatten().map(|(_, p)| p.r).find(|r| r % bs != 0) {
        return Err(invalid(
            out,
            format!("{ty} stores blocks of {bs} values, but a combined rank is {r}; use --adapter-type F32, F16 or BF16"),
        ));
    }
    write_adapter(out, &info, &set, ty)?;
    let weights = set.layers.iter().map(Vec::len).sum();
    Ok(Combined { set, weights, inputs: files })
}

/// Check every pair of `f` against the base weights' `[n_in, n_out]` and layer count.
fn check_fits(f: &AdapterFile, base: &GgufFile) -> Result<(), AdapterError> {
    for (il, layer) in f.set.layers.iter().enumerate() {
        for (t, p) in layer {
            let name = t.tensor_name(il);
            let w = base.tensor_info(&name).ok_or_else(|| AdapterError::Invalid {
                file: f.path.clone(),
                problem: format!("{name}: the base {} has no such weight", base.path().display()),
            })?;
            if w.dims.len() != 2 || w.dims[0] as usize != p.n_in || w.dims[1] as usize != p.n_out {
                return Err(AdapterError::Invalid {
                    file: f.path.clone(),
                    problem: format!("{name}: the pair is n_in {} × n_out {}, the base weight has ne {:?}", p.n_in, p.n_out, w.dims),
                });
            }
        }
    }
    Ok(())
}
