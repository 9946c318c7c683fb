//! Per-layer key/value cache (f32) for incremental decoding.

/// Keys and values of every layer for positions `0..n_past`.
#[derive(Clone, Debug)]
pub struct KvCache {
    /// Capacity in positions.
    pub n_ctx: usize,
    /// Positions filled.
    pub n_past: usize,
    /// Per layer `[n_ctx, n_head_kv·head_dim]`.
    pub k: Vec<Vec<f32>>,
    /// Per layer `[n_ctx, n_head_kv·v_dim]`.
    pub v: Vec<Vec<f32>>,
}

impl KvCache {
    /// An empty cache.
    pub fn new(n_layer: usize, n_ctx: usize, k_width: usize, v_width: usize) -> Self {
        KvCache {
            n_ctx,
            n_past: 0,
            k: (0..n_layer).map(|_| vec![0f32; n_ctx * k_width]).collect(),
            v: (0..n_layer).map(|_| vec![0f32; n_ctx * v_width]).collect(),
        }
    }
    /// Forget everything (keeps the memory).
    pub fn clear(&mut self) {
        self.n_past = 0;
    }
}
