//! Task evaluation (`finetune eval`): held-out records → prompts and references, greedy (or
//! sampled) generation with the chat template, per-record scores and a summary per model
//! configuration (the base, each adapter, the stack).
//!
//! A record's **prompt** is its conversation up to the last message, which must be the
//! assistant's: that message is the **reference**. Every data format training reads works
//! (prompt/response, Alpaca, Dolly, chat); raw `{"text"}` records have no reference and are an
//! error naming the record. The `--normalize` steps apply to prompts, references and outputs.

pub mod metric;
pub mod structured;

use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use crate::chat::{encode_prompt, ChatTemplate, Message};
use crate::error::{Error, Result};
use crate::generate::{Sampler, SamplerConfig, Session};
use crate::lora::LoraSet;
use crate::model::Model;
use crate::normalize::Normalize;
use crate::tokenizer::Tokenizer;
use crate::train::block::{SeqView, Trainable};
use crate::train::data::{build_sample, read_records, Content, DataError, Format, Problem, SampleOptions};

pub use metric::{Metric, Score};
pub use structured::{Node, Structured};

/// One held-out record.
#[derive(Clone, Debug)]
pub struct Item {
    /// 1-based line of the record.
    pub line: usize,
    /// 0-based element in a JSON array file.
    pub element: Option<usize>,
    /// The conversation before the reference (normalised; system prompt applied).
    pub prompt: Vec<Message>,
    /// The last assistant message (normalised).
    pub reference: String,
    /// The whole normalised record, for the teacher-forced NLL.
    pub content: Content,
}

fn at(path: &Path, line: usize, element: Option<usize>, msg: String) -> Error {
    Error::Data(DataError::at(path, line, element, Problem::Eval(msg)))
}

/// Read the records of `path` as evaluation items (see the module docs).
pub fn load_items(path: &Path, format: Format, norm: &Normalize, system: Option<&str>) -> Result<Vec<Item>> {
    let set = read_records(path, format, false)?;
    let mut items = Vec::with_capacity(set.records.len());
    for r in set.records {
        let Content::Chat(msgs) = &r.content else {
            return Err(at(
                path,
                r.line,
                r.element,
                "a raw {\"text\"} record has no reference answer; eval needs prompt/response, instruction/output or chat records".into(),
            ));
        };
        let mut msgs: Vec<Message> = msgs.iter().map(|m| Message::new(&m.role, norm.apply(&m.content))).collect();
        if let Some(s) = system {
            msgs =
                std::iter::once(Message::new("system", norm.apply(s))).chain(msgs.into_iter().skip_while(|m| m.role == "system")).collect();
        }
        let last = msgs
            .last()
            .filter(|m| m.role == "assistant")
            .ok_or_else(|| at(path, r.line, r.element, "the last message must be the assistant's reference answer".into()))?;
        if last.content.trim().is_empty() {
            return Err(at(path, r.line, r.element, "the reference answer (the last assistant message) is empty".into()));
        }
        let reference = last.content.clone();
        let prompt = msgs[..msgs.len() - 1].to_vec();
        if !prompt.iter().any(|m| m.role == "user") {
            return Err(at(path, r.line, r.element, "no user message before the reference answer".into()));
        }
        items.push(Item { line: r.line, element: r.element, prompt, reference, content: Content::Chat(msgs) });
    }
    Ok(items)
}

/// The `--metric` specs parsed, with what scoring needs from the references.
pub struct Metrics {
    /// (spec, metric) in the order given.
    pub list: Vec<(String, Metric)>,
    /// Per metric, per item: the parsed reference (structured metrics only).
    pub parsed_refs: Vec<Vec<Option<Node>>>,
    /// Choice labels (`--choices`, else the distinct references in file order).
    pub labels: Vec<String>,
}

impl Metrics {
    /// Parse the specs and check the references against them: a structured reference must parse,
    /// a choice reference must be one of `--choices`. Errors name the record.
    pub fn prepare(specs: &[String], choices: Option<&str>, norm: &Normalize, items: &[Item], path: &Path) -> Result<Metrics> {
        if specs.is_empty() {
            return Err(Error::usage(format!("give at least one --metric ({})", metric::METRICS)));
        }
        let list: Vec<(String, Metric)> = specs.iter().map(|s| Ok((s.clone(), Metric::parse(s, norm)?))).collect::<Result<_>>()?;
        let mut parsed_refs = Vec::new();
        for (_, m) in &list {
            let mut refs = Vec::new();
            if let Metric::Structured(f) = m {
                for it in items {
                    let v = f.parse(&it.reference).map_err(|e| {
                        at(
                            path,
                            it.line,
                            it.element,
                            format!("the reference answer is not valid {f} ({e}), so --metric {f} cannot score it"),
                        )
                    })?;
                    refs.push(Some(v));
                }
            }
            parsed_refs.push(refs);
        }
        let mut labels: Vec<String> = Vec::new();
        if list.iter().any(|(_, m)| matches!(m, Metric::Choice)) {
            match choices {
                Some(c) => {
                    labels = c.split(',').map(|l| norm.apply(l.trim())).filter(|l| !l.is_empty()).collect();
                    for it in items {
                        let r = it.reference.trim().to_lowercase();
                        if !labels.iter().any(|l| l.to_lowercase() == r) {
                            return Err(at(
                                path,
                                it.line,
                                it.element,
                                format!("the reference '{}' is not one of --choices {}", it.reference.trim(), labels.join(",")),
                            ));
                        }
                    }
                }
                None => {
                    for it in items {
                        let r = it.reference.trim().to_string();
                        if !labels.iter().any(|l| l.to_lowercase() == r.to_lowercase()) {
                            labels.push(r);
                        }
                    }
                }
            }
        } else if choices.is_some() {
            return Err(Error::usage("--choices is for --metric choice"));
        }
        Ok(Metrics { list, parsed_refs, labels })
    }

