//! `finetune --model M --data D`: LoRA training.

use std::path::{Path, PathBuf};

use finetune::adapter::gguf_lora::write_adapter_with;
use finetune::chat::{ChatError, ChatTemplate};
use finetune::eval::{load_items, run_config, EvalOptions, Item, Metric, Metrics, Summary};
use finetune::generate::SamplerConfig;
use finetune::gguf::{GgufFile, Value};
use finetune::lora::Target;
use finetune::quant::GgmlType;
use finetune::train::checkpoint;
use finetune::train::data::{DataOptions, Dataset, Format, Problem};
use finetune::train::optim::{AdamWConfig, Schedule};
use finetune::train::plan::{parse_bytes, plan};
use finetune::train::plot::write_svg;
use finetune::train::trainer::{default_out, train, TaskEval, TrainOptions};
use finetune::util::{outpath, signals};
use finetune::{Error, Result};

/// Training options (the top-level command).
#[derive(clap::Args, Debug, Default)]
pub struct TrainArgs {
    /// The base model: a GGUF file (weights stay quantized and memory-mapped) or a Hugging
    /// Face directory (config.json + safetensors, memory-mapped).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Training data: JSON lines or a JSON array of prompt/response, Alpaca, Dolly, chat
    /// ({"messages": [...]}) or raw {"text"} records.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Output adapter (GGUF LoRA); default `<model>-<data>-lora.gguf`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Record format (auto, prompt-response, alpaca, dolly, chat, text).
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// LoRA targets: q,k,v,o,gate,up,down (or all, attn, mlp).
    #[arg(long, default_value = "q,k,v,o,gate,up,down")]
    pub targets: String,
    /// LoRA rank.
    #[arg(long, default_value_t = 16)]
    pub rank: usize,
    /// LoRA alpha (scale alpha/rank).
    #[arg(long, default_value_t = 32.0)]
    pub alpha: f32,
    /// LoRA dropout probability on the adapter input (PEFT's lora_dropout; training only).
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f32,
    /// rsLoRA scaling alpha/sqrt(rank).
    #[arg(long)]
    pub rslora: bool,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f32,
    /// LR schedule after warmup: cosine, linear or constant.
    #[arg(long, default_value = "cosine")]
    pub lr_schedule: String,
    /// Warmup steps.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// AdamW beta1.
    #[arg(long, default_value_t = 0.9)]
    pub beta1: f32,
    /// AdamW beta2.
    #[arg(long, default_value_t = 0.999)]
    pub beta2: f32,
    /// AdamW epsilon.
    #[arg(long, default_value_t = 1e-8)]
    pub adam_eps: f32,
    /// AdamW decoupled weight decay.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Sequences per optimizer step (gradient accumulation; batch size is 1 sequence).
    #[arg(long, default_value_t = 8)]
    pub grad_accum: usize,
    /// Clip the global gradient norm (0 = off).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f32,
    /// Passes over the training data.
    #[arg(long, default_value_t = 1.0)]
    pub epochs: f64,
    /// Optimizer steps (overrides --epochs).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Maximum tokens per sequence (longer samples are truncated and counted).
    #[arg(long, default_value_t = 512)]
    pub seq_len: usize,
    /// Pack short samples into one sequence (no attention across samples).
    #[arg(long)]
    pub pack: bool,
    /// Also train on prompt tokens (default: responses only).
    #[arg(long)]
    pub train_on_prompt: bool,
    /// System prompt for every conversation.
    #[arg(long)]
    pub system: Option<String>,
    /// Chat template override (Jinja file).
    #[arg(long)]
    pub chat_template: Option<PathBuf>,
    /// Normalise the text before tokenizing: nfkc, arabic (strip tashkeel U+064B–U+0652, superscript
    /// alef, tatweel; أ إ آ ٱ → ا), arabic+yaa (also ى → ي), arabic+haa (also ة → ه), or several
    /// joined by '+'. Give `finetune eval` the same value.
    #[arg(long, value_name = "nfkc|arabic[+yaa][+haa]")]
    pub normalize: Option<String>,
    /// Skip malformed records (counted) instead of stopping at the first.
    #[arg(long)]
    pub skip_bad_lines: bool,
    /// Hold out this fraction of the data for validation.
    #[arg(long, default_value_t = 0.0)]
    pub val_split: f32,
    /// Validation data file (instead of --val-split).
    #[arg(long)]
    pub val_data: Option<PathBuf>,
    /// Evaluate the validation loss every N steps (0 = at the end only).
    #[arg(long, default_value_t = 0)]
    pub eval_every: u64,
    /// Held-out records for a task metric during training (as `finetune eval --data`): scored
    /// with the LoRA being trained, greedy, every --eval-every steps and at the end.
    #[arg(long, value_name = "held.jsonl")]
    pub eval_data: Option<PathBuf>,
    /// Task metric on --eval-data (repeatable; as `finetune eval --metric`); the first one
    /// decides --keep-best and --early-stop.
    #[arg(long, value_name = "METRIC")]
    pub eval_metric: Vec<String>,
    /// Score only the first K records of --eval-data.
    #[arg(long, value_name = "K")]
    pub eval_limit: Option<usize>,
    /// Tokens to generate at most per --eval-data record.
    #[arg(long, default_value_t = 256)]
    pub eval_max_tokens: usize,
    /// Labels for --eval-metric choice, comma-separated (default: the distinct references).
    #[arg(long, value_name = "a,b,c")]
    pub eval_choices: Option<String>,
    /// Keep the adapter of the best evaluation of the first --eval-metric in --out (written
    /// when it improves; ties keep the earlier step; the end of the run does not replace it).
    #[arg(long)]
    pub keep_best: bool,
    /// Stop after N evaluations in a row without improvement of the first --eval-metric.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub early_stop: u64,
    /// Seed of LoRA init and data order (same seed + data + threads ⇒ same adapter bytes).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Save a checkpoint every N steps (0 = only when stopped by SIGINT/SIGTERM/SIGHUP).
    #[arg(long, default_value_t = 0)]
    pub save_every: u64,
    /// Keep only the newest N checkpoints in the checkpoint directory (0 = keep all).
    #[arg(long, default_value_t = 3)]
    pub keep_checkpoints: usize,
    /// Checkpoint directory (default `<out>.ckpt/`).
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Continue from a checkpoint file, or the newest checkpoint in a directory that validates
    /// (a damaged newer one is skipped with a warning).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Metrics log (one JSON line per step).
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Refuse to start when the planned peak memory exceeds this (e.g. 6G); the kept
    /// intermediates (--keep-activations) shrink first to fit it.
    #[arg(long)]
    pub max_ram: Option<String>,
    /// Memory for keeping the last blocks' intermediates between forward and backward instead
    /// of recomputing them (faster steps; 0 = recompute every block; same results either way).
    #[arg(long, default_value = "192M")]
    pub keep_activations: String,
    /// The frozen-weight products x·Wᵀ and dY·W: `f32`, or `q8` (8-bit integer dots: activations,
    /// gradients and weights rounded to 8 bits per 32 values; ≈2.5× the multiply rate at 7B
    /// shapes with AVX-512 VNNI — measured on SmolLM2: LoRA gradient 12% rel. L2 from f32's
    /// (cosine 0.993), loss 3e-2 of 4.58; straight-through backward). `auto` (default): q8 when the
    /// model's block weights hold ≥ 1 B parameters (7B: 2.2× faster steps), else f32.
    #[arg(long, value_name = "auto|f32|q8", default_value = "auto")]
    pub matmul: String,
    /// Adapter storage type: F32, F16, BF16, Q8_0.
    #[arg(long, default_value = "F32")]
    pub adapter_type: String,
    /// Less output.
    #[arg(long)]
    pub quiet: bool,
}

