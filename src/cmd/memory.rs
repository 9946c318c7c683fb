//! Enforcing `--max-ram` (and physical memory) before work starts: once before the data is
//! read (from the files' sizes), once with the full plan (see `finetune::train::plan`). The
//! trainer checks the resident size after every step as well (`TrainOptions::max_rss`).

use std::path::Path;

use finetune::lora::Target;
use finetune::model::Model;
use finetune::train::plan::{human, plan};
use finetune::{Error, Result};

/// Resident bytes per byte of data file while it is read and tokenized: the file itself, its
/// JSON values, the records' strings, the pre-tokenizer's pieces and the samples (measured:
/// about LOAD_FACTOR × the file size at the peak of loading).
pub const LOAD_FACTOR: u64 = 6;
/// Tokens per byte of data file assumed before tokenizing (English text: ~4 bytes per token).
const BYTES_PER_TOKEN: u64 = 3;

/// Physical memory of this machine (`MemTotal` of `/proc/meminfo`), when known.
pub fn physical_ram() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// Refuse when `total` planned bytes exceed `--max-ram`, or, without it, the physical memory.
pub fn check_plan(total: u64, max_ram: Option<u64>) -> Result<()> {
    match (max_ram, physical_ram()) {
        (Some(limit), _) if total > limit => Err(Error::usage(format!(
            "the planned peak memory {} exceeds --max-ram {}: lower --seq-len or --rank, use fewer --targets, less data, or a smaller model",
            human(total),
            human(limit)
        ))),
        (None, Some(ram)) if total > ram => Err(Error::usage(format!(
            "the planned peak memory {} exceeds this machine's physical memory {}: lower --seq-len or --rank, use fewer --targets, \
             less data, or a smaller model (or set --max-ram to run anyway)",
            human(total),
            human(ram)
        ))),
        _ => Ok(()),
    }
}

/// Before reading the data: the plan with the data files' expected tokens plus the transient
/// memory of reading them must fit (see [`check_plan`]).
pub fn check_before_load(
    model: &Model,
    targets: &[Target],
    rank: usize,
    seq_len: usize,
    files: &[Option<&Path>],
    max_ram: Option<u64>,
) -> Result<()> {
    let bytes: u64 = files.iter().flatten().filter_map(|f| std::fs::metadata(f).ok()).filter(|m| m.is_file()).map(|m| m.len()).sum();
    let p = plan(model, targets, rank, seq_len, (bytes / BYTES_PER_TOKEN) as usize, 0);
    let total = p.total() + LOAD_FACTOR * bytes;
    if bytes < 1 << 20 {
        return check_plan(total, max_ram);
    }
    check_plan(total, max_ram).map_err(|e| Error::usage(format!("{e} (checked before reading {} of data)", human(bytes))))
}
