//! Qwen2 / Qwen2.5. As llama, but q/k/v carry biases and rope is NEOX (rotating halves).

use super::BlockSpec;

/// Which optional tensors the blocks of this architecture carry.
pub const BLOCK: BlockSpec = BlockSpec { qkv_bias: true, qk_norm: false, post_norms: false };