pub fn parse_format(s: &str) -> Result<Format> {
    Ok(match s {
        "auto" => Format::Auto,
        "prompt-response" | "pairs" => Format::PromptResponse,
        "alpaca" => Format::Alpaca,
        "dolly" => Format::Dolly,
        "chat" | "messages" => Format::Chat,
        "text" | "raw" => Format::Text,
        _ => return Err(Error::usage(format!("unknown --format '{s}' (auto, prompt-response, alpaca, dolly, chat, text)"))),
    })
}

/// Run training.
pub fn run(a: TrainArgs) -> Result<()> {
    let (Some(model_path), Some(data_path)) = (a.model.clone(), a.data.clone()) else {
        return Err(Error::usage("training needs --model M.gguf and --data D.jsonl (or a subcommand; see --help)"));
    };
    super::checks::train_numbers(&a)?;
    let adapter_type = GgmlType::from_name(&a.adapter_type.to_ascii_uppercase())
        .filter(|t| finetune::adapter::gguf_lora::STORAGE_TYPES.contains(t))
        .ok_or_else(|| Error::usage(format!("--adapter-type {} is not one of F32, F16, BF16, Q8_0", a.adapter_type)))?;
    let targets = Target::parse_list(&a.targets)?;
    if !a.matmul.trim().eq_ignore_ascii_case("auto") {
        super::parse_matmul(&a.matmul)?; // a bad value fails before the model loads
    }
    let schedule = Schedule::parse(&a.lr_schedule)?;
    let max_ram = a.max_ram.as_deref().map(parse_bytes).transpose()?;
    let mut keep_bytes = if a.keep_activations.trim() == "0" { 0 } else { parse_bytes(&a.keep_activations)? };
    let block = adapter_type.block_size();
    if a.rank % block != 0 {
        return Err(Error::usage(format!(
            "--adapter-type {adapter_type} stores blocks of {block} values along the rank: --rank {} is not a multiple of {block} \
             (use --rank {} or --adapter-type F16)",
            a.rank,
            a.rank.div_ceil(block) * block
        )));
    }
    let out = a.out.clone().unwrap_or_else(|| default_out(&model_path, &data_path));
    let svg = out.with_extension("loss.svg");
    let checkpoint_dir = a.checkpoint_dir.clone().unwrap_or_else(|| {
        let mut s = out.as_os_str().to_owned();
        s.push(".ckpt");
        PathBuf::from(s)
    });
    // From here a stop signal lets the current step finish, then saves.
    signals::install().map_err(|e| Error::Msg(format!("installing the signal handlers: {e}")))?;
    let resume = match &a.resume {
        Some(dir) => {
            let (path, ck, bad) = checkpoint::load_newest(dir)?;
            for (p, e) in bad {
                eprintln!("warning: skipping the checkpoint {} (it does not validate: {e})", p.display());
            }
            Some((path, ck))
        }
        None => None,
    };
    let norm = finetune::normalize::Normalize::parse(a.normalize.as_deref().unwrap_or("none"))?;
    let task = task_items(&a, &norm)?;
    if let (true, Some((_, ck))) = (a.keep_best, &resume) {
        // The best adapter so far is not in the checkpoint: it is the stopped run's --out.
        if let Some((step, _)) = ck.best.best {
            let at_out = GgufFile::open(&out).ok().and_then(|f| f.get_u64("finetune.training.best_step"));
            if at_out != Some(step) {
                return Err(Error::usage(format!(
                    "--keep-best --resume: the checkpoint's best evaluation is step {step}, but --out {} does not hold that adapter \
                     ({}); resume with the --out of the stopped run",
                    out.display(),
                    at_out.map_or("no --keep-best adapter there".to_string(), |s| format!("it holds step {s}"))
                )));
            }
        }
    }
    check_outputs(&a, &model_path, &data_path, &out, &svg, &checkpoint_dir)?;
    let g = super::open(&model_path)?;
    let tok = super::tokenizer(&g)?;
    let model = g.load()?;
    let (matmul, matmul_why) = super::resolve_matmul(&a.matmul, &model)?;
    for t in &targets {
        let n_in = model.weight(0, *t).n_in();
        if n_in % block != 0 {
            return Err(Error::usage(format!(
                "--adapter-type {adapter_type}: the {} projection's input width {n_in} is not a multiple of {block}; use --adapter-type F16",
                t.short()
            )));
        }
    }
    // The model's template when it does not compile: reported if a record needs it.
    let mut broken_template = None;
    let tmpl = match &a.chat_template {
        Some(p) => {
            let src = super::read_text(p)?;
            let bos = tok.bos().map(|b| tok.token_text(b).to_string()).unwrap_or_default();
            let eos = tok.eos().map(|b| tok.token_text(b).to_string()).unwrap_or_default();
            Some(ChatTemplate::from_source(&src, &bos, &eos).map_err(|e| Error::format(p, e))?)
        }
        None => match g.chat_template(&tok) {
            Ok(t) => Some(t),
            Err(Error::Template(ChatError::NoTemplate { .. })) => None,
            Err(Error::Template(e)) => {
                broken_template = Some(e);
                None
            }
            Err(e) => return Err(e),
        },
    };
    let dopts = DataOptions {
        format: parse_format(&a.format)?,
        seq_len: a.seq_len,
        train_on_prompt: a.train_on_prompt,
        pack: a.pack,
        skip_bad_lines: a.skip_bad_lines,
        val_split: a.val_split,
        seed: a.seed,
        system_prompt: a.system.clone(),
        normalize: norm,
        max_file_bytes: super::max_input(),
    };
    super::memory::check_before_load(&model, &targets, a.rank, a.seq_len, &[Some(&data_path), a.val_data.as_deref()], max_ram)?;
    let data = match Dataset::load(&data_path, a.val_data.as_deref(), &tok, tmpl.as_ref(), &dopts) {
        Err(e) if e.problem() == Some(&Problem::NoTemplate) && broken_template.is_some() => {
            let t = broken_template.take().expect("checked");
            return Err(Error::format(
                &model_path,
                format!("the model's chat template (tokenizer.chat_template) cannot be used: {t}; pass --chat-template FILE, or train on {{\"text\"}} records"),
            ));
        }
        r => r?,
    };
    let say = |s: String| {
        if !a.quiet {
            eprintln!("{s}");
        }
    };
    say(format!("data: {}", data.stats));
    if let Some(why) = matmul_why {
        say(why);
    }
    for e in &data.stats.skipped_errors {
        say(format!("  skipped: {e}"));
    }
    let mut p = plan(&model, &targets, a.rank, a.seq_len, data.stats.tokens, keep_bytes);
    if let Some(limit) = max_ram {
        if p.total() > limit && p.kept > 0 {
            // Trade speed for memory first: keep only what fits.
            keep_bytes = limit.saturating_sub(p.total() - p.kept);
            p = plan(&model, &targets, a.rank, a.seq_len, data.stats.tokens, keep_bytes);
        }
    }
    say(format!("memory plan: peak ≈ {p}"));
    super::memory::check_plan(p.total(), max_ram)?;
    if let (finetune::backend::cuda::Device::Cuda(n), gpu_mem) = super::device() {
        let shape = finetune::backend::cuda::plan::VramShape::of_model(&model, &targets, a.rank);
        let budget = match gpu_mem {
            Some(b) => b,
            None => gpu_free(n)?,
        };
        let vp = finetune::backend::cuda::plan::plan_vram(&shape, a.seq_len, budget)?;
        say(vp.to_string());
        finetune::backend::cuda::Device::Cuda(n).check()?;
        super::cpu_only("train")?;
    }
    let opts = TrainOptions {
        rank: a.rank,
        alpha: a.alpha,
        rslora: a.rslora,
        dropout: a.dropout,
        keep_bytes,
        targets,
        lr: a.lr,
        schedule,
        warmup: a.warmup,
        adam: AdamWConfig { beta1: a.beta1, beta2: a.beta2, eps: a.adam_eps, weight_decay: a.weight_decay },
        grad_accum: a.grad_accum,
        max_grad_norm: a.max_grad_norm,
        epochs: a.epochs,
        steps: a.steps,
        seed: a.seed,
        eval_every: a.eval_every,
        save_every: a.save_every,
        keep_checkpoints: a.keep_checkpoints,
        checkpoint_dir: checkpoint_dir.clone(),
        log: a.log.clone(),
        progress: !a.quiet,
        max_rss: max_ram,
        matmul,
    };
    let resume = resume.map(|(path, ck)| {
        say(format!("resuming from {}", path.display()));
        ck
    });
    let base_info = g.base_info();
    let metric_name = a.eval_metric.first().cloned().unwrap_or_default();
    let mut hook = match task {
        Some((items, metrics)) => {
            let eval_tmpl = super::chat_template(&g, &tok, a.chat_template.as_deref())?;
            let mut em = super::load_model(&g, &[])?;
            let eopts = EvalOptions {
                max_tokens: a.eval_max_tokens,
                sampler: SamplerConfig { temp: 0.0, top_k: 40, top_p: 0.95, seed: 0 },
                normalize: norm,
                seq_len: a.seq_len,
                progress: false,
            };
            let eval_path = a.eval_data.clone().unwrap_or_default();
            let lower_is_better = matches!(metrics.list.first(), Some((_, Metric::Nll)));
            let (tok, out, base_info, metric_name) = (&tok, out.clone(), &base_info, metric_name.clone());
            let keep_best = a.keep_best;
            Some(TaskEval {
                names: metrics.list.iter().map(|(n, _)| n.clone()).collect(),
                lower_is_better,
                eval: Box::new(move |lora| {
                    em.adapters = vec![(lora.clone(), 1.0)];
                    let r = run_config("train", &em, tok, &eval_tmpl, &items, &metrics, &eopts, &eval_path)?;
                    em.adapters.clear();
                    Ok((0..metrics.list.len()).map(|k| r.summary(k).map_or(f64::NAN, |s| summary_value(&s))).collect())
                }),
                on_best: Box::new(move |lora, step, value| {
                    if !keep_best {
                        return Ok(());
                    }
                    let extra = vec![
                        ("finetune.training.best_step".to_string(), Value::U64(step)),
                        ("finetune.training.best_metric".to_string(), Value::String(metric_name.clone())),
                        ("finetune.training.best_value".to_string(), Value::F64(value)),
                    ];
                    Ok(write_adapter_with(&out, base_info, lora, adapter_type, extra)?)
                }),
                early_stop: a.early_stop,
            })
        }
        None => None,
    };
    let result = train(&model, &data, &opts, resume, hook.as_mut())?;
    drop(hook);
    let done = result.history.last().map_or(0, |h| h.step);
    // With --keep-best, --out holds the best evaluation's adapter once there is one: neither the
    // end of the run nor a stop signal replaces it.
    let kept = if a.keep_best { result.best.best } else { None };
    let extra = if result.interrupted {
        vec![
            ("finetune.training.partial".to_string(), Value::Bool(true)),
            ("finetune.training.steps_done".to_string(), Value::U64(done)),
            ("finetune.training.steps_total".to_string(), Value::U64(result.total_steps)),
        ]
    } else {
        Vec::new()
    };
    if kept.is_none() {
        write_adapter_with(&out, &base_info, &result.lora, adapter_type, extra)?;
    }
    let metric = (!metric_name.is_empty()).then_some(metric_name.as_str());
    write_svg(&svg, &result.history, &format!("{} on {}", out.display(), data_path.display()), metric)?;
    if result.early_stopped {
        let (s, v) = result.best.best.unwrap_or((0, f64::NAN));
        say(format!(
            "early stop after step {done} of {}: {} evaluations without improvement of {metric_name} (best {} at step {s})",
            result.total_steps,
            result.best.no_improve,
            fmt_value(&metric_name, v)
        ));
    }
    if let Some((s, v)) = kept {
        let last = result.history.iter().rev().find_map(|h| h.task.map(|t| (h.step, t)));
        let last = last.map(|(ls, lv)| format!("; the last evaluation, step {ls}: {}", fmt_value(&metric_name, lv))).unwrap_or_default();
        say(format!("kept the adapter of step {s} ({metric_name} {}){last}", fmt_value(&metric_name, v)));
    }
    if result.interrupted {
        let sig = signals::stop_signal().unwrap_or(signals::STOP_SIGNALS[0]);
        eprintln!(
            "interrupted by {} after step {done} of {}: {}; \
             a checkpoint is in {}; continue with the same options and --resume {}",
            signals::name(sig),
            result.total_steps,
            match kept {
                Some((s, _)) => format!("the adapter {} is the best so far (step {s}, --keep-best)", out.display()),
                None => format!("the adapter {} is PARTIAL (finetune.training.partial = true)", out.display()),
            },
            checkpoint_dir.display(),
            checkpoint_dir.display()
        );
        std::process::exit(128 + sig);
    }
    say(format!("adapter: {}\nloss curve: {}", out.display(), svg.display()));
    say(format!("try it: finetune generate --model {} --lora {} --chat --prompt \"...\"", model_path.display(), out.display()));
    Ok(())
}

