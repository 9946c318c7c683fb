//! Peak-memory planner: an estimate of a training run's resident memory, printed before the
//! run starts and checked against `--max-ram`.
//!
//! The terms follow the trainer's allocations: the memory-mapped weights (every tensor is read
//! each step, so all of it becomes resident page cache counted in RSS), LoRA parameters with
//! their gradients and two AdamW moments, the per-layer checkpoints (one `[T, n_embd]` input
//! per block), the intermediates kept for the last blocks within the keep budget (the backward
//! skips their recompute), one block's recomputed intermediates plus its backward buffers, the
//! chunked loss's logits, the dataset's tokens, and a fixed runtime overhead.

use crate::error::{Error, Result};
use crate::lora::Target;
use crate::model::Model;
use crate::ops::loss::CHUNK;

/// Estimated bytes per component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Mapped weight bytes (become resident as they are read).
    pub weights: u64,
    /// LoRA parameters, gradients and AdamW moments (4 copies, f32).
    pub lora: u64,
    /// Per-layer checkpoints of the block inputs.
    pub checkpoints: u64,
    /// Intermediates kept for the last blocks (not recomputed).
    pub kept: u64,
    /// How many blocks `kept` covers.
    pub kept_layers: usize,
    /// One block's forward intermediates and backward buffers.
    pub block: u64,
    /// Logits of one loss chunk and its gradient.
    pub loss: u64,
    /// Tokenized dataset.
    pub data: u64,
    /// Runtime, tokenizer, thread stacks, allocator slack.
    pub overhead: u64,
}

impl MemoryPlan {
    /// Sum of all terms.
    pub fn total(&self) -> u64 {
        self.weights + self.lora + self.checkpoints + self.kept + self.block + self.loss + self.data + self.overhead
    }
}

/// Format bytes as `123.4 MiB` / `1.23 GiB`.
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    }
}

/// Parse `6G`, `512M`, `1.5GiB`, `2000000000` into bytes.
pub fn parse_bytes(s: &str) -> Result<u64> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let (num, mult) = [
        ("gib", 1u64 << 30),
        ("gb", 1 << 30),
        ("g", 1 << 30),
        ("mib", 1 << 20),
        ("mb", 1 << 20),
        ("m", 1 << 20),
        ("kib", 1 << 10),
        ("kb", 1 << 10),
        ("k", 1 << 10),
    ]
    .iter()
    .find_map(|(suf, m)| lower.strip_suffix(suf).map(|n| (n.trim().to_string(), *m)))
    .unwrap_or((lower.clone(), 1));
    let v: f64 = num.parse().map_err(|_| Error::usage(format!("'{s}' is not a size (examples: 6G, 512M)")))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(Error::usage(format!("'{s}' is not a positive size")));
    }
    Ok((v * mult as f64) as u64)
}

impl std::fmt::Display for MemoryPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (weights {} mapped, LoRA+grads+AdamW {}, layer checkpoints {}, kept intermediates {} ({} blocks), block buffers {}, loss chunk {}, data {}, runtime {})",
            human(self.total()),
            human(self.weights),
            human(self.lora),
            human(self.checkpoints),
            human(self.kept),
            self.kept_layers,
            human(self.block),
            human(self.loss),
            human(self.data),
            human(self.overhead)
        )
    }
}

/// Estimate peak memory for training `model` with LoRA of `rank` on `targets`, sequences of
/// `seq_len` tokens, a dataset of `data_tokens` tokens, and `keep_bytes` of kept block
/// intermediates (see [`StepOptions::keep_bytes`](crate::train::block::StepOptions)).
pub fn plan(model: &Model, targets: &[Target], rank: usize, seq_len: usize, data_tokens: usize, keep_bytes: u64) -> MemoryPlan {
    let c = &model.cfg;
    let f = 4u64;
    let mut weights = model.tok_embd.byte_size() as u64;
    if !std::sync::Arc::ptr_eq(&model.output, &model.tok_embd) {
        weights += model.output.byte_size() as u64;
    }
    let mut lora_params = 0u64;
    for il in 0..c.n_layer {
        for t in Target::ALL {
            let w = model.weight(il, t);
            weights += w.byte_size() as u64;
            if targets.contains(&t) {
                lora_params += (rank * (w.n_in() + w.n_out())) as u64;
            }
        }
    }
    let t = seq_len as u64;
    let (e, hd, vd, ff) = (c.n_embd as u64, c.head_dim as u64, c.v_dim as u64, c.n_ff as u64);
    let (qd, kd, vvd, ad) = (c.n_head as u64 * hd, c.n_head_kv as u64 * hd, c.n_head_kv as u64 * vd, c.n_head as u64 * vd);
    // Saved intermediates: xn1, o_pre, x1, xn2, d_pre (5·e), q_pre, q (2·qd), k_pre, k (2·kd),
    // v, attn, lse, gate, up, h, LoRA codes.
    let saved = t * (5 * e + 2 * qd + 2 * kd + vvd + ad + c.n_head as u64 + 3 * ff + 7 * rank as u64);
    // Backward: dx, dx1, dd_pre, dxn2, dxn1, norm scratch (6·e), dh, dgate, dup (3·ff), dattn,
    // dq, dk, dv, matmul-backward temporaries; the block output during recompute.
    let backward = t * (7 * e + 3 * ff + ad + qd + kd + vvd + ff.max(qd));
    // Attention backward scratch: a row of scores per (thread, head) — small; the forward's
    // scratch is T per row.
    let attn = t * 4 * rayon::current_num_threads() as u64;
    let l0 = &model.layers[0];
    let has = [l0.q_norm.is_some(), l0.k_norm.is_some(), l0.post_attn_norm.is_some(), l0.post_ffw_norm.is_some()];
    let per_block = 4 * crate::train::block::saved_floats(c, has, rank, targets.len(), seq_len);
    let kept_layers = (keep_bytes / per_block.max(1)).min(c.n_layer as u64) as usize;
    MemoryPlan {
        weights,
        lora: 4 * lora_params * f,
        checkpoints: (c.n_layer as u64 + 2) * t * e * f,
        kept: kept_layers as u64 * per_block,
        kept_layers,
        block: (saved + backward + attn) * f,
        loss: 2 * CHUNK.min(seq_len) as u64 * c.n_vocab as u64 * f + 2 * t * e * f,
        data: data_tokens as u64 * 16,
        overhead: 96 << 20,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("6G").unwrap(), 6 << 30);
        assert_eq!(parse_bytes("512M").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("-1G").is_err());
    }
}
