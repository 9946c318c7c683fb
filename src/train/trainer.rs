//! The training loop: LoRA init, micro-batches with gradient accumulation, loss normalised by
//! the number of trained tokens in each optimizer step, global-norm clipping, AdamW with a
//! warmup + decay schedule, validation, metrics, checkpoints and resume.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::backend::cpu::{Cpu, Matmul};
use crate::error::{Error, Result};
use crate::lora::dropout::Dropout;
use crate::lora::{init_pair, LoraSet, SplitMix64, Target};
use crate::model::Model;
use crate::train::block::{SeqView, StepOptions, Trainable};
use crate::train::checkpoint::{self, BestSoFar, Checkpoint, DataPos, StepMetrics};
use crate::train::data::{Dataset, Sequence};
use crate::train::optim::{clip_global_norm, AdamW, AdamWConfig, Schedule};

/// Set by a stop signal (SIGINT, SIGTERM, SIGHUP): the loop saves a checkpoint and returns.
pub use crate::util::signals::INTERRUPTED;

/// Everything that shapes a run.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// LoRA rank.
    pub rank: usize,
    /// LoRA alpha.
    pub alpha: f32,
    /// rsLoRA: scale α/√r instead of α/r.
    pub rslora: bool,
    /// LoRA dropout probability on the adapter inputs (training only), in `[0, 1)`.
    pub dropout: f32,
    /// Bytes of block intermediates kept between forward and backward instead of recomputed
    /// (speed for memory; no effect on the numbers).
    pub keep_bytes: u64,
    /// Adapted projections.
    pub targets: Vec<Target>,
    /// Peak learning rate.
    pub lr: f32,
    /// Decay after warmup.
    pub schedule: Schedule,
    /// Linear warmup steps.
    pub warmup: u64,
    /// AdamW β, ε, weight decay.
    pub adam: AdamWConfig,
    /// Sequences per optimizer step.
    pub grad_accum: usize,
    /// Clip the global gradient norm to this (0 = off).
    pub max_grad_norm: f32,
    /// Passes over the data (ignored when `steps` is set).
    pub epochs: f64,
    /// Optimizer steps (overrides `epochs`).
    pub steps: Option<u64>,
    /// Seed of LoRA init and data order.
    pub seed: u64,
    /// Validation every N steps (0 = only at the end).
    pub eval_every: u64,
    /// Checkpoint every N steps (0 = never, except on a stop signal).
    pub save_every: u64,
    /// Checkpoints kept in `checkpoint_dir` (the newest ones; 0 = all).
    pub keep_checkpoints: usize,
    /// Where checkpoints go.
    pub checkpoint_dir: PathBuf,
    /// Metrics JSON lines file.
    pub log: Option<PathBuf>,
    /// Print progress to stderr.
    pub progress: bool,
    /// Stop (after saving a checkpoint) with an error when the resident memory exceeds this
    /// many bytes (`--max-ram`), checked after every step.
    pub max_rss: Option<u64>,
    /// The frozen-weight products `x·Wᵀ` (`--matmul`): f32, or Q8 activations with integer dots
    /// (validation losses too).
    pub matmul: Matmul,
}

/// Scores a LoRA: one value per task metric.
pub type EvalFn<'h> = Box<dyn FnMut(&LoraSet) -> Result<Vec<f64>> + 'h>;
/// Gets the LoRA, step and value of a new best evaluation.
pub type OnBestFn<'h> = Box<dyn FnMut(&LoraSet, u64, f64) -> Result<()> + 'h>;

/// A task metric evaluated during training (`--eval-data`, `--eval-metric`): at the validation
/// steps (`eval_every`, and the last step) `eval` scores the LoRA being trained; the first value
/// is the metric that decides the best step. A strictly better value is an improvement (ties
/// keep the earlier step). `on_best` gets every new best (with `--keep-best` it writes the
/// adapter); after `early_stop` evaluations in a row without improvement the run stops.
pub struct TaskEval<'h> {
    /// The metric specs, in order (the first decides).
    pub names: Vec<String>,
    /// Whether lower values of the first metric are better (`nll`).
    pub lower_is_better: bool,
    /// Scores the LoRA: one value per metric.
    pub eval: EvalFn<'h>,
    /// Called with the LoRA, step and value of every new best.
    pub on_best: OnBestFn<'h>,
    /// Stop after this many evaluations without improvement (0 = never).
    pub early_stop: u64,
}

