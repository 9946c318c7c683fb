//! Llama 2/3, Mistral, SmolLM2, CALM3. Block: RMSNorm, q/k/v (biases optional), NORM rope
//! (the GGUF converter permuted Q/K rows so adjacent pairs rotate), attention, output
//! projection, residual; RMSNorm, silu(gate)·up, down projection, residual.

use super::BlockSpec;

/// Which optional tensors the blocks of this architecture carry.
pub const BLOCK: BlockSpec = BlockSpec { qkv_bias: false, qk_norm: false, post_norms: false };
