//! Training checkpoints: one GGUF file per checkpoint (`checkpoint-000120.gguf`), written
//! atomically (temp file + rename + folder sync), holding the LoRA weights (named as in an adapter, so a
//! checkpoint also loads as an adapter in this engine), AdamW moments (`adam_m.*`, `adam_v.*`),
//! the optimizer step, the data position, the run's fingerprint and the metrics so far.
//! Data order and LoRA init are functions of the seed, so these are all the state a resumed run
//! needs to continue on exactly the same trajectory. A checksum of the tensor bytes
//! (`finetune.checkpoint.checksum`) lets [`load_newest`] skip a damaged file for the previous
//! one; [`prune`] keeps the newest few.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::adapter::gguf_lora::parse_name;
use crate::error::{Error, Result};
use crate::gguf::{GgufFile, GgufWriter, Value, ValueType};
use crate::lora::{LoraPair, LoraSet};
use crate::model::Model;
use crate::quant::{self, GgmlType};
use crate::train::optim::{AdamW, AdamWConfig};

const VERSION: u32 = 1;

/// Where the data stream stands: epoch and index of the next sequence in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataPos {
    /// Epoch of the next sequence.
    pub epoch: u64,
    /// Index of the next sequence within its epoch's order.
    pub index: u64,
}

/// One line of the metrics log.
#[derive(Clone, Debug, PartialEq)]
pub struct StepMetrics {
    /// 1-based step.
    pub step: u64,
    /// Mean loss over the trained tokens of the step.
    pub loss: f64,
    /// Validation loss, when evaluated at this step.
    pub val_loss: Option<f64>,
    /// Learning rate used.
    pub lr: f32,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Tokens (all positions) per second in this step.
    pub tok_per_s: f64,
    /// Resident memory in bytes, when known.
    pub rss: Option<u64>,
    /// The first task metric (`--eval-metric`), when evaluated at this step: a rate or accuracy
    /// in [0, 1], or the mean NLL for `nll`.
    pub task: Option<f64>,
}

/// The best task-metric evaluation so far and the evaluations since without improvement
/// (`--keep-best`, `--early-stop`; kept across `--resume`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BestSoFar {
    /// Step and value of the best evaluation.
    pub best: Option<(u64, f64)>,
    /// Evaluations after it that did not improve on it.
    pub no_improve: u64,
}

/// Everything needed to continue a run.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// LoRA weights.
    pub lora: LoraSet,
    /// Optimizer state (its `step` is the number of completed steps).
    pub adam: AdamW,
    /// Data position of the next step.
    pub pos: DataPos,
    /// Steps of the whole run (the LR schedule depends on it).
    pub total_steps: u64,
    /// Metrics of the completed steps.
    pub history: Vec<StepMetrics>,
    /// Options that must match on resume (rank, alpha, targets, lr, seed, data, …).
    pub fingerprint: String,
    /// Task-metric best so far and the no-improvement count.
    pub best: BestSoFar,
}

/// FNV-1a over 8-byte words (then the tail bytes): cheap, and any changed byte changes it.
#[derive(Clone, Copy)]
struct Checksum(u64);

impl Checksum {
    const PRIME: u64 = 0x0000_0100_0000_01B3;

    fn new() -> Self {
        Checksum(0xCBF2_9CE4_8422_2325)
    }

