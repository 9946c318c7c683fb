//! Perplexity computed the way llama.cpp's `perplexity` tool does (its default mode): the token
//! stream is cut into non-overlapping chunks of `n_ctx` tokens; when the model adds BOS, each
//! chunk's first token is replaced by BOS; each chunk is evaluated from an empty cache and only
//! the second half is scored — the logits at positions `n_ctx/2 .. n_ctx−2` predicting the
//! tokens after them (`n_ctx/2 − 1` predictions per chunk). PPL = exp(mean negative log-likelihood).

use crate::error::{Error, Result};
use crate::model::Model;

/// Result of a perplexity run.
#[derive(Clone, Debug)]
pub struct Perplexity {
    /// exp(mean NLL) over all scored tokens.
    pub ppl: f64,
    /// Running PPL after each chunk (what llama.cpp prints as `[i]value`).
    pub per_chunk: Vec<f64>,
    /// Tokens scored.
    pub scored: usize,
}

/// Log-softmax probability of `target` in one row of logits (f64 accumulation).
pub fn log_prob(logits: &[f32], target: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
    logits[target] as f64 - max - sum.ln()
}

/// Compute perplexity over `tokens` with chunks of `n_ctx`. `bos` replaces the first token of
/// each chunk (pass the model's BOS when it adds one, as llama.cpp does).
pub fn perplexity(
    m: &Model,
    tokens: &[u32],
    n_ctx: usize,
    bos: Option<u32>,
    mut progress: impl FnMut(usize, usize, f64),
) -> Result<Perplexity> {
    if n_ctx < 4 {
        return Err(Error::usage(format!("--ctx {n_ctx} is too small (at least 4)")));
    }
    let n_chunk = tokens.len() / n_ctx;
    if n_chunk == 0 {
        return Err(Error::usage(format!(
            "the text has {} tokens; perplexity needs at least one chunk of --ctx {n_ctx} (2×ctx recommended)",
            tokens.len()
        )));
    }
    let first = n_ctx / 2;
    let e = m.cfg.n_embd;
    let (mut nll, mut count) = (0f64, 0usize);
    let mut per_chunk = Vec::with_capacity(n_chunk);
    let mut cache = m.new_cache(n_ctx);
    for c in 0..n_chunk {
        let mut chunk = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
        if let Some(b) = bos {
            chunk[0] = b;
        }
        cache.clear();
        let hidden = m.forward(&chunk, &mut cache)?;
        // Logits only for the scored rows, a few at a time (never the whole chunk × vocab).
        for r0 in (first..n_ctx - 1).step_by(16) {
            let r1 = (r0 + 16).min(n_ctx - 1);
            let logits = m.logits(&hidden[r0 * e..r1 * e]);
            for (i, row) in logits.chunks_exact(m.cfg.n_vocab).enumerate() {
                let target = tokens[c * n_ctx + r0 + i + 1] as usize;
                nll -= log_prob(row, target);
                count += 1;
            }
        }
        let running = (nll / count as f64).exp();
        per_chunk.push(running);
        progress(c + 1, n_chunk, running);
    }
    Ok(Perplexity { ppl: (nll / count as f64).exp(), per_chunk, scored: count })
}
