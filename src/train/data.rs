//! The training data pipeline: a dataset file → records → loss-masked token samples →
//! (packed, shuffled) sequences.
//!
//! **Files.** JSON Lines (one object per line, blank lines ignored) or one JSON array (the first
//! non-blank character is `[`). Errors name `file:line` (for arrays, also the element index).
//!
//! **Records** ([`Format`], detected from the first record unless given):
//! `{"prompt","response"}` / `{"prompt","completion"}`, Alpaca `{"instruction","input"?,"output"}`,
//! Dolly `{"instruction","context"?,"response"}`, chat `{"messages":[{"role","content"},…]}`
//! (roles `system`, `user`, `assistant`) and raw `{"text"}`. Pair formats may carry a `"system"`
//! string, which becomes a system message.
//!
//! **Samples.** Conversations are rendered with the model's [`ChatTemplate`] and only the
//! assistant messages (with the end-of-turn token the template closes them with) are trained on,
//! unless [`DataOptions::train_on_prompt`]; see [`mask_chat`]. Raw text is trained on entirely.
//! Samples longer than [`DataOptions::seq_len`] are truncated.
//!
//! **Sequences.** [`Dataset::epoch_sequences`] shuffles the training samples with seed
//! `seed + epoch` ([`SplitMix64`]) and, with [`DataOptions::pack`], packs several per sequence
//! with segment ids and per-sample positions.
//!
//! ```no_run
//! use finetune::chat::ChatTemplate;
//! use finetune::gguf::GgufFile;
//! use finetune::tokenizer::Tokenizer;
//! use finetune::train::data::{DataOptions, Dataset};
//! let f = GgufFile::open("models/SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let (tok, tmpl) = (Tokenizer::from_gguf(&f)?, ChatTemplate::from_gguf(&f)?);
//! let opts = DataOptions { seq_len: 256, val_split: 0.05, ..DataOptions::default() };
//! let data = Dataset::load("examples/style_degozaru.jsonl".as_ref(), None, &tok, Some(&tmpl), &opts)?;
//! println!("{}", data.stats);
//! for seq in data.epoch_sequences(0) { /* train on seq.tokens / seq.labels */ }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod batch;
mod error;
mod read;
mod record;
mod tokenize;

use std::fmt;
use std::path::Path;

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

pub use crate::util::rng::SplitMix64;
pub use batch::{arrange, Sequence};
pub use error::{DataError, Problem};
pub use record::{detect, parse_record, read_records, read_records_max, records_from_bytes, shape_of, Content, Format, Record, RecordSet};
pub use tokenize::{build_sample, mask_chat, mask_text, to_sample, Masked, Sample, SampleOptions};

use crate::chat::ChatTemplate;
use crate::tokenizer::Tokenizer;

/// How to read and prepare a dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct DataOptions {
    /// Record format; [`Format::Auto`] detects it from each file's first record.
    pub format: Format,
    /// Maximum tokens per sequence; longer samples are truncated. At least 2.
    pub seq_len: usize,
    /// Train on the prompt tokens too, not only the responses.
    pub train_on_prompt: bool,
    /// Pack several samples into each sequence.
    pub pack: bool,
    /// Skip (and count) bad records instead of failing on the first.
    pub skip_bad_lines: bool,
    /// Fraction of the samples held out for validation, in `[0, 1)`; when > 0 and there are at
    /// least 2 samples, at least 1 and at most all but one are held out. Must be 0 when a
    /// validation file is given.
    pub val_split: f32,
    /// Seed for the validation split and the per-epoch shuffles.
    pub seed: u64,
    /// Replace every conversation's leading system messages by this one (no effect on raw text).
    pub system_prompt: Option<String>,
    /// Text normalisation applied to every message and raw text before tokenizing
    /// (`--normalize`; the same steps `finetune eval` applies).
    pub normalize: crate::normalize::Normalize,
    /// Largest data file read (bytes); larger files and non-regular files (directories, FIFOs,
    /// devices) are refused before reading.
    pub max_file_bytes: u64,
}

impl Default for DataOptions {
    fn default() -> Self {
        DataOptions {
            format: Format::Auto,
            seq_len: 512,
            train_on_prompt: false,
            pack: false,
            skip_bad_lines: false,
            val_split: 0.0,
            seed: 42,
            system_prompt: None,
            normalize: crate::normalize::Normalize::default(),
            max_file_bytes: crate::util::input::DEFAULT_MAX_INPUT_BYTES,
        }
    }
}

/// Salt for the validation split's generator, so that it is not the epoch-0 shuffle.
const VAL_SALT: u64 = 0x5641_4C5F_5350_4C54;