    fn update(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let x = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
            self.0 = (self.0 ^ x).wrapping_mul(Self::PRIME);
        }
        for &b in words.remainder() {
            self.0 = (self.0 ^ b as u64).wrapping_mul(Self::PRIME);
        }
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn arr_f64(v: impl Iterator<Item = f64>) -> Value {
    Value::Array(ValueType::F64, v.map(Value::F64).collect())
}

/// Write `ck` as `dir/checkpoint-<step>.gguf` (creating `dir`); returns the path.
pub fn save(dir: &Path, ck: &Checkpoint, model: &Model) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Msg(format!("creating {}: {e}", dir.display())))?;
    let path = dir.join(format!("checkpoint-{:06}.gguf", ck.adam.step));
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String(model.cfg.arch.name().into()));
    w.set("general.type", Value::String("adapter".into()));
    w.set("adapter.type", Value::String("lora".into()));
    w.set("adapter.lora.alpha", Value::F32(ck.lora.alpha));
    w.set("finetune.checkpoint.version", Value::U32(VERSION));
    w.set("finetune.checkpoint.fingerprint", Value::String(ck.fingerprint.clone()));
    w.set("finetune.checkpoint.step", Value::U64(ck.adam.step));
    w.set("finetune.checkpoint.total_steps", Value::U64(ck.total_steps));
    w.set("finetune.checkpoint.epoch", Value::U64(ck.pos.epoch));
    w.set("finetune.checkpoint.index", Value::U64(ck.pos.index));
    let c = ck.adam.cfg;
    w.set(
        "finetune.checkpoint.adam",
        Value::Array(ValueType::F32, [c.beta1, c.beta2, c.eps, c.weight_decay].into_iter().map(Value::F32).collect()),
    );
    let h = &ck.history;
    w.set("finetune.metrics.step", Value::Array(ValueType::U64, h.iter().map(|m| Value::U64(m.step)).collect()));
    w.set("finetune.metrics.loss", arr_f64(h.iter().map(|m| m.loss)));
    w.set("finetune.metrics.val_loss", arr_f64(h.iter().map(|m| m.val_loss.unwrap_or(f64::NAN))));
    w.set("finetune.metrics.lr", arr_f64(h.iter().map(|m| m.lr as f64)));
    w.set("finetune.metrics.grad_norm", arr_f64(h.iter().map(|m| m.grad_norm)));
    w.set("finetune.metrics.tok_per_s", arr_f64(h.iter().map(|m| m.tok_per_s)));
    w.set("finetune.metrics.task", arr_f64(h.iter().map(|m| m.task.unwrap_or(f64::NAN))));
    if let Some((step, value)) = ck.best.best {
        w.set("finetune.checkpoint.best_step", Value::U64(step));
        w.set("finetune.checkpoint.best_value", Value::F64(value));
    }
    w.set("finetune.checkpoint.no_improve", Value::U64(ck.best.no_improve));
    let mut tensors: Vec<(String, Vec<u64>, &[f32])> = Vec::new();
    for (prefix, set) in [("", &ck.lora), ("adam_m.", &ck.adam.m), ("adam_v.", &ck.adam.v)] {
        for (il, layer) in set.layers.iter().enumerate() {
            for (t, p) in layer {
                let name = t.tensor_name(il);
                tensors.push((format!("{prefix}{name}.lora_a"), vec![p.n_in as u64, p.r as u64], &p.a));
                tensors.push((format!("{prefix}{name}.lora_b"), vec![p.r as u64, p.n_out as u64], &p.b));
            }
        }
    }
    let mut sum = Checksum::new();
    for (name, dims, data) in &tensors {
        w.add_tensor(name, GgmlType::F32, dims).map_err(|e| Error::format(&path, format!("{name}: {e}")))?;
        sum.update(&f32_bytes(data));
    }
    w.set("finetune.checkpoint.checksum", Value::U64(sum.0));
    let mut sink = w.create(&path)?;
    for (_, _, data) in &tensors {
        sink.write_tensor(&f32_bytes(data))?;
    }
    sink.finish()?;
    Ok(path)
}

/// The step of a checkpoint file name `checkpoint-<step>.gguf`.
fn step_of(name: &str) -> Option<u64> {
    name.strip_prefix("checkpoint-")?.strip_suffix(".gguf")?.parse().ok()
}

/// The `checkpoint-*.gguf` files in `dir`, newest (highest step) first.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::usage(format!("--resume {}: {e}", dir.display())))?;
    let mut v: Vec<(u64, PathBuf)> =
        rd.flatten().filter_map(|e| step_of(&e.file_name().to_string_lossy()).map(|s| (s, e.path()))).collect();
    v.sort_by(|a, b| b.cmp(a));
    Ok(v)
}

/// The newest `checkpoint-*.gguf` in `dir`, or `dir` itself when it is a file.
pub fn latest(dir: &Path) -> Result<PathBuf> {
    if dir.is_file() {
        return Ok(dir.to_path_buf());
    }
    list(dir)?.into_iter().next().map(|(_, p)| p).ok_or_else(|| no_checkpoint(dir))
}

