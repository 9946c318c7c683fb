//! Gemma 3. Embeddings × √n_embd; per-head q/k RMSNorm; NEOX rope (local layers use
//! `rope.freq_base_swa` and a sliding window, five local layers then one global); RMSNorm after
//! attention and after the FFN, before each residual add; GELU-tanh gate. GGUF norm weights
//! already hold w+1, so every norm is a plain `x·w`.

use super::BlockSpec;

/// Which optional tensors the blocks of this architecture carry.
pub const BLOCK: BlockSpec = BlockSpec { qkv_bias: false, qk_norm: true, post_norms: true };
