//! Qwen3. As llama with NEOX rope, no biases, and a per-head RMSNorm of q and k before rope.

use super::BlockSpec;

/// Which optional tensors the blocks of this architecture carry.
pub const BLOCK: BlockSpec = BlockSpec { qkv_bias: false, qk_norm: true, post_norms: false };