fn no_checkpoint(dir: &Path) -> Error {
    Error::usage(format!("--resume {}: no checkpoint-*.gguf in it", dir.display()))
}

/// Newer checkpoints that did not load, and why.
pub type Skipped = Vec<(PathBuf, Error)>;

/// Load `dir` when it is a file; otherwise the newest checkpoint in it that loads and
/// validates, with the newer ones that did not and why (the caller warns about them).
pub fn load_newest(dir: &Path) -> Result<(PathBuf, Checkpoint, Skipped)> {
    if dir.is_file() {
        return Ok((dir.to_path_buf(), load(dir)?, Vec::new()));
    }
    let all = list(dir)?;
    if all.is_empty() {
        return Err(no_checkpoint(dir));
    }
    let mut bad = Vec::new();
    for (_, p) in all {
        match load(&p) {
            Ok(ck) => return Ok((p, ck, bad)),
            Err(e) => bad.push((p, e)),
        }
    }
    let list: Vec<String> = bad.iter().map(|(_, e)| format!("  {e}")).collect();
    Err(Error::usage(format!("--resume {}: no checkpoint in it validates:\n{}", dir.display(), list.join("\n"))))
}

/// Delete all but the newest `keep` checkpoints in `dir` (0 keeps all); `newest` (the one just
/// written) is always kept. Returns the deleted files.
pub fn prune(dir: &Path, keep: usize, newest: &Path) -> Vec<PathBuf> {
    if keep == 0 {
        return Vec::new();
    }
    let Ok(all) = list(dir) else { return Vec::new() };
    let is_newest = |p: &Path| p.file_name() == newest.file_name();
    let mut kept = 1; // `newest`
    let mut removed = Vec::new();
    for (_, p) in all {
        if is_newest(&p) {
            continue;
        }
        if kept < keep {
            kept += 1;
        } else if std::fs::remove_file(&p).is_ok() {
            removed.push(p);
        }
    }
    removed
}

/// Remove stale temp files of checkpoints (`checkpoint-*.gguf.tmp<PID>` of a process that is
/// not running) from `dir`; returns them.
pub fn remove_stale_temps(dir: &Path) -> Vec<PathBuf> {
    crate::util::outpath::remove_stale_temps(dir, &|base| step_of(base).is_some())
}