/// At most this many skipped-record errors are kept in [`DataStats::skipped_errors`].
pub const MAX_KEPT_SKIPPED: usize = 20;

/// What loading a dataset found.
#[derive(Debug, Default)]
pub struct DataStats {
    /// Format of the training file's records.
    pub format: Format,
    /// Good records read (training and validation files).
    pub records: usize,
    /// Samples made (= train + val).
    pub samples: usize,
    /// Training samples.
    pub train_samples: usize,
    /// Validation samples.
    pub val_samples: usize,
    /// Samples truncated to `seq_len`.
    pub truncated: usize,
    /// Bad records skipped (`skip_bad_lines`), including records that made no sample.
    pub skipped: usize,
    /// The first [`MAX_KEPT_SKIPPED`] skipped records' errors, for reporting.
    pub skipped_errors: Vec<DataError>,
    /// Tokens in all samples.
    pub tokens: usize,
    /// Trained positions (labels ≠ −1) in all samples.
    pub trained_tokens: usize,
}

impl fmt::Display for DataStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} records ({} format): {} samples ({} train, {} val), {} truncated, {} skipped; {} tokens, {} trained",
            self.records,
            self.format,
            self.samples,
            self.train_samples,
            self.val_samples,
            self.truncated,
            self.skipped,
            self.tokens,
            self.trained_tokens
        )
    }
}

/// Training and validation samples, ready to be arranged into sequences.
#[derive(Debug)]
pub struct Dataset {
    /// Training samples, in file order.
    pub train: Vec<Sample>,
    /// Validation samples, in file order.
    pub val: Vec<Sample>,
    /// What loading found.
    pub stats: DataStats,
    seq_len: usize,
    pack: bool,
    seed: u64,
}

/// Samples of one file plus what was skipped.
struct FileSamples {
    format: Format,
    records: usize,
    samples: Vec<Sample>,
    truncated: usize,
    skipped: Vec<DataError>,
}

fn load_file(path: &Path, tok: &Tokenizer, tmpl: Option<&ChatTemplate>, opts: &DataOptions) -> Result<FileSamples, DataError> {
    let mut set = read_records_max(path, opts.format, opts.skip_bad_lines, opts.max_file_bytes)?;
    if !opts.normalize.is_none() {
        for r in &mut set.records {
            r.content = normalize_content(&r.content, &opts.normalize);
        }
    }
    let system = opts.system_prompt.as_deref().map(|s| opts.normalize.apply(s));
    let sopts = SampleOptions { seq_len: opts.seq_len, train_on_prompt: opts.train_on_prompt, system_prompt: system.as_deref() };
    // The first error that ends the load (any error without `skip_bad_lines`, else one that
    // [`Problem::stops_run`]) stops the records not yet started: a template that fails on every
    // record costs one render per thread, not one per record.
    let stop = AtomicBool::new(false);
    let built: Vec<Option<Result<(Sample, bool), Problem>>> = set
        .records
        .par_iter()
        .map(|r| {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            let b = build_sample(&r.content, tok, tmpl, sopts);
            if matches!(&b, Err(p) if !opts.skip_bad_lines || p.stops_run()) {
                stop.store(true, Ordering::Relaxed);
            }
            Some(b)
        })
        .collect();
    let mut out = FileSamples { format: set.format, records: set.records.len(), samples: Vec::new(), truncated: 0, skipped: set.skipped };
    if stop.load(Ordering::Relaxed) {
        // The first (in file order) of the records that stopped the load.
        let first = set.records.iter().zip(&built).find_map(|(r, b)| match b {
            Some(Err(p)) if !opts.skip_bad_lines || p.stops_run() => Some(DataError::at(path, r.line, r.element, p.clone())),
            _ => None,
        });
        if let Some(e) = first {
            return Err(e);
        }
    }
    for (r, b) in set.records.iter().zip(built) {
        match b.expect("every record is built unless the load stopped") {
            Ok((s, truncated)) => {
                out.truncated += usize::from(truncated);
                out.samples.push(s);
            }
            Err(problem) => out.skipped.push(DataError::at(path, r.line, r.element, problem)),
        }
    }
    // Keep skipped errors in file order (parse failures and sample failures were collected apart).
    out.skipped.sort_by_key(|e| e.line().unwrap_or(0));
    if out.samples.is_empty() {
        let first = out.skipped.first().map(ToString::to_string).unwrap_or_default();
        return Err(DataError::NoUsableRecords { file: path.to_path_buf(), skipped: out.skipped.len(), first });
    }
    Ok(out)
}

