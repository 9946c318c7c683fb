//! Activations of the feed-forward block: SwiGLU (`silu(gate)·up`) and GeGLU with the tanh
//! approximation of GELU (`gelu_tanh(gate)·up`), as llama.cpp computes them, and their
//! backward ([`glu_backward`]).

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

/// [`gelu_tanh`] as ggml's CPU backend builds its f16 GELU table (`ggml_gelu_f32` compiled by
/// GCC, which contracts `1 + a·x·x` into one fused multiply-add), bit for bit.
#[inline]
pub fn gelu_tanh_ggml(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let inner = (0.044715 * x).mul_add(x, 1.0);
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * inner).tanh())
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

/// [`glu_inplace`] as llama.cpp's CPU backend computes GeGLU: GELU read from a table indexed by
/// the input rounded to f16, holding f16 values (`GGML_GELU_FP16`), 0 below −10 and the
/// identity above 10. SwiGLU as its AVX-512 `ggml_v_silu`: `x / (1 + ggml_v_expf(−x))`.
pub fn glu_inplace_ggml(act: Act, gate: &mut [f32], up: &[f32]) {
    use crate::ops::attention::ggml_expf;
    use crate::quant::util::f16_round;
    match act {
        Act::SwiGlu => {
            #[cfg(target_arch = "x86_64")]
            if crate::quant::simd_enabled() {
                // SAFETY: AVX2/FMA checked by simd_enabled() (hardware FMA for ggml_expf).
                return unsafe { swiglu_ggml_fma(gate, up) };
            }
            gate.iter_mut().zip(up).for_each(|(g, &u)| *g = *g / (1.0 + ggml_expf(-*g)) * u)
        }
        Act::GeGlu => gate.iter_mut().zip(up).for_each(|(g, &u)| {
            let x = *g;
            *g = if x <= -10.0 {
                0.0
            } else if x >= 10.0 {
                x * u
            } else {
                f16_round(gelu_tanh_ggml(f16_round(x))) * u
            };
        }),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn swiglu_ggml_fma(gate: &mut [f32], up: &[f32]) {
    use crate::ops::attention::ggml_expf;
    gate.iter_mut().zip(up).for_each(|(g, &u)| *g = *g / (1.0 + ggml_expf(-*g)) * u)
}

/// d silu(x)/dx = σ(x)·(1 + x·(1 − σ(x))).
#[inline]
pub fn silu_grad(x: f32) -> f32 {
    let s = 1.0 / (1.0 + (-x).exp());
    s * (1.0 + x * (1.0 - s))
}

/// d gelu_tanh(x)/dx = 0.5·(1 + t) + 0.5·x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²),
/// t = tanh(√(2/π)·(x + 0.044715·x³)).
#[inline]
pub fn gelu_tanh_grad(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let t = (SQRT_2_OVER_PI * x * (1.0 + 0.044715 * x * x)).tanh();
    0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x)
}

/// Backward of [`glu_inplace`] (`h = act(gate)·up`): `dgate = dh·up·act'(gate)`,
/// `dup = dh·act(gate)`; both overwritten. `gate` is the forward's input (pre-activation).
pub fn glu_backward(act: Act, gate: &[f32], up: &[f32], dh: &[f32], dgate: &mut [f32], dup: &mut [f32]) {
    let n = gate.len();
    assert!(up.len() == n && dh.len() == n && dgate.len() == n && dup.len() == n, "glu_backward: sizes differ");
    let (f, df): (fn(f32) -> f32, fn(f32) -> f32) = match act {
        Act::SwiGlu => (silu, silu_grad),
        Act::GeGlu => (gelu_tanh, gelu_tanh_grad),
    };
    for i in 0..n {
        let (g, d) = (gate[i], dh[i]);
        dgate[i] = d * up[i] * df(g);
        dup[i] = d * f(g);
    }
}
