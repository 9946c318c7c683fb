//! `finetune eval`: task metrics on held-out records, for the base model and adapters.

use std::path::{Path, PathBuf};

use finetune::eval::{load_items, run_config, ConfigResult, EvalOptions, Item, Metrics, Summary};
use finetune::generate::SamplerConfig;
use finetune::normalize::Normalize;
use finetune::{Error, Result};

/// Options of `eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The base model: a GGUF file or a Hugging Face directory.
    #[arg(long)]
    pub model: PathBuf,
    /// LoRA adapter `A.gguf` or `A.gguf:SCALE` (repeatable; adapters stack).
    #[arg(long, value_name = "A.gguf[:SCALE]")]
    pub lora: Vec<String>,
    /// Held-out records (JSON lines or a JSON array; the formats training reads). The last
    /// assistant message of each record is its reference answer.
    #[arg(long)]
    pub data: PathBuf,
    /// Metric (repeatable): exact, contains[:TEXT], ends-with:TEXT[|TEXT2…], regex:RE, json, yaml,
    /// toml, xml, csv, choice, nll. See the rules below.
    #[arg(long, required = true, value_name = "METRIC")]
    pub metric: Vec<String>,
    /// Evaluate the base, each adapter alone and (with several) the stack, side by side.
    #[arg(long)]
    pub compare: bool,
    /// Labels for `choice`, comma-separated (default: the distinct reference answers).
    #[arg(long, value_name = "a,b,c")]
    pub choices: Option<String>,
    /// Tokens to generate at most per record.
    #[arg(short = 'n', long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temp: f32,
    /// Top-k when sampling (0 = off).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Top-p when sampling (1 = off).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// RNG seed when sampling (record i uses seed + i).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Record format (auto, prompt-response, alpaca, dolly, chat).
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// System prompt for every record (replaces the records' own).
    #[arg(long)]
    pub system: Option<String>,
    /// Chat template override (Jinja file).
    #[arg(long)]
    pub chat_template: Option<PathBuf>,
    /// Normalise prompts, references and outputs (as training's --normalize): nfkc, arabic,
    /// arabic+yaa, arabic+haa, or several joined by '+'.
    #[arg(long, value_name = "nfkc|arabic[+yaa][+haa]")]
    pub normalize: Option<String>,
    /// Sequence length for `nll` (as training's --seq-len: longer records are truncated).
    #[arg(long, default_value_t = 512)]
    pub seq_len: usize,
    /// Evaluate only the first N records.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write every record's prompt, output, reference and scores (one JSON line per record and
    /// configuration).
    #[arg(long, value_name = "results.jsonl")]
    pub out: Option<PathBuf>,
    /// No progress on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// Run the evaluation and print the table (or JSON).