/// Read a checkpoint written by [`save`].
pub fn load(path: &Path) -> Result<Checkpoint> {
    let f = GgufFile::open(path)?;
    let bad = |p: &str| Error::format(path, format!("not a finetune checkpoint ({p})"));
    let ver = f.get_u64("finetune.checkpoint.version").ok_or_else(|| bad("no finetune.checkpoint.version"))?;
    if ver != VERSION as u64 {
        return Err(bad(&format!("version {ver}, this build reads {VERSION}")));
    }
    let u = |k: &str| f.get_u64(&format!("finetune.checkpoint.{k}")).ok_or_else(|| bad(&format!("missing {k}")));
    let step = u("step")?;
    let total_steps = u("total_steps")?;
    let pos = DataPos { epoch: u("epoch")?, index: u("index")? };
    let fingerprint = f.get_str("finetune.checkpoint.fingerprint").unwrap_or("").to_string();
    let adam_vals: Vec<f32> = f
        .get("finetune.checkpoint.adam")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_f32).collect())
        .unwrap_or_default();
    let [beta1, beta2, eps, weight_decay] = adam_vals[..] else { return Err(bad("finetune.checkpoint.adam")) };
    let alpha = f.get("adapter.lora.alpha").and_then(Value::as_f32).ok_or_else(|| bad("adapter.lora.alpha"))?;
    if let Some(want) = f.get_u64("finetune.checkpoint.checksum") {
        let mut sum = Checksum::new();
        for info in &f.tensors {
            sum.update(f.view(info).data);
        }
        if sum.0 != want {
            return Err(Error::format(path, "damaged checkpoint: the tensor data does not match its checksum"));
        }
    }
    // Tensors → three sets.
    type Halves = [Option<(Vec<u64>, Vec<f32>)>; 2];
    let mut parts: [BTreeMap<(usize, crate::lora::Target), Halves>; 3] = Default::default();
    for info in &f.tensors {
        let (k, name) = if let Some(n) = info.name.strip_prefix("adam_m.") {
            (1, n)
        } else if let Some(n) = info.name.strip_prefix("adam_v.") {
            (2, n)
        } else {
            (0, info.name.as_str())
        };
        let (il, t, is_a) = parse_name(name).ok_or_else(|| bad(&format!("unexpected tensor {}", info.name)))?;
        if info.ty != GgmlType::F32 || info.dims.len() != 2 {
            return Err(bad(&format!("tensor {} is not a 2-D F32 tensor", info.name)));
        }
        let mut data = vec![0f32; info.n_elements() as usize];
        quant::decode(info.ty, f.view(info).data, &mut data).map_err(|e| bad(&e.to_string()))?;
        parts[k].entry((il, t)).or_default()[usize::from(!is_a)] = Some((info.dims.clone(), data));
    }
    let n_layer = parts[0].keys().map(|(il, _)| il + 1).max().ok_or_else(|| bad("no LoRA tensors"))?;
    let mut sets: Vec<LoraSet> = Vec::new();
    for part in parts {
        let mut layers: Vec<Vec<_>> = vec![Vec::new(); n_layer];
        for ((il, t), [a, b]) in part {
            let (Some((da, a)), Some((db, b))) = (a, b) else { return Err(bad("a lora_a/lora_b half is missing")) };
            let (n_in, r, n_out) = (da[0] as usize, da[1] as usize, db[1] as usize);
            if db[0] as usize != r || il >= n_layer {
                return Err(bad("inconsistent LoRA shapes"));
            }
            layers[il].push((t, LoraPair { n_in, n_out, r, a, b }));
        }
        sets.push(LoraSet { alpha, layers });
    }
    let v = sets.pop().unwrap_or_else(|| unreachable!());
    let m = sets.pop().unwrap_or_else(|| unreachable!());
    let lora = sets.pop().unwrap_or_else(|| unreachable!());
    if m.layers.iter().map(Vec::len).ne(lora.layers.iter().map(Vec::len))
        || v.layers.iter().map(Vec::len).ne(lora.layers.iter().map(Vec::len))
    {
        return Err(bad("optimizer state does not match the LoRA tensors"));
    }
    let arr = |k: &str| -> Vec<f64> {
        f.get(&format!("finetune.metrics.{k}"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|v| match v {
                        Value::F64(x) => *x,
                        other => other.as_u64().map_or(f64::NAN, |x| x as f64),
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (steps, loss, val, lr, gn, tps) = (arr("step"), arr("loss"), arr("val_loss"), arr("lr"), arr("grad_norm"), arr("tok_per_s"));
    let n = steps.len();
    // Checkpoints of runs without a task metric have no task array.
    let task = Some(arr("task")).filter(|t| !t.is_empty()).unwrap_or_else(|| vec![f64::NAN; n]);
    if [loss.len(), val.len(), lr.len(), gn.len(), tps.len(), task.len()].iter().any(|&l| l != n) {
        return Err(bad("metrics arrays differ in length"));
    }
    let history = (0..n)
        .map(|i| StepMetrics {
            step: steps[i] as u64,
            loss: loss[i],
            val_loss: (!val[i].is_nan()).then_some(val[i]),
            lr: lr[i] as f32,
            grad_norm: gn[i],
            tok_per_s: tps[i],
            rss: None,
            task: (!task[i].is_nan()).then_some(task[i]),
        })
        .collect();
    let best_value = match f.get("finetune.checkpoint.best_value") {
        Some(Value::F64(x)) => Some(*x),
        Some(v) => v.as_f32().map(f64::from),
        None => None,
    };
    let best = BestSoFar {
        best: f.get_u64("finetune.checkpoint.best_step").zip(best_value),
        no_improve: f.get_u64("finetune.checkpoint.no_improve").unwrap_or(0),
    };
    let adam = AdamW { cfg: AdamWConfig { beta1, beta2, eps, weight_decay }, m, v, step };
    Ok(Checkpoint { lora, adam, pos, total_steps, history, fingerprint, best })
}
