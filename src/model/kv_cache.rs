//! Per-layer key/value cache for incremental decoding, in a backend's buffers.

/// Keys and values of every layer for positions `0..n_past` (host `Vec<f32>` by default).
#[derive(Clone, Debug)]
pub struct KvCache<T = Vec<f32>> {
    /// Capacity in positions.
    pub n_ctx: usize,
    /// Positions filled.
    pub n_past: usize,
    /// Per layer `[n_ctx, n_head_kv·head_dim]`.
    pub k: Vec<T>,
    /// Per layer `[n_ctx, n_head_kv·v_dim]`.
    pub v: Vec<T>,
}

impl<T> KvCache<T> {
    /// Forget everything (keeps the memory).
    pub fn clear(&mut self) {
        self.n_past = 0;
    }
}
