//! Activations of the feed-forward block: SwiGLU (`silu(gate)·up`) and GeGLU with the tanh
//! approximation of GELU (`gelu_tanh(gate)·up`), as llama.cpp computes them.

/// silu(x) = x·σ(x)
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// GELU, tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + 0.044715 * x * x)).tanh())
}

/// Gated activation kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// silu(gate)·up (llama, qwen)
    SwiGlu,
    /// gelu_tanh(gate)·up (gemma)
    GeGlu,
}

/// `gate[i] = act(gate[i]) · up[i]` in place.
pub fn glu_inplace(act: Act, gate: &mut [f32], up: &[f32]) {
    match act {
        Act::SwiGlu => gate.iter_mut().zip(up).for_each(|(g, &u)| *g = silu(*g) * u),
        Act::GeGlu => gate.iter_mut().zip(up).for_each(|(g, &u)| *g = gelu_tanh(*g) * u),
    }
}