pub fn run(a: EvalArgs) -> Result<()> {
    let norm = Normalize::parse(a.normalize.as_deref().unwrap_or("none"))?;
    let format = super::train::parse_format(&a.format)?;
    if a.max_tokens == 0 {
        return Err(Error::usage("--max-tokens must be at least 1"));
    }
    let mut items = load_items(&a.data, format, &norm, a.system.as_deref())?;
    if let Some(n) = a.limit {
        items.truncate(n.max(1));
    }
    let metrics = Metrics::prepare(&a.metric, a.choices.as_deref(), &norm, &items, &a.data)?;
    if let Some(out) = &a.out {
        let mut inputs: Vec<(&str, &Path)> = vec![("--data", a.data.as_path()), ("--model", a.model.as_path())];
        inputs.extend(a.lora.iter().map(|s| ("--lora", super::lora_spec(s).0)));
        finetune::util::outpath::check_file("--out", out, &inputs, super::force())?;
    }
    let g = super::open(&a.model)?;
    let tok = super::tokenizer(&g)?;
    let tmpl = super::chat_template(&g, &tok, a.chat_template.as_deref())?;
    let mut m = super::load_model(&g, &[])?;
    let mut adapters = Vec::new();
    for spec in &a.lora {
        let (path, scale) = super::lora_spec(spec);
        let set = finetune::adapter::read_adapter(Path::new(path), &m)?;
        let name = Path::new(path).file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned());
        adapters.push((name, set, scale));
    }
    let all: Vec<usize> = (0..adapters.len()).collect();
    let stack_name =
        if adapters.is_empty() { "base".to_string() } else { adapters.iter().map(|x| x.0.as_str()).collect::<Vec<_>>().join("+") };
    let configs: Vec<(String, Vec<usize>)> = if a.compare {
        let mut c = vec![("base".to_string(), vec![])];
        c.extend(adapters.iter().enumerate().map(|(i, x)| (x.0.clone(), vec![i])));
        if adapters.len() > 1 {
            c.push((stack_name, all));
        }
        c
    } else {
        vec![(stack_name, all)]
    };
    let opts = EvalOptions {
        max_tokens: a.max_tokens,
        sampler: SamplerConfig { temp: a.temp, top_k: a.top_k, top_p: a.top_p, seed: a.seed },
        normalize: norm,
        seq_len: a.seq_len,
        progress: !a.quiet,
    };
    if !a.quiet {
        eprintln!(
            "eval: {} records from {}, {} configuration(s), metrics {}",
            items.len(),
            a.data.display(),
            configs.len(),
            a.metric.join(", ")
        );
    }
    let mut results = Vec::new();
    for (name, which) in &configs {
        m.adapters = which.iter().map(|&i| (adapters[i].1.clone(), adapters[i].2)).collect();
        results.push(run_config(name, &m, &tok, &tmpl, &items, &metrics, &opts, &a.data)?);
    }
    if let Some(out) = &a.out {
        write_records(out, &a.data, &items, &metrics, &results)?;
    }
    let greedy = if a.temp <= 0.0 { "greedy".to_string() } else { format!("temp {}", a.temp) };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary_json(&a, &items, &metrics, &results, &greedy)).unwrap_or_default());
    } else {
        print!("{}", table(&a, &items, &metrics, &results, &greedy));
    }
    Ok(())
}

fn summary_json(a: &EvalArgs, items: &[Item], metrics: &Metrics, results: &[ConfigResult], mode: &str) -> serde_json::Value {
    let configs: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            let mut ms = serde_json::Map::new();
            for (k, (spec, _)) in metrics.list.iter().enumerate() {
                ms.insert(spec.clone(), r.summary(k).map_or(serde_json::Value::Null, |s| s.to_json()));
            }
            serde_json::json!({
                "name": r.name,
                "metrics": ms,
                "generated_tokens": r.gen_tokens,
                "gen_tok_per_s": if r.gen_tokens > 0 { serde_json::json!(r.gen_tok_per_s()) } else { serde_json::Value::Null },
                "prompt_tokens": r.prompt_tokens,
                "prompt_tok_per_s": if r.prompt_tokens > 0 { serde_json::json!(r.prompt_tokens as f64 / r.prompt_secs.max(1e-9)) } else { serde_json::Value::Null },
            })
        })
        .collect();
    serde_json::json!({
        "data": a.data.display().to_string(),
        "model": a.model.display().to_string(),
        "records": items.len(),
        "decoding": mode,
        "max_tokens": a.max_tokens,
        "normalize": a.normalize.clone().unwrap_or_else(|| "none".into()),
        "configs": configs,
    })
}

