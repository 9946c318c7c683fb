//! Activations of the feed-forward block: SwiGLU (`silu(gate)·up`) and GeGLU with the tanh
//! approximation of GELU (`gelu_tanh(gate)·up`), as llama.cpp computes them, and their
//! backward ([`glu_backward`]).

use crate::ops::vexp::exp_sub;

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
/// Elementwise, so long inputs are split across threads (the same bits).
pub fn glu_inplace(act: Act, gate: &mut [f32], up: &[f32]) {
    use rayon::prelude::*;
    assert_eq!(gate.len(), up.len(), "glu: gate and up differ in size");
    gate.par_chunks_mut(PAR_CHUNK).zip(up.par_chunks(PAR_CHUNK)).for_each(|(g, u)| match act {
        Act::SwiGlu => {
            // silu(g) = g / (1 + exp(−g)), the exponentials eight lanes at a time
            // ([`exp_sub`]; the scalar `f32::exp` where SIMD is off).
            let mut e = [0f32; PAR_CHUNK];
            let e = neg_exp(g, &mut e);
            g.iter_mut().zip(u).zip(e.iter()).for_each(|((g, &u), &e)| *g = *g / (1.0 + e) * u);
        }
        Act::GeGlu => g.iter_mut().zip(u).for_each(|(g, &u)| *g = gelu_tanh(*g) * u),
    });
}

/// `exp(−x)` of each of `x` into the front of `buf` ([`exp_sub`]).
#[inline]
fn neg_exp<'b>(x: &[f32], buf: &'b mut [f32; PAR_CHUNK]) -> &'b [f32] {
    let e = &mut buf[..x.len()];
    e.iter_mut().zip(x).for_each(|(e, &x)| *e = -x);
    exp_sub(e, 0.0);
    e
}

/// Elements per parallel task of the elementwise GLU ops.
const PAR_CHUNK: usize = 1 << 13;

/// [`glu_inplace`] as llama.cpp's CPU backend computes GeGLU: GELU read from a table indexed by
/// the input rounded to f16, holding f16 values (`GGML_GELU_FP16`, [`gelu_f16_table`]), 0 below
/// −10 and the identity above 10. SwiGLU as its AVX-512 `ggml_v_silu`: `x / (1 + ggml_v_expf(−x))`.
pub fn glu_inplace_ggml(act: Act, gate: &mut [f32], up: &[f32]) {
    use rayon::prelude::*;
    // Element-wise, so chunks across threads give the same bits.
    const CHUNK: usize = 1 << 14;
    if gate.len() > CHUNK {
        return gate.par_chunks_mut(CHUNK).zip(up.par_chunks(CHUNK)).for_each(|(g, u)| glu_ggml_serial(act, g, u));
    }
    glu_ggml_serial(act, gate, up)
}

fn glu_ggml_serial(act: Act, gate: &mut [f32], up: &[f32]) {
    use crate::ops::attention::ggml_expf;
    match act {
        Act::SwiGlu => {
            #[cfg(target_arch = "aarch64")]
            if crate::quant::simd_enabled() {
                return neon::swiglu_ggml(gate, up);
            }
            #[cfg(target_arch = "x86_64")]
            if crate::quant::simd_enabled() {
                // SAFETY: AVX2/FMA checked by simd_enabled() (hardware FMA for ggml_expf).
                return unsafe { swiglu_ggml_fma(gate, up) };
            }
            gate.iter_mut().zip(up).for_each(|(g, &u)| *g = *g / (1.0 + ggml_expf(-*g)) * u)
        }
        Act::GeGlu => {
            #[cfg(target_arch = "x86_64")]
            if crate::quant::simd_enabled() {
                // SAFETY: AVX2/FMA/F16C checked by simd_enabled().
                return unsafe { geglu_ggml_avx2(gate, up) };
            }
            geglu_ggml_scalar(gate, up)
        }
    }
}

/// The scalar GeGLU of [`glu_inplace_ggml`] (the reference of its SIMD path).
pub fn geglu_ggml_scalar(gate: &mut [f32], up: &[f32]) {
    let table = gelu_f16_table();
    gate.iter_mut().zip(up).for_each(|(g, &u)| {
        let x = *g;
        *g = if x <= -10.0 {
            0.0
        } else if x >= 10.0 {
            x * u
        } else {
            table[half::f16::from_f32(x).to_bits() as usize] * u
        };
    })
}