    /// Whether any metric needs generated text.
    pub fn generates(&self) -> bool {
        self.list.iter().any(|(_, m)| m.generates())
    }
}

/// How to generate and score.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Tokens to generate at most per record.
    pub max_tokens: usize,
    /// Sampling (temperature 0 = greedy); record `i` uses seed `seed + i`.
    pub sampler: SamplerConfig,
    /// Normalisation applied to outputs before scoring.
    pub normalize: Normalize,
    /// Sequence length for `nll` (as training's `--seq-len`).
    pub seq_len: usize,
    /// Progress on stderr.
    pub progress: bool,
}

/// One record's result in one configuration.
#[derive(Clone, Debug)]
pub struct RecordResult {
    /// Generated text (normalised; empty when no metric generates).
    pub output: String,
    /// Generated tokens.
    pub tokens: usize,
    /// One score per metric.
    pub scores: Vec<Score>,
}

/// One configuration's results.
#[derive(Clone, Debug)]
pub struct ConfigResult {
    /// Its name (`base`, an adapter's file stem, `A+B`).
    pub name: String,
    /// Per record.
    pub records: Vec<RecordResult>,
    /// Prompt tokens evaluated and seconds.
    pub prompt_tokens: usize,
    /// Seconds spent on prompts.
    pub prompt_secs: f64,
    /// Generated tokens.
    pub gen_tokens: usize,
    /// Seconds spent generating (after the prompts).
    pub gen_secs: f64,
}

/// A metric's summary over the records.
#[derive(Clone, Debug, PartialEq)]
pub enum Summary {
    /// Fraction passed.
    Rate {
        /// Records that passed.
        pass: usize,
        /// Records.
        n: usize,
    },
    /// Structured: valid and correct counts.
    Structured {
        /// Outputs that parse.
        valid: usize,
        /// Outputs equal to the reference.
        correct: usize,
        /// Records.
        n: usize,
    },
    /// Mean NLL over all response tokens (as training's validation loss) and perplexity.
    Nll {
        /// Summed NLL.
        sum: f64,
        /// Tokens.
        tokens: usize,
    },
}

impl Summary {
    /// Aggregate one metric's scores.
    pub fn of(scores: impl Iterator<Item = Score>) -> Option<Summary> {
        let mut out: Option<Summary> = None;
        for s in scores {
            out = Some(match (out, s) {
                (None, Score::Pass(b)) | (None, Score::Choice { correct: b, .. }) => Summary::Rate { pass: usize::from(b), n: 1 },
                (Some(Summary::Rate { pass, n }), Score::Pass(b)) | (Some(Summary::Rate { pass, n }), Score::Choice { correct: b, .. }) => {
                    Summary::Rate { pass: pass + usize::from(b), n: n + 1 }
                }
                (None, Score::Structured { valid, correct }) => Summary::Structured { valid: valid.into(), correct: correct.into(), n: 1 },
                (Some(Summary::Structured { valid: v, correct: c, n }), Score::Structured { valid, correct }) => {
                    Summary::Structured { valid: v + usize::from(valid), correct: c + usize::from(correct), n: n + 1 }
                }
                (None, Score::Nll { sum, tokens }) => Summary::Nll { sum, tokens },
                (Some(Summary::Nll { sum: s0, tokens: t0 }), Score::Nll { sum, tokens }) => {
                    Summary::Nll { sum: s0 + sum, tokens: t0 + tokens }
                }
                (prev, _) => prev?,
            });
        }
        out
    }

    /// JSON for `--json`.
    pub fn to_json(&self) -> serde_json::Value {
        let pct = |a: usize, n: usize| a as f64 / n.max(1) as f64;
        match *self {
            Summary::Rate { pass, n } => serde_json::json!({"score": pct(pass, n), "pass": pass, "n": n}),
            Summary::Structured { valid, correct, n } => {
                serde_json::json!({"valid": pct(valid, n), "accuracy": pct(correct, n), "n_valid": valid, "n_correct": correct, "n": n})
            }
            Summary::Nll { sum, tokens } => {
                let nll = sum / tokens.max(1) as f64;
                serde_json::json!({"nll": nll, "ppl": nll.exp(), "tokens": tokens})
            }
        }
    }
}

