//! Rounding f32 slices to f16 precision (llama.cpp's f16 KV cache and `vec_dot_type`), eight
//! at a time with F16C where available (four at a time with NEON's `fcvtn`/`fcvtl` on AArch64):
//! the same round-to-nearest-even conversions the `half` crate makes per value, so the results
//! are the bits of [`crate::quant::util::f16_round`] (checked by the unit test below).

use crate::quant::util::f16_round;

/// `x[i] = f16_round(x[i])` for every element.
pub fn round_f16_inplace(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::quant::simd_enabled() {
        // SAFETY: AVX2/FMA/F16C checked by simd_enabled() (quant::x86::available).
        return unsafe { round_f16c(x) };
    }
    #[cfg(target_arch = "aarch64")]
    if crate::quant::simd_enabled() {
        return round_neon(x);
    }
    x.iter_mut().for_each(|v| *v = f16_round(*v));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn round_f16c(x: &mut [f32]) {
    use std::arch::x86_64::*;
    let mut chunks = x.chunks_exact_mut(8);
    for c in &mut chunks {
        let p = c.as_mut_ptr();
        let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(p));
        _mm256_storeu_ps(p, _mm256_cvtph_ps(h));
    }
    chunks.into_remainder().iter_mut().for_each(|v| *v = f16_round(*v));
}

#[cfg(target_arch = "aarch64")]
fn round_neon(x: &mut [f32]) {
    use std::arch::aarch64::*;
    let mut chunks = x.chunks_exact_mut(4);
    for c in &mut chunks {
        let p = c.as_mut_ptr();
        // SAFETY: NEON is baseline on AArch64; four in-bounds floats. `fcvtn` rounds by FPCR
        // (nearest even, the Linux default), `fcvtl` widens exactly. Inline assembly: the
        // intrinsics' `float16x4_t` is not stable Rust.
        unsafe {
            let v = vld1q_f32(p);
            let r: float32x4_t;
            std::arch::asm!("fcvtn {t:v}.4h, {v:v}.4s", "fcvtl {r:v}.4s, {t:v}.4h", v = in(vreg) v, t = out(vreg) _, r = lateout(vreg) r, options(pure, nomem, nostack));
            vst1q_f32(p, r);
        }
    }
    chunks.into_remainder().iter_mut().for_each(|v| *v = f16_round(*v));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16c_rounding_matches_f16_round_bit_for_bit() {
        // Every f16 neighbourhood: exact values, halfway points (ties to even), overflow,
        // subnormals, infinities and NaN, plus a sweep of random bit patterns.
        let mut xs: Vec<f32> = Vec::new();
        for h in 0..=u16::MAX {
            let v = half::f16::from_bits(h).to_f32();
            xs.push(v);
            if v.is_finite() {
                xs.push(f32::from_bits(v.to_bits() + 1));
                xs.push(f32::from_bits(v.to_bits().wrapping_sub(1)));
                xs.push(f32::from_bits(v.to_bits() | 0x1000)); // the f16 halfway bit
            }
        }
        let mut s = 0x1234_5678u32;
        for _ in 0..100_003 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            xs.push(f32::from_bits(s));
        }
        let mut a = xs.clone();
        round_f16_inplace(&mut a);
        for (x, y) in xs.iter().zip(&a) {
            assert_eq!(f16_round(*x).to_bits(), y.to_bits(), "x = {x:e} ({:#010x})", x.to_bits());
        }
    }
}
