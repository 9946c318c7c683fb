//! Token generation: sampling (greedy, temperature, top-k, top-p with a seeded RNG), a
//! streaming loop that stops at end-of-generation tokens, and KV-cache prefix reuse so a chat
//! only evaluates the new part of the conversation.

use std::time::Instant;

use crate::error::{Error, Result};
use crate::model::{KvCache, Model};
use crate::tokenizer::Tokenizer;
use crate::util::rng::{SplitMix64, GOLDEN_GAMMA};

/// Sampling settings (`temp = 0` is greedy).
#[derive(Clone, Debug)]
pub struct SamplerConfig {
    /// Temperature; 0 picks the most likely token.
    pub temp: f32,
    /// Keep only the k most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1 = all).
    pub top_p: f32,
    /// RNG seed.
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig { temp: 0.0, top_k: 40, top_p: 0.95, seed: 0 }
    }
}

/// A seeded sampler.
pub struct Sampler {
    cfg: SamplerConfig,
    rng: SplitMix64,
}

impl Sampler {
    /// New sampler.
    pub fn new(cfg: SamplerConfig) -> Self {
        let rng = SplitMix64::new(cfg.seed ^ GOLDEN_GAMMA);
        Sampler { cfg, rng }
    }

    /// Pick the next token from one row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.cfg.temp <= 0.0 {
            return argmax(logits) as u32;
        }
        let mut cand: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
        let k = if self.cfg.top_k == 0 { cand.len() } else { self.cfg.top_k.min(cand.len()) };
        if k < cand.len() {
            cand.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
            cand.truncate(k);
        }
        cand.sort_by(|a, b| b.1.total_cmp(&a.1));
        let max = cand[0].1;
        let mut probs: Vec<f64> = cand.iter().map(|&(_, l)| (((l - max) / self.cfg.temp) as f64).exp()).collect();
        let sum: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        let mut keep = probs.len();
        if self.cfg.top_p < 1.0 {
            let mut acc = 0.0;
            for (i, p) in probs.iter().enumerate() {
                acc += p;
                if acc >= self.cfg.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
        }
        let total: f64 = probs[..keep].iter().sum();
        let mut r = self.rng.next_f64() * total;
        for i in 0..keep {
            r -= probs[i];
            if r <= 0.0 {
                return cand[i].0;
            }
        }
        cand[keep - 1].0
    }
}

/// Index of the largest value.
pub fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| if x > bv { (i, x) } else { (bi, bv) }).0
}

/// What a generation run did.
#[derive(Clone, Debug, Default)]
pub struct GenStats {
    /// Prompt tokens evaluated (after prefix reuse).
    pub prompt_evaluated: usize,
    /// Tokens generated.
    pub generated: usize,
    /// Seconds spent on the prompt.
    pub prompt_secs: f64,
    /// Seconds spent generating.
    pub gen_secs: f64,
    /// Whether an end-of-generation token stopped it.
    pub stopped_at_eog: bool,
}

/// Streams UTF-8 text from token pieces, holding back incomplete multi-byte sequences.
#[derive(Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Add bytes; return the text that is complete so far.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.pending.len(), // invalid bytes: flush lossily
        };
        let out = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
        self.pending.drain(..valid);
        out
    }
    /// Whatever is left (lossy).
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

/// A model with its cache and the tokens the cache holds, for multi-turn use.
pub struct Session<'m, 'a> {
    /// The model.
    pub model: &'m Model<'a>,
    /// Its KV cache.
    pub cache: KvCache,
    /// Tokens whose keys/values the cache holds, in order.
    pub history: Vec<u32>,
}

impl<'m, 'a> Session<'m, 'a> {
    /// A session with room for `n_ctx` positions.
    pub fn new(model: &'m Model<'a>, n_ctx: usize) -> Self {
        Session { model, cache: model.new_cache(n_ctx), history: Vec::new() }
    }

    /// Make the cache hold exactly `prompt`, evaluating only what differs from the history;
    /// returns the logits after the last prompt token.
    pub fn prefill(&mut self, prompt: &[u32], stats: &mut GenStats) -> Result<Vec<f32>> {
        if prompt.is_empty() {
            return Err(Error::usage("empty prompt"));
        }
        let mut common = self.history.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        if common == prompt.len() {
            common -= 1; // re-evaluate the last token to get its logits
        }
        self.cache.n_past = common;
        self.history.truncate(common);
        let t0 = Instant::now();
        let h = self.model.forward(&prompt[common..], &mut self.cache)?;
        self.history.extend_from_slice(&prompt[common..]);
        stats.prompt_evaluated += prompt.len() - common;
        stats.prompt_secs += t0.elapsed().as_secs_f64();
        let e = self.model.cfg.n_embd;
        Ok(self.model.logits(&h[h.len() - e..]))
    }

    /// Generate up to `n` tokens after `prompt`, calling `on_token` with each token id (stop
    /// early by returning false). Stops at end-of-generation tokens (not emitted).
    pub fn generate(
        &mut self,
        tok: &Tokenizer,
        prompt: &[u32],
        n: usize,
        sampler: &mut Sampler,
        mut on_token: impl FnMut(u32) -> bool,
    ) -> Result<GenStats> {
        let mut stats = GenStats::default();
        let mut logits = self.prefill(prompt, &mut stats)?;
        let t0 = Instant::now();
        for _ in 0..n {
            let next = sampler.sample(&logits);
            if tok.is_eog(next) {
                stats.stopped_at_eog = true;
                break;
            }
            stats.generated += 1;
            if !on_token(next) {
                break;
            }
            if self.cache.n_past >= self.cache.n_ctx {
                break;
            }
            let h = self.model.forward(&[next], &mut self.cache)?;
            self.history.push(next);
            logits = self.model.logits(&h);
        }
        stats.gen_secs = t0.elapsed().as_secs_f64();
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_stream_holds_back_partial_chars() {
        let mut s = Utf8Stream::default();
        let bytes = "日本".as_bytes();
        assert_eq!(s.push(&bytes[..2]), "");
        assert_eq!(s.push(&bytes[2..4]), "日");
        assert_eq!(s.push(&bytes[4..]), "本");
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn greedy_and_seeded_sampling() {
        let logits = [0.1f32, 2.0, 1.9, -1.0];
        assert_eq!(Sampler::new(SamplerConfig::default()).sample(&logits), 1);
        let cfg = SamplerConfig { temp: 1.0, top_k: 3, top_p: 1.0, seed: 42 };
        let a: Vec<u32> = (0..50).scan(Sampler::new(cfg.clone()), |s, _| Some(s.sample(&logits))).collect();
        let b: Vec<u32> = (0..50).scan(Sampler::new(cfg), |s, _| Some(s.sample(&logits))).collect();
        assert_eq!(a, b, "same seed, same samples");
        assert!(a.iter().all(|&t| t != 3), "top-k 3 excludes the least likely token");
        assert!(a.contains(&1) && a.contains(&2));
    }
}