impl ConfigResult {
    /// Summary of metric `k`.
    pub fn summary(&self, k: usize) -> Option<Summary> {
        Summary::of(self.records.iter().map(|r| r.scores[k].clone()))
    }

    /// Generated tokens per second.
    pub fn gen_tok_per_s(&self) -> f64 {
        self.gen_tokens as f64 / self.gen_secs.max(1e-9)
    }
}

/// Render the prompt of `item` with the template and tokenize it as generation does.
pub fn prompt_ids(item: &Item, tok: &Tokenizer, tmpl: &ChatTemplate) -> Result<Vec<u32>> {
    let text = tmpl.render(&item.prompt, true)?;
    Ok(encode_prompt(tok, &text))
}

/// Evaluate one configuration (the adapters in `model.adapters`) on every item.
#[allow(clippy::too_many_arguments)]
pub fn run_config(
    name: &str,
    model: &Model,
    tok: &Tokenizer,
    tmpl: &ChatTemplate,
    items: &[Item],
    metrics: &Metrics,
    opts: &EvalOptions,
    path: &Path,
) -> Result<ConfigResult> {
    let mut res =
        ConfigResult { name: name.to_string(), records: Vec::new(), prompt_tokens: 0, prompt_secs: 0.0, gen_tokens: 0, gen_secs: 0.0 };
    let nll = nll_per_item(model, tok, tmpl, items, metrics, opts, path)?;
    let tty = std::io::stderr().is_terminal();
    let t0 = Instant::now();
    for (i, it) in items.iter().enumerate() {
        let (output, tokens) = if metrics.generates() {
            let ids = prompt_ids(it, tok, tmpl)?;
            let mut session = Session::new(model, ids.len() + opts.max_tokens + 1);
            let mut sampler = Sampler::new(SamplerConfig { seed: opts.sampler.seed.wrapping_add(i as u64), ..opts.sampler });
            let mut bytes = Vec::new();
            let stats = session.generate(tok, &ids, opts.max_tokens, &mut sampler, |id| {
                bytes.extend_from_slice(&tok.token_to_piece(id));
                true
            })?;
            res.prompt_tokens += stats.prompt_evaluated;
            res.prompt_secs += stats.prompt_secs;
            res.gen_tokens += stats.generated;
            res.gen_secs += stats.gen_secs;
            (opts.normalize.apply(&String::from_utf8_lossy(&bytes)), stats.generated)
        } else {
            (String::new(), 0)
        };
        let scores = metrics
            .list
            .iter()
            .enumerate()
            .map(|(k, (_, m))| match m {
                Metric::Nll => nll[i].clone().unwrap_or(Score::Nll { sum: f64::NAN, tokens: 0 }),
                _ => {
                    let parsed = metrics.parsed_refs[k].get(i).and_then(Option::as_ref);
                    metric::score(m, &output, &it.reference, parsed, &metrics.labels)
                }
            })
            .collect();
        res.records.push(RecordResult { output, tokens, scores });
        if opts.progress && metrics.generates() {
            let line = format!(
                "[{name}] {}/{} records, {:.1} tok/s, {:.0} s",
                i + 1,
                items.len(),
                res.gen_tok_per_s(),
                t0.elapsed().as_secs_f64()
            );
            if tty {
                eprint!("\r{line}");
            } else if (i + 1) % 10 == 0 || i + 1 == items.len() {
                eprintln!("{line}");
            }
        }
    }
    if opts.progress && tty && metrics.generates() {
        eprintln!();
    }
    Ok(res)
}

/// The teacher-forced NLL of each item's reference (training's loss path: the record becomes a
/// sample exactly as in training, responses masked in, and `Trainable::loss` scores it with
/// `model.adapters` applied); `None` per item when no metric is `nll`.
fn nll_per_item(
    model: &Model,
    tok: &Tokenizer,
    tmpl: &ChatTemplate,
    items: &[Item],
    metrics: &Metrics,
    opts: &EvalOptions,
    path: &Path,
) -> Result<Vec<Option<Score>>> {
    if !metrics.list.iter().any(|(_, m)| matches!(m, Metric::Nll)) {
        return Ok(vec![None; items.len()]);
    }
    let tr = Trainable::new(model);
    let none = LoraSet { alpha: 0.0, layers: vec![Vec::new(); model.cfg.n_layer] };
    let sopts = SampleOptions { seq_len: opts.seq_len, train_on_prompt: false, system_prompt: None };
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        let (s, _) =
            build_sample(&it.content, tok, Some(tmpl), sopts).map_err(|p| Error::Data(DataError::at(path, it.line, it.element, p)))?;
        let positions: Vec<u32> = (0..s.tokens.len() as u32).collect();
        let view = SeqView { tokens: &s.tokens, labels: &s.labels, positions: &positions, segments: None };
        let (sum, tokens) = tr.loss(&none, &view)?;
        out.push(Some(Score::Nll { sum, tokens }));
    }
    Ok(out)
}