/// `f16_round(gelu_tanh_ggml(x))` for every f16 value `x`, indexed by its bits (ggml's
/// `GGML_GELU_FP16` table), built on first use: a lookup of `f16(x)`'s bits gives exactly
/// `f16_round(gelu_tanh_ggml(f16_round(x)))`.
pub fn gelu_f16_table() -> &'static [f32; 65536] {
    use crate::quant::util::f16_round;
    static TABLE: std::sync::OnceLock<Box<[f32; 65536]>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Box::new([0f32; 65536]);
        for (i, v) in t.iter_mut().enumerate() {
            *v = f16_round(gelu_tanh_ggml(half::f16::from_bits(i as u16).to_f32()));
        }
        t
    })
}

/// [`geglu_ggml_scalar`] eight values at a time: the same f16 rounding (F16C, round to nearest
/// even, as `half` does), a gather from the same table, the same products and cut-offs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn geglu_ggml_avx2(gate: &mut [f32], up: &[f32]) {
    use std::arch::x86_64::*;
    let table = gelu_f16_table();
    let n = gate.len().min(up.len());
    let (lo, hi) = (_mm256_set1_ps(-10.0), _mm256_set1_ps(10.0));
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 ≤ n ≤ both lengths; the indices are u16 values < table.len().
        unsafe {
            let x = _mm256_loadu_ps(gate.as_ptr().add(i));
            let u = _mm256_loadu_ps(up.as_ptr().add(i));
            let h = _mm256_cvtepu16_epi32(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x));
            let t = _mm256_mul_ps(_mm256_i32gather_ps::<4>(table.as_ptr(), h), u);
            let r = _mm256_blendv_ps(t, _mm256_mul_ps(x, u), _mm256_cmp_ps::<_CMP_GE_OQ>(x, hi));
            _mm256_storeu_ps(gate.as_mut_ptr().add(i), _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(x, lo), r));
        }
        i += 8;
    }
    geglu_ggml_scalar(&mut gate[i..], &up[i.min(up.len())..]);
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
    type Scalar = fn(f32) -> f32;
    let (f, df): (Scalar, Scalar) = match act {
        Act::SwiGlu => (silu, silu_grad),
        Act::GeGlu => (gelu_tanh, gelu_tanh_grad),
    };
    use rayon::prelude::*;
    // Elementwise: long inputs split across threads (the same bits).
    let ins = gate.par_chunks(PAR_CHUNK).zip(up.par_chunks(PAR_CHUNK)).zip(dh.par_chunks(PAR_CHUNK));
    let outs = dgate.par_chunks_mut(PAR_CHUNK).zip(dup.par_chunks_mut(PAR_CHUNK));
    ins.zip(outs).for_each(|(((gate, up), dh), (dgate, dup))| {
        if act == Act::SwiGlu {
            // σ(g) = 1 / (1 + exp(−g)) with the exponentials as in [`glu_inplace`].
            let mut e = [0f32; PAR_CHUNK];
            let e = neg_exp(gate, &mut e);
            for i in 0..gate.len() {
                let (g, d, e) = (gate[i], dh[i], e[i]);
                let s = 1.0 / (1.0 + e);
                dgate[i] = d * up[i] * (s * (1.0 + g * (1.0 - s)));
                dup[i] = d * (g / (1.0 + e));
            }
            return;
        }
        for i in 0..gate.len() {
            let (g, d) = (gate[i], dh[i]);
            dgate[i] = d * up[i] * df(g);
            dup[i] = d * f(g);
        }
    });
}

