//! AArch64 NEON kernels (`dotprod` where the CPU has it, detected at run time), grouped as the
//! x86 ones: block decoders ([`decode`]), activation quantizers and one-/multi-row integer dot
//! products ([`vecdot`], [`vecdot_k`]), llama.cpp's repacked Q4_K kernels ([`q4k`]). Each is the
//! twin of a scalar reference in the per-family files and gives the same bits: integer sums are
//! exact in any order, and the f32 steps follow the reference operation for operation (NEON's
//! `fmla` is the fused multiply-add of `f32::mul_add`; plain `fmul`/`fadd` are never fused).
//!
//! NEON is part of the AArch64 base ISA; the integer dot kernels come in two builds, chosen by
//! the kernel table ([`super::kernels`]): without `dotprod` the 4-byte lane sums are widening
//! multiplies and pairwise adds ([`dot16`] with `DOT = false`), with it one `sdot` per 16 bytes.
//! Both give the same i32 lanes, so the same results.
//!
//! With `i8mm` ([`i8mm_available`]) the kernels of [`i8mm`] take two weight rows at a time:
//! one `smmla` gives the 2×2 tile of 8-byte dots of two weight rows with two activation rows.
//! They serve the formats whose reference sums a whole (sub-)block as one integer before any
//! f32 step (Q6_K's tiled order, llama.cpp's repacked Q4_K gemm); the formats whose reference
//! keeps eight 4-element lanes in f32 (the 32-element ones, Q6_K's vec_dot order) cannot use an
//! 8-element tile without wasting half of it, so they keep `sdot`.

pub mod decode;
pub mod dot_i8;
pub mod i8mm;
pub mod q4k;
pub mod vecdot;
pub mod vecdot_k;

use std::arch::aarch64::*;

/// Whether the CPU has NEON (always true on AArch64 Linux; detected for symmetry with x86).
pub fn available() -> bool {
    std::arch::is_aarch64_feature_detected!("neon")
}

/// Whether the CPU has the `dotprod` extension (`sdot`), detected once.
pub fn dotprod_available() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| available() && std::arch::is_aarch64_feature_detected!("dotprod"))
}

/// Whether the CPU has the `i8mm` extension (`smmla`, the kernels of [`i8mm`]), detected once.
pub fn i8mm_available() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| available() && std::arch::is_aarch64_feature_detected!("i8mm"))
}

/// i32 lane `i` = Σ_{k<4} a[4i+k]·b[4i+k] (signed bytes). With `DOT` one `sdot` (the caller
/// guarantees [`dotprod_available`]), else widening multiplies and pairwise adds (exact: each
/// i16 product ≤ 128², each pair sum < 2^15 + 2^15 widened to i32).
#[inline(always)]
pub(in crate::quant) fn dot16<const DOT: bool>(a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: NEON is baseline on AArch64; `sdot` is only reached when DOT, which the kernel
    // table selects only where dotprod is detected.
    unsafe {
        if DOT {
            sdot(vdupq_n_s32(0), a, b)
        } else {
            let lo = vpaddlq_s16(vmull_s8(vget_low_s8(a), vget_low_s8(b)));
            let hi = vpaddlq_s16(vmull_high_s8(a, b));
            vpaddq_s32(lo, hi)
        }
    }
}

/// `acc + dot16(a, b)` lane by lane.
#[inline(always)]
pub(in crate::quant) fn dot16_acc<const DOT: bool>(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: as for dot16.
    unsafe {
        if DOT {
            sdot(acc, a, b)
        } else {
            vaddq_s32(acc, dot16::<false>(a, b))
        }
    }
}

/// `sdot acc.4s, a.16b, b.16b` (Armv8.2 dotprod). Inline assembly with the instruction's
/// encoding rather than the intrinsic, which needs Rust 1.89 (this crate's MSRV is older) and a
/// `target_feature` that generic kernels cannot carry.
///
/// # Safety
/// The CPU has `dotprod` ([`dotprod_available`]).
#[inline(always)]
unsafe fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // 0x4e829420 = sdot v0.4s, v1.16b, v2.16b
    std::arch::asm!(".inst 0x4e829420", inout("v0") acc, in("v1") a, in("v2") b, options(pure, nomem, nostack));
    acc
}

/// `smmla acc.4s, a.16b, b.16b` (Armv8.6 i8mm): with `a` two rows of 8 signed bytes (`a[0..8]`,
/// `a[8..16]`) and `b` likewise, lane `2i + j` of `acc` gains `Σ_k a[8i + k]·b[8j + k]`. Inline
/// assembly with the encoding, as [`sdot`].
///
/// # Safety
/// The CPU has `i8mm` ([`i8mm_available`]).
#[inline(always)]
pub(in crate::quant) unsafe fn smmla(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // 0x4e82a420 = smmla v0.4s, v1.16b, v2.16b
    std::arch::asm!(".inst 0x4e82a420", inout("v0") acc, in("v1") a, in("v2") b, options(pure, nomem, nostack));
    acc
}