/// Whether `path` is an adapter we wrote for a run stopped by a signal, or a --keep-best
/// adapter of the run (replaced by the resumed run without --force).
fn is_partial_adapter(path: &Path) -> bool {
    GgufFile::open(path)
        .ok()
        .map(|f| {
            f.get("finetune.training.partial").and_then(Value::as_bool).unwrap_or(false) || f.get("finetune.training.best_step").is_some()
        })
        .unwrap_or(false)
}

/// A metric value as the progress line shows it.
fn fmt_value(spec: &str, v: f64) -> String {
    if spec == "nll" {
        format!("{v:.4}")
    } else {
        format!("{:.1}%", 100.0 * v)
    }
}

/// The value of a summary that --keep-best compares: pass rate, structured accuracy, mean NLL.
fn summary_value(s: &Summary) -> f64 {
    match *s {
        Summary::Rate { pass, n } => pass as f64 / n.max(1) as f64,
        Summary::Structured { correct, n, .. } => correct as f64 / n.max(1) as f64,
        Summary::Nll { sum, tokens } => sum / tokens.max(1) as f64,
    }
}

/// The --eval-data records and metrics, checked before anything else loads (errors name the
/// file and line, as `finetune eval`'s); None without --eval-data.
fn task_items(a: &TrainArgs, norm: &finetune::normalize::Normalize) -> Result<Option<(Vec<Item>, Metrics)>> {
    let Some(path) = &a.eval_data else {
        for (on, flag) in [(!a.eval_metric.is_empty(), "--eval-metric"), (a.keep_best, "--keep-best"), (a.early_stop > 0, "--early-stop")] {
            if on {
                return Err(Error::usage(format!("{flag} needs --eval-data FILE (held-out records for the task metric)")));
            }
        }
        return Ok(None);
    };
    if a.eval_metric.is_empty() {
        return Err(Error::usage(format!("--eval-data needs at least one --eval-metric ({})", finetune::eval::metric::METRICS)));
    }
    if a.eval_max_tokens == 0 {
        return Err(Error::usage("--eval-max-tokens must be at least 1"));
    }
    let mut items = load_items(path, parse_format(&a.format)?, norm, a.system.as_deref())?;
    if let Some(k) = a.eval_limit {
        items.truncate(k.max(1));
    }
    let metrics = Metrics::prepare(&a.eval_metric, a.eval_choices.as_deref(), norm, &items, path)?;
    Ok(Some((items, metrics)))
}