impl TaskEval<'_> {
    fn improves(&self, value: f64, best: Option<(u64, f64)>) -> bool {
        match best {
            None => value.is_finite(),
            Some((_, b)) => {
                if self.lower_is_better {
                    value < b
                } else {
                    value > b
                }
            }
        }
    }
}

/// What a run returns.
#[derive(Debug)]
pub struct TrainResult {
    /// The trained adapter.
    pub lora: LoraSet,
    /// Per-step metrics of this process (and of the checkpoint it resumed from).
    pub history: Vec<StepMetrics>,
    /// Whether the run stopped early on a stop signal (a checkpoint was saved).
    pub interrupted: bool,
    /// Steps of the whole run (`history.last().step` of them are done).
    pub total_steps: u64,
    /// The best task-metric evaluation (step, value) and the no-improvement count.
    pub best: BestSoFar,
    /// Whether `early_stop` ended the run.
    pub early_stopped: bool,
}

/// The stored alpha for the requested scaling: rsLoRA's α/√r is written as alpha' = α·√r so
/// that llama.cpp's alpha'/r equals it.
pub fn stored_alpha(alpha: f32, rank: usize, rslora: bool) -> f32 {
    if rslora {
        alpha * (rank as f32).sqrt()
    } else {
        alpha
    }
}

/// LoRA pairs for every layer and target, initialised from `seed` (A Kaiming-uniform, B zero).
pub fn init_lora(model: &Model, targets: &[Target], rank: usize, alpha: f32, seed: u64) -> LoraSet {
    let mut rng = SplitMix64(seed ^ 0x4C6F_5241);
    let layers = (0..model.cfg.n_layer)
        .map(|il| {
            let mut ts = targets.to_vec();
            ts.sort();
            ts.into_iter()
                .map(|t| {
                    let w = model.weight(il, t);
                    (t, init_pair(w.n_in(), w.n_out(), rank, &mut rng))
                })
                .collect()
        })
        .collect();
    LoraSet { alpha, layers }
}

/// Resident set size of this process (Linux), in bytes.
pub fn rss_bytes() -> Option<u64> {
    crate::util::proc::rss_bytes()
}

fn view(s: &Sequence) -> SeqView<'_> {
    let segmented = s.segments.last().is_some_and(|&g| g > 0);
    SeqView { tokens: &s.tokens, labels: &s.labels, positions: &s.positions, segments: if segmented { Some(&s.segments) } else { None } }
}

/// Mean validation loss over `seqs` (None when there is nothing to score).
pub fn evaluate(model: &Model, lora: &LoraSet, seqs: &[Sequence]) -> Result<Option<f64>> {
    evaluate_on(&Trainable::new(model), lora, seqs)
}

/// [`evaluate`] on a given training backend (the run's `--matmul`).
pub fn evaluate_on(tr: &Trainable, lora: &LoraSet, seqs: &[Sequence]) -> Result<Option<f64>> {
    let (mut sum, mut n) = (0.0, 0usize);
    for s in seqs {
        let (l, c) = tr.loss(lora, &view(s))?;
        sum += l;
        n += c;
    }
    Ok((n > 0).then(|| sum / n as f64))
}

/// On resume, drop the metrics-log lines of steps after the checkpoint (a run that stopped
/// after its last checkpoint logged steps that the resumed run repeats), atomically.
fn keep_logged_steps(path: &Path, last: u64) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let step_of = |l: &str| serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v["step"].as_u64());
    let kept: String = text.lines().filter(|l| step_of(l).is_some_and(|s| s <= last)).map(|l| format!("{l}\n")).collect();
    if kept.len() == text.len() {
        return Ok(());
    }
    crate::util::outpath::write_atomic(path, kept.as_bytes())
}

/// Optimizer steps a run makes.
pub fn total_steps(opts: &TrainOptions, seqs_per_epoch: usize) -> u64 {
    let per_epoch = seqs_per_epoch.div_ceil(opts.grad_accum.max(1)) as f64;
    opts.steps.unwrap_or_else(|| (opts.epochs * per_epoch).ceil().max(1.0) as u64)
}

fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// Train. `resume`: a checkpoint to continue from (its options must match). Checkpoints are
/// written to `opts.checkpoint_dir` every `save_every` steps and on a stop signal (then the
/// run returns early with `interrupted` set); only the newest `keep_checkpoints` are kept.
pub fn train(
    model: &Model,
    data: &Dataset,
    opts: &TrainOptions,
    resume: Option<Checkpoint>,
    mut task: Option<&mut TaskEval>,
) -> Result<TrainResult> {
    if opts.grad_accum == 0 {
        return Err(Error::Usage("--grad-accum must be at least 1".into()));
    }
    if data.train.is_empty() {
        return Err(Error::Usage("no training samples".into()));
    }
    if !(0.0..1.0).contains(&opts.dropout) {
        return Err(Error::Usage(format!("--dropout {} is outside [0, 1)", opts.dropout)));
    }
    let mut epoch_seqs = data.epoch_sequences(0);
    let seqs_per_epoch = epoch_seqs.len();
    let total = total_steps(opts, seqs_per_epoch);
    let alpha = stored_alpha(opts.alpha, opts.rank, opts.rslora);
    let targets: Vec<&str> = opts.targets.iter().map(|t| t.short()).collect();
    let fingerprint = format!(
        "rank={} alpha={} rslora={} dropout={} targets={} lr={} schedule={:?} warmup={} adam={:?} grad_accum={} max_grad_norm={} seed={} seq_len={} train_samples={} train_tokens={} train_trained_tokens={} seqs_per_epoch={seqs_per_epoch}",
        opts.rank, opts.alpha, opts.rslora, opts.dropout, targets.join(","), opts.lr, opts.schedule, opts.warmup, opts.adam,
        opts.grad_accum, opts.max_grad_norm, opts.seed, data.seq_len(), data.train.len(), data.stats.tokens,
        data.train.iter().map(|s| s.n_trained()).sum::<usize>()
    );
    // Only a non-default --matmul enters the fingerprint (f32 runs keep their checkpoints).
    let fingerprint = match opts.matmul {
        Matmul::F32 => fingerprint,
        m => format!("{fingerprint} matmul={}", m.name()),
    };
    let (mut lora, mut adam, mut pos, mut history, start_step, mut best) = match resume {
        Some(ck) => {
            if ck.fingerprint != fingerprint {
                return Err(Error::Usage(format!(
                    "the checkpoint belongs to a different run:\n  checkpoint: {}\n  this run:   {fingerprint}\nresume with the same data and options",
                    ck.fingerprint
                )));
            }
            if ck.total_steps != total {
                return Err(Error::Usage(format!(
                    "the checkpoint was made for a run of {} steps, this run has {total}: use the same data and options",
                    ck.total_steps
                )));
            }
            let step = ck.adam.step;
            (ck.lora, ck.adam, ck.pos, ck.history, step, ck.best)
        }
        None => {
            let lora = init_lora(model, &opts.targets, opts.rank, alpha, opts.seed);
            let adam = AdamW::new(opts.adam, &lora);
            (lora, adam, DataPos::default(), Vec::new(), 0, BestSoFar::default())
        }
    };
    if pos.epoch != 0 {
        epoch_seqs = data.epoch_sequences(pos.epoch);
    }
    let val_seqs = data.val_sequences();
    let tr = Trainable::on(Cpu::with_matmul(opts.matmul), model);
    let mut grads = tr.zero_grads(&lora);
    if let (Some(p), true) = (&opts.log, start_step > 0) {
        keep_logged_steps(p, start_step)?;
    }
    let mut log = match &opts.log {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(start_step > 0)
                .write(true)
                .truncate(start_step == 0)
                .open(p)
                .map_err(|e| Error::io(p, e))?,
        ),
        None => None,
    };
    let started = Instant::now();
    let live = opts.progress && std::io::IsTerminal::is_terminal(&std::io::stderr());
    // On a terminal: a live bar; otherwise (a pipe, a log file) one plain line per step.
    let bar = live.then(|| progress_bar(total, start_step));
    let mut status = String::from("starting");
    let mut smoothed: Option<f64> = history.last().map(|h| h.loss);
    let mut interrupted = false;
    let mut early_stopped = false;
    for step in start_step..total {
        let t0 = Instant::now();
        // This step's sequences (a step may run over an epoch boundary).
        let mut owned: Vec<Sequence> = Vec::with_capacity(opts.grad_accum);
        for _ in 0..opts.grad_accum {
            if pos.index as usize >= epoch_seqs.len() {
                pos = DataPos { epoch: pos.epoch + 1, index: 0 };
                epoch_seqs = data.epoch_sequences(pos.epoch);
            }
            owned.push(epoch_seqs[pos.index as usize].clone());
            pos.index += 1;
        }
        let n_trained: usize = owned.iter().map(|s| s.labels.iter().filter(|&&l| l >= 0).count()).sum();
        let n_tokens: usize = owned.iter().map(Sequence::len).sum();
        grads.clear();
        let mut loss_sum = 0.0;
        if n_trained > 0 {
            let scale = 1.0 / n_trained as f32;
            for (k, s) in owned.iter().enumerate() {
                if let Some(b) = &bar {
                    // Which micro-batch of this step is running (a step can take minutes).
                    b.set_message(format!("{status} | sequence {}/{} of step {} ({} tokens)", k + 1, owned.len(), step + 1, s.len()));
                }
                let drop = Dropout::for_micro_batch(opts.dropout, opts.seed, step, k as u64);
                let (l, _) = tr
                    .forward_backward_with(
                        &lora,
                        Some(&mut grads),
                        &view(s),
                        scale,
                        StepOptions { dropout: drop, keep_bytes: opts.keep_bytes },
                    )
                    .map_err(|e| Error::Train(format!("step {}: {e}", step + 1)))?;
                loss_sum += l;
            }
        }
        let loss = if n_trained > 0 { loss_sum / n_trained as f64 } else { 0.0 };
        if !loss.is_finite() {
            return Err(Error::Train(format!(
                "loss became {loss} at step {}: stopping (the last checkpoint in {} is kept); try a lower --lr",
                step + 1,
                opts.checkpoint_dir.display()
            )));
        }
        let grad_norm = clip_global_norm(&tr.backend, &mut grads, opts.max_grad_norm);
        if !grad_norm.is_finite() {
            return Err(Error::Train(format!("gradient norm became {grad_norm} at step {}: stopping; try a lower --lr", step + 1)));
        }
        let lr = opts.schedule.lr(opts.lr, step, total, opts.warmup);
        adam.update_on(&tr.backend, &mut lora, &grads, lr);
        let done = step + 1;
        // Throughput of the training step alone: validation below is not part of it.
        let secs = t0.elapsed().as_secs_f64();
        let eval_now = (opts.eval_every > 0 && done % opts.eval_every == 0) || done == total;
        let val_loss = if !val_seqs.is_empty() && eval_now { evaluate_on(&tr, &lora, &val_seqs)? } else { None };
        let mut task_values: Option<Vec<f64>> = None;
        let mut new_best = false;
        if let (Some(t), true) = (task.as_deref_mut(), eval_now) {
            let vals = (t.eval)(&lora).map_err(|e| Error::Train(format!("task evaluation at step {done}: {e}")))?;
            let v = vals.first().copied().unwrap_or(f64::NAN);
            if t.improves(v, best.best) {
                best = BestSoFar { best: Some((done, v)), no_improve: 0 };
                (t.on_best)(&lora, done, v)?;
                new_best = true;
            } else {
                best.no_improve += 1;
                early_stopped = t.early_stop > 0 && best.no_improve >= t.early_stop && done < total;
            }
            task_values = Some(vals);
        }
        let m = StepMetrics {
            step: done,
            loss,
            val_loss,
            lr,
            grad_norm,
            tok_per_s: n_tokens as f64 / secs.max(1e-9),
            rss: rss_bytes(),
            task: task_values.as_ref().and_then(|v| v.first().copied()),
        };
        if let Some(f) = &mut log {
            let mut line = serde_json::json!({
                "step": m.step, "loss": m.loss, "val_loss": m.val_loss, "lr": m.lr,
                "grad_norm": m.grad_norm, "tok_per_s": m.tok_per_s, "rss": m.rss,
            });
            if let (Some(t), Some(vals)) = (task.as_deref(), &task_values) {
                let ev: serde_json::Map<String, serde_json::Value> =
                    t.names.iter().zip(vals).map(|(n, v)| (n.clone(), serde_json::json!(v))).collect();
                line["eval"] = serde_json::Value::Object(ev);
                line["best_step"] = serde_json::json!(best.best.map(|b| b.0));
            }
            writeln!(f, "{line}").map_err(|e| Error::Msg(format!("writing the metrics log: {e}")))?;
        }
        smoothed = Some(match smoothed {
            Some(s) => 0.9 * s + 0.1 * loss,
            None => loss,
        });
        if opts.progress {
            let el = started.elapsed().as_secs_f64();
            let eta = el / (done - start_step) as f64 * (total - done) as f64;
            let epoch_f = pos.epoch as f64 + pos.index as f64 / seqs_per_epoch.max(1) as f64;
            let mut val = val_loss.map(|v| format!(" | val {v:.4}")).unwrap_or_default();
            if let (Some(t), Some(vals)) = (task.as_deref(), &task_values) {
                for (n, v) in t.names.iter().zip(vals) {
                    val += &if n == "nll" { format!(" | {n} {v:.4}") } else { format!(" | {n} {:.1}%", 100.0 * v) };
                }
                if new_best {
                    val += " (best)";
                }
            }
            status = format!(
                "epoch {epoch_f:.2} | loss {:.4} (avg {:.4}){val} | lr {lr:.2e} | {:.0} tok/s | ETA {} | RSS {} MiB",
                loss,
                smoothed.unwrap_or(loss),
                m.tok_per_s,
                fmt_secs(eta),
                m.rss.map_or(0, |r| r >> 20)
            );
            match &bar {
                Some(b) => {
                    b.set_position(done);
                    b.set_message(status.clone());
                    if val_loss.is_some() || task_values.is_some() {
                        b.println(format!("step {done}/{total} | {status}"));
                    }
                }
                None => eprintln!("step {done}/{total} | {status}"),
            }
        }
        history.push(m);
        let over_ram = opts.max_rss.and_then(|limit| crate::util::proc::rss_bytes().filter(|&rss| rss > limit).map(|rss| (rss, limit)));
        // A stop signal during the last step changes nothing: the run is complete.
        let stop = (INTERRUPTED.load(Ordering::SeqCst) && done < total) || over_ram.is_some();
        let mut saved = None;
        if (opts.save_every > 0 && done % opts.save_every == 0) || stop {
            let ck = Checkpoint {
                lora: lora.clone(),
                adam: adam.clone(),
                pos,
                total_steps: total,
                history: history.clone(),
                fingerprint: fingerprint.clone(),
                best,
            };
            let path = checkpoint::save(&opts.checkpoint_dir, &ck, model)?;
            checkpoint::prune(&opts.checkpoint_dir, opts.keep_checkpoints, &path);
            match (&bar, opts.progress) {
                (Some(b), _) => b.println(format!("checkpoint: {}", path.display())),
                (None, true) => eprintln!("checkpoint: {}", path.display()),
                (None, false) => {}
            }
            saved = Some(path);
        }
        if let Some((rss, limit)) = over_ram {
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            return Err(Error::Train(format!(
                "resident memory {} exceeds --max-ram {} after step {done}: stopped; checkpoint {} (resume with --resume {} and a higher --max-ram, or lower --seq-len / --keep-activations)",
                crate::train::plan::human(rss),
                crate::train::plan::human(limit),
                saved.as_ref().map_or_else(|| "?".into(), |p| p.display().to_string()),
                opts.checkpoint_dir.display()
            )));
        }
        if stop {
            interrupted = true;
            break;
        }
        if early_stopped {
            break;
        }
    }
    if let Some(b) = bar {
        // Leave the last status as a plain line.
        b.finish_and_clear();
        eprintln!("step {}/{total} | {status}", history.last().map_or(0, |h| h.step));
    }
    Ok(TrainResult { lora, history, interrupted, total_steps: total, best, early_stopped })
}

/// The terminal progress bar: steps done of the run, with the status line as its message.
fn progress_bar(total: u64, done: u64) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
    let style = indicatif::ProgressStyle::with_template("{spinner} step {pos}/{len} [{bar:20.cyan/blue}] {wide_msg}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
    b.set_style(style);
    b.set_position(done);
    b.enable_steady_tick(std::time::Duration::from_millis(250));
    b
}

/// The default adapter path: `<model stem>-<data stem>-lora.gguf` in the current directory.
pub fn default_out(model: &Path, data: &Path) -> PathBuf {
    let stem = |p: &Path| p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "x".into());
    PathBuf::from(format!("{}-{}-lora.gguf", stem(model), stem(data)))
}