/// SwiGLU in ggml numerics four lanes at a time: `g / (1 + ggml_expf(−g)) · u` with the
/// vector [`crate::ops::vexp`] `ggml_expf` (same bits), IEEE `fdiv`/`fmul` as the scalar code.
#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    use crate::ops::attention::ggml_expf;
    use crate::ops::vexp::neon_ggml::exp4;

    pub(super) fn swiglu_ggml(gate: &mut [f32], up: &[f32]) {
        // As the scalar `zip`: the shorter length.
        let n = gate.len().min(up.len());
        let (gate, up) = (&mut gate[..n], &up[..n]);
        let mut g4 = gate.chunks_exact_mut(4);
        let mut u4 = up.chunks_exact(4);
        for (g, u) in (&mut g4).zip(&mut u4) {
            // SAFETY: four floats read from and written to four-float chunks; NEON is baseline.
            unsafe {
                let x = vld1q_f32(g.as_ptr());
                let s = vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0), exp4(vnegq_f32(x))));
                vst1q_f32(g.as_mut_ptr(), vmulq_f32(s, vld1q_f32(u.as_ptr())));
            }
        }
        for (g, &u) in g4.into_remainder().iter_mut().zip(u4.remainder()) {
            *g = *g / (1.0 + ggml_expf(-*g)) * u;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::util::f16_round;

    #[test]
    fn gelu_table_equals_direct_formula_for_every_f16_input() {
        let t = gelu_f16_table();
        for bits in 0..=u16::MAX {
            let x = half::f16::from_bits(bits).to_f32();
            let direct = f16_round(gelu_tanh_ggml(f16_round(x)));
            assert_eq!(t[bits as usize].to_bits(), direct.to_bits(), "x = {x} ({bits:#06x})");
        }
        // f32 inputs between f16 values: the lookup rounds them as f16_round does.
        let mut x = -9.999_5f32;
        while x < 10.0 {
            let (mut g, up) = ([x], [1.5f32]);
            glu_inplace_ggml(Act::GeGlu, &mut g, &up);
            assert_eq!(g[0].to_bits(), (f16_round(gelu_tanh_ggml(f16_round(x))) * 1.5).to_bits(), "x = {x}");
            x += 0.000_731;
        }
    }

    /// SwiGLU and its backward on the vector exponential (several parallel chunks and a
    /// ragged tail) against the same formulas in f64: within a few ulp, also where exp(−g)
    /// overflows or underflows (|g| up to 120).
    #[test]
    fn swiglu_forward_and_backward_match_f64() {
        let n = 3 * PAR_CHUNK + 77;
        let gate: Vec<f32> = (0..n).map(|i| ((i * 7919 % 4001) as f32 - 2000.0) * 0.06).collect();
        let up: Vec<f32> = (0..n).map(|i| ((i * 104_729 % 997) as f32 - 498.0) * 0.004).collect();
        let dh: Vec<f32> = (0..n).map(|i| ((i * 31 % 211) as f32 - 105.0) * 0.01).collect();
        let sig = |g: f64| 1.0 / (1.0 + (-g).exp());
        let close = |got: f32, want: f64, scale: f64, what: &str, i: usize| {
            assert!((got as f64 - want).abs() <= 1e-6 * want.abs() + 1e-7 * scale, "{what}[{i}] = {got}, want {want} (g = {})", gate[i]);
        };
        let mut h = gate.clone();
        glu_inplace(Act::SwiGlu, &mut h, &up);
        let (mut dg, mut du) = (vec![0f32; n], vec![0f32; n]);
        glu_backward(Act::SwiGlu, &gate, &up, &dh, &mut dg, &mut du);
        for i in 0..n {
            let (g, u, d) = (gate[i] as f64, up[i] as f64, dh[i] as f64);
            let s = sig(g);
            close(h[i], g * s * u, (g * u).abs(), "h", i);
            close(du[i], d * g * s, (d * g).abs(), "dup", i);
            close(dg[i], d * u * s * (1.0 + g * (1.0 - s)), (d * u * (1.0 + g.abs())).abs(), "dgate", i);
        }
        // The scalar definitions agree with the vector path to rounding.
        for i in (0..n).step_by(97) {
            let g = gate[i];
            close(h[i], (silu(g) * up[i]) as f64, (g * up[i]).abs() as f64, "h vs silu", i);
            close(dg[i], (dh[i] * up[i] * silu_grad(g)) as f64, (dh[i] * up[i] * (1.0 + g.abs())).abs() as f64, "dgate vs silu_grad", i);
        }
    }
}