/// `content` with every message (and raw text) normalised by `n`; the system prompt option is
/// normalised by the caller.
pub fn normalize_content(content: &Content, n: &crate::normalize::Normalize) -> Content {
    match content {
        Content::Text(t) => Content::Text(n.apply(t)),
        Content::Chat(msgs) => Content::Chat(msgs.iter().map(|m| crate::chat::Message::new(&m.role, n.apply(&m.content))).collect()),
    }
}

/// How many of `n` samples `val_split` holds out.
pub fn val_count(n: usize, val_split: f32) -> usize {
    if val_split <= 0.0 || n < 2 {
        return 0;
    }
    ((f64::from(val_split) * n as f64).round() as usize).clamp(1, n - 1)
}

impl DataOptions {
    /// Check the options for consistency; `has_val_file`: a validation file is given too.
    pub fn validate(&self, has_val_file: bool) -> Result<(), DataError> {
        if self.seq_len < 2 {
            return Err(DataError::Options(format!("seq_len must be at least 2, got {}", self.seq_len)));
        }
        if !(self.val_split.is_finite() && (0.0..1.0).contains(&self.val_split)) {
            return Err(DataError::Options(format!("val_split must be in [0, 1), got {}", self.val_split)));
        }
        if has_val_file && self.val_split > 0.0 {
            return Err(DataError::Options("give either a validation file or val_split > 0, not both".into()));
        }
        Ok(())
    }
}

impl Dataset {
    /// Read `path` (and `val_path`, if given, as the validation set), tokenize every record and
    /// hold out `val_split` of the samples when there is no validation file. `tmpl` may be
    /// `None` only for raw-text data.
    pub fn load(
        path: &Path,
        val_path: Option<&Path>,
        tok: &Tokenizer,
        tmpl: Option<&ChatTemplate>,
        opts: &DataOptions,
    ) -> Result<Dataset, DataError> {
        opts.validate(val_path.is_some())?;
        let main = load_file(path, tok, tmpl, opts)?;
        let mut stats = DataStats { format: main.format, records: main.records, truncated: main.truncated, ..Default::default() };
        let mut skipped = main.skipped;
        let (train, val) = match val_path {
            Some(vp) => {
                let v = load_file(vp, tok, tmpl, opts)?;
                stats.records += v.records;
                stats.truncated += v.truncated;
                skipped.extend(v.skipped);
                (main.samples, v.samples)
            }
            None => split(main.samples, opts.val_split, opts.seed),
        };
        stats.skipped = skipped.len();
        skipped.truncate(MAX_KEPT_SKIPPED);
        stats.skipped_errors = skipped;
        Ok(Self::with_stats(train, val, stats, opts))
    }

    fn with_stats(train: Vec<Sample>, val: Vec<Sample>, mut stats: DataStats, opts: &DataOptions) -> Dataset {
        let all = || train.iter().chain(&val);
        stats.train_samples = train.len();
        stats.val_samples = val.len();
        stats.samples = train.len() + val.len();
        stats.tokens = all().map(|s| s.tokens.len()).sum();
        stats.trained_tokens = all().map(Sample::n_trained).sum();
        Dataset { train, val, stats, seq_len: opts.seq_len, pack: opts.pack, seed: opts.seed }
    }

    /// The shuffle order of the training samples for `epoch` (seed `seed + epoch`).
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.train.len()).collect();
        SplitMix64::new(self.seed.wrapping_add(epoch)).shuffle(&mut order);
        order
    }

    /// The training sequences of `epoch`: samples shuffled by [`epoch_order`](Self::epoch_order),
    /// then packed or one per sequence (see [`arrange`]). Each sample appears exactly once.
    pub fn epoch_sequences(&self, epoch: u64) -> Vec<Sequence> {
        arrange(&self.train, &self.epoch_order(epoch), self.seq_len, self.pack)
    }

    /// The validation sequences, in file order (packed like the training ones).
    pub fn val_sequences(&self) -> Vec<Sequence> {
        let order: Vec<usize> = (0..self.val.len()).collect();
        arrange(&self.val, &order, self.seq_len, self.pack)
    }

    /// The maximum sequence length.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }
}

/// Hold out `val_count(n, val_split)` samples chosen by `seed`; both parts keep file order.
fn split(samples: Vec<Sample>, val_split: f32, seed: u64) -> (Vec<Sample>, Vec<Sample>) {
    let n_val = val_count(samples.len(), val_split);
    let mut idx: Vec<usize> = (0..samples.len()).collect();
    SplitMix64::new(seed ^ VAL_SALT).shuffle(&mut idx);
    let mut is_val = vec![false; samples.len()];
    for &i in &idx[..n_val] {
        is_val[i] = true;
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (s, v) in samples.into_iter().zip(is_val) {
        if v {
            val.push(s)
        } else {
            train.push(s)
        }
    }
    (train, val)
}