/// The output-path policy for a training run ([`outpath`]): no output is an input or another
/// output; existing files are replaced only with --force, except on --resume the metrics log
/// (continued), the checkpoint folder and a PARTIAL adapter of the stopped run (with its curve).
fn check_outputs(a: &TrainArgs, model: &Path, data: &Path, out: &Path, svg: &Path, ckdir: &Path) -> Result<()> {
    let force = super::force();
    let resuming = a.resume.is_some();
    let mut owned = super::model_inputs("--model", model);
    owned.push(("--data", data.to_path_buf()));
    for (flag, p) in [("--val-data", &a.val_data), ("--chat-template", &a.chat_template), ("--eval-data", &a.eval_data)] {
        if let Some(p) = p {
            owned.push((flag, p.clone()));
        }
    }
    if let Some(r) = a.resume.as_ref().filter(|r| r.is_file()) {
        owned.push(("--resume", r.clone()));
    }
    let mut inputs: Vec<(&str, &Path)> = owned.iter().map(|(f, p)| (*f, p.as_path())).collect();
    let replace_out = force || (resuming && is_partial_adapter(out));
    outpath::check_file("--out", out, &inputs, replace_out)?;
    inputs.push(("--out", out));
    outpath::check_file("the loss curve of --out", svg, &inputs, replace_out)?;
    inputs.push(("the loss curve", svg));
    if let Some(log) = &a.log {
        outpath::check_file("--log", log, &inputs, force || resuming)?;
        inputs.push(("--log", log));
    }
    outpath::check_dir("--checkpoint-dir", ckdir, &inputs)?;
    for dir in std::iter::once(ckdir).chain(a.resume.as_deref().filter(|r| r.is_dir())) {
        for p in checkpoint::remove_stale_temps(dir) {
            eprintln!("removed the stale temp file {}", p.display());
        }
    }
    if !resuming && !force && ckdir.is_dir() {
        if let Some((_, p)) = checkpoint::list(ckdir)?.first() {
            return Err(Error::usage(format!(
                "the checkpoint folder {} holds checkpoints of an earlier run ({}): continue it with --resume {}, \
                 choose another --checkpoint-dir, or pass --force (its old checkpoints are then pruned to --keep-checkpoints)",
                ckdir.display(),
                p.display(),
                ckdir.display()
            )));
        }
    }
    Ok(())
}

/// Free memory of CUDA device `n` (the default `--gpu-mem`).
#[cfg(feature = "cuda")]
fn gpu_free(n: usize) -> Result<u64> {
    Ok(finetune::backend::cuda::driver::Gpu::open(n)?.mem_info()?.0)
}

#[cfg(not(feature = "cuda"))]
fn gpu_free(n: usize) -> Result<u64> {
    Err(Error::Usage(format!("--device cuda:{n}: pass --gpu-mem (this build has no CUDA backend to ask the card)")))
}
