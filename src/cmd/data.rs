//! `finetune data stats`: size a dataset against `--seq-len` before training on it.

use std::path::PathBuf;

use rayon::prelude::*;

use finetune::chat::ChatTemplate;
use finetune::normalize::Normalize;
use finetune::train::data::{build_sample, normalize_content, read_records, DataError, SampleOptions};
use finetune::{Error, Result};

/// Options of `data stats`.
#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    /// The model (GGUF or Hugging Face directory) whose tokenizer and chat template training would use.
    #[arg(long)]
    pub model: PathBuf,
    /// The data file (the formats training reads).
    #[arg(long)]
    pub data: PathBuf,
    /// The training sequence length to size against.
    #[arg(long, default_value_t = 512)]
    pub seq_len: usize,
    /// Record format (auto, prompt-response, alpaca, dolly, chat, text).
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// System prompt for every conversation (as training's --system).
    #[arg(long)]
    pub system: Option<String>,
    /// Chat template override (Jinja file).
    #[arg(long)]
    pub chat_template: Option<PathBuf>,
    /// Normalisation, as training's --normalize.
    #[arg(long, value_name = "nfkc|arabic[+yaa][+haa]")]
    pub normalize: Option<String>,
    /// Count prompt tokens as trained too (as training's --train-on-prompt).
    #[arg(long)]
    pub train_on_prompt: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Print the statistics.
pub fn stats(a: StatsArgs) -> Result<()> {
    if a.seq_len < 2 {
        return Err(Error::usage("--seq-len must be at least 2"));
    }
    let norm = Normalize::parse(a.normalize.as_deref().unwrap_or("none"))?;
    let format = super::train::parse_format(&a.format)?;
    let g = super::open(&a.model)?;
    let tok = super::tokenizer(&g)?;
    let tmpl: Option<ChatTemplate> = match &a.chat_template {
        Some(_) => Some(super::chat_template(&g, &tok, a.chat_template.as_deref())?),
        None => g.chat_template(&tok).ok(),
    };
    let set = read_records(&a.data, format, false)?;
    let system = a.system.as_deref().map(|s| norm.apply(s));
    let sopts = SampleOptions { seq_len: usize::MAX, train_on_prompt: a.train_on_prompt, system_prompt: system.as_deref() };
    // (total tokens, trained tokens, trained tokens kept within seq_len) per record.
    let lens: Vec<(usize, usize, usize)> = set
        .records
        .par_iter()
        .map(|r| {
            let (s, _) = build_sample(&normalize_content(&r.content, &norm), &tok, tmpl.as_ref(), sopts)
                .map_err(|p| DataError::Record { file: a.data.clone(), line: r.line, element: r.element, problem: p })?;
            let kept = s.labels.iter().take(a.seq_len - 1).filter(|&&l| l >= 0).count();
            Ok((s.tokens.len(), s.n_trained(), kept))
        })
        .collect::<std::result::Result<_, DataError>>()?;
    let n = lens.len();
    let mut sorted: Vec<usize> = lens.iter().map(|l| l.0).collect();
    sorted.sort_unstable();
    let total: usize = sorted.iter().sum();
    let trained: usize = lens.iter().map(|l| l.1).sum();
    let truncated: Vec<&(usize, usize, usize)> = lens.iter().filter(|l| l.0 > a.seq_len).collect();
    let cut_tokens: usize = truncated.iter().map(|l| l.0 - a.seq_len).sum();
    let cut_trained: usize = truncated.iter().map(|l| l.1 - l.2).sum();
    let emptied = lens.iter().filter(|l| l.2 == 0).count();
    let median = if n % 2 == 1 { sorted[n / 2] as f64 } else { (sorted[n / 2 - 1] + sorted[n / 2]) as f64 / 2.0 };
    // Bins: 8 of width ceil(seq_len / 8) up to seq_len, then (when records are longer) up to 8
    // more of the same width for the truncated ones, the last open-ended.
    let width = a.seq_len.div_ceil(8);
    let mut edges: Vec<(usize, Option<usize>)> = (0..8).map(|i| (i * width + 1, Some(((i + 1) * width).min(a.seq_len)))).collect();
    let longest = sorted[n - 1];
    if longest > a.seq_len {
        let k = (longest - a.seq_len).div_ceil(width).min(8);
        for j in 0..k {
            let from = a.seq_len + 1 + j * width;
            edges.push((from, if j + 1 < k { Some(from + width - 1) } else { None }));
        }
    }
    let bins: Vec<usize> = edges.iter().map(|&(lo, hi)| sorted.iter().filter(|&&l| l >= lo && hi.is_none_or(|h| l <= h)).count()).collect();
    if a.json {
        let hist: Vec<serde_json::Value> =
            edges.iter().zip(&bins).map(|(&(lo, hi), &c)| serde_json::json!({"from": lo, "to": hi, "records": c})).collect();
        let v = serde_json::json!({
            "data": a.data.display().to_string(), "format": set.format.name(), "records": n, "seq_len": a.seq_len,
            "tokens": total, "min": sorted[0], "median": median, "mean": total as f64 / n as f64, "max": sorted[n - 1],
            "response_tokens": trained, "response_share": trained as f64 / total.max(1) as f64,
            "truncated": truncated.len(), "truncated_tokens": cut_tokens, "truncated_response_tokens": cut_trained,
            "no_response_left": emptied, "histogram": hist,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    println!(
        "{}: {n} records ({} format){}",
        a.data.display(),
        set.format,
        if norm.is_none() { String::new() } else { format!(", normalised {norm}") }
    );
    println!(
        "tokens per record: min {}, median {median}, mean {:.1}, max {}; {total} in all",
        sorted[0],
        total as f64 / n as f64,
        sorted[n - 1]
    );
    println!(
        "{} tokens: {trained} of {total} ({:.1}%)",
        if a.train_on_prompt { "trained" } else { "response (trained)" },
        100.0 * trained as f64 / total.max(1) as f64
    );
    println!(
        "with --seq-len {}: {} records ({:.1}%) would be truncated, losing {cut_tokens} tokens ({cut_trained} of them response tokens)",
        a.seq_len,
        truncated.len(),
        100.0 * truncated.len() as f64 / n as f64
    );
    if emptied > 0 {
        println!("  {emptied} records would keep no response token (training stops on them: raise --seq-len)");
    }
    println!("token length histogram:");
    let max = bins.iter().copied().max().unwrap_or(1).max(1);
    for (&(lo, hi), &c) in edges.iter().zip(&bins) {
        let label = match hi {
            Some(h) => format!("{lo:>6}–{h:<6}"),
            None => format!("{:>6}+      ", lo),
        };
        let bar = "█".repeat((c * 40).div_ceil(max));
        println!("  {label} |{bar:<40} {c}{}", if lo > a.seq_len && c > 0 { "  truncated" } else { "" });
        if hi == Some(a.seq_len) && longest > a.seq_len {
            println!("  {:-<13}-+ --seq-len {}", "", a.seq_len);
        }
    }
    Ok(())
}