fn table(a: &EvalArgs, items: &[Item], metrics: &Metrics, results: &[ConfigResult], mode: &str) -> String {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let pct = |x: usize, n: usize| format!("{:.1}%", 100.0 * x as f64 / n.max(1) as f64);
    for (k, (spec, _)) in metrics.list.iter().enumerate() {
        let sums: Vec<Option<Summary>> = results.iter().map(|r| r.summary(k)).collect();
        let cell = |f: &dyn Fn(&Summary) -> String| sums.iter().map(|s| s.as_ref().map_or("-".into(), f)).collect::<Vec<_>>();
        match sums.first().cloned().flatten() {
            Some(Summary::Rate { .. }) => {
                rows.push((spec.clone(), cell(&|s| if let Summary::Rate { pass, n } = s { pct(*pass, *n) } else { "-".into() })))
            }
            Some(Summary::Structured { .. }) => {
                rows.push((
                    format!("{spec} valid"),
                    cell(&|s| if let Summary::Structured { valid, n, .. } = s { pct(*valid, *n) } else { "-".into() }),
                ));
                rows.push((
                    format!("{spec} accuracy"),
                    cell(&|s| if let Summary::Structured { correct, n, .. } = s { pct(*correct, *n) } else { "-".into() }),
                ));
            }
            Some(Summary::Nll { .. }) => {
                let nll = |s: &Summary| if let Summary::Nll { sum, tokens } = s { sum / (*tokens).max(1) as f64 } else { f64::NAN };
                rows.push(("nll (response)".into(), cell(&|s| format!("{:.4}", nll(s)))));
                rows.push(("perplexity".into(), cell(&|s| format!("{:.3}", nll(s).exp()))));
            }
            None => {}
        }
    }
    if metrics.generates() {
        rows.push((
            "output tokens (mean)".into(),
            results.iter().map(|r| format!("{:.1}", r.gen_tokens as f64 / items.len().max(1) as f64)).collect(),
        ));
        rows.push(("generation tok/s".into(), results.iter().map(|r| format!("{:.1}", r.gen_tok_per_s())).collect()));
    }
    let head: Vec<String> = results.iter().map(|r| r.name.clone()).collect();
    // Display widths (CJK characters take two columns).
    let width = |t: &str| unicode_width::UnicodeWidthStr::width(t);
    let pad = |t: &str, w: usize, right: bool| {
        let fill = " ".repeat(w.saturating_sub(width(t)));
        if right {
            format!("{fill}{t}")
        } else {
            format!("{t}{fill}")
        }
    };
    let w0 = rows.iter().map(|r| width(&r.0)).chain([6]).max().unwrap_or(6);
    let widths: Vec<usize> =
        (0..head.len()).map(|j| rows.iter().map(|r| width(&r.1[j])).chain([width(&head[j]), 8]).max().unwrap_or(8)).collect();
    let mut s = format!("{} records of {}, {mode}, at most {} tokens\n", items.len(), a.data.display(), a.max_tokens);
    s += &pad("metric", w0, false);
    for (h, w) in head.iter().zip(&widths) {
        s += &format!("  {}", pad(h, *w, true));
    }
    s += "\n";
    for (name, cells) in rows {
        s += &pad(&name, w0, false);
        for (c, w) in cells.iter().zip(&widths) {
            s += &format!("  {}", pad(c, *w, true));
        }
        s += "\n";
    }
    s
}

fn write_records(out: &Path, data: &Path, items: &[Item], metrics: &Metrics, results: &[ConfigResult]) -> Result<()> {
    let mut text = String::new();
    for r in results {
        for (it, rec) in items.iter().zip(&r.records) {
            let mut scores = serde_json::Map::new();
            for ((spec, _), s) in metrics.list.iter().zip(&rec.scores) {
                scores.insert(spec.clone(), s.to_json());
            }
            let user = it.prompt.iter().rev().find(|m| m.role == "user").map_or("", |m| m.content.as_str());
            let context: Vec<serde_json::Value> =
                it.prompt.iter().map(|m| serde_json::json!({"role": m.role, "content": m.content})).collect();
            let v = serde_json::json!({
                "config": r.name,
                "file": data.display().to_string(),
                "line": it.line,
                "element": it.element,
                "prompt": user,
                "messages": context,
                "reference": it.reference,
                "output": rec.output,
                "output_tokens": rec.tokens,
                "scores": scores,
            });
            text += &serde_json::to_string(&v).map_err(|e| Error::Msg(e.to_string()))?;
            text.push('\n');
        }
    }
    finetune::safetensors::write_atomic(out, text.as_bytes())
}
