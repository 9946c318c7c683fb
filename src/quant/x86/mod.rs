//! x86-64 SIMD kernels (AVX2 + FMA + F16C, AVX-512 VNNI where the CPU has it), grouped by what
//! they do: block decoders ([`decode`], and [`decode512`] for the hot types on AVX-512), activation quantizers and one-/multi-row integer dot
//! products ([`vecdot`], [`vecdot_k`]), llama.cpp's repacked Q4_K kernels ([`q4k`]). Each is the
//! twin of a scalar reference in the per-family files (`legacy.rs`, `kquants/`, `q8.rs`,
//! `vecdot.rs`, `q4k_ggml.rs`) and gives the same bits.
//!
//! Nothing here is chosen by type: the kernel table ([`super::kernels`]) lists these functions
//! per type, and only where [`available`] (and [`vnni_available`] for the VNNI kernels) says the
//! CPU can run them. Another architecture's kernels would sit beside this module (`quant/arm/`
//! for NEON, with its own detection) and get their own level in the table.

pub mod decode;
#[cfg(finetune_avx512)]
pub mod decode512;
pub mod dot_i8;
pub mod dot_i8_rows;
pub mod dot_u4;
pub mod gemm_q0;
pub mod q4k;
#[cfg(finetune_avx512)]
mod rows512;
pub mod vecdot;
pub mod vecdot_k;

/// Whether the CPU has what these kernels need (AVX2, FMA, F16C).
pub fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
}

/// Whether the AVX-512 decoders ([`decode512`]) can run (AVX-512F/BW/VL, detected once).
pub fn avx512_available() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vl"))
}

/// The AVX-512 decoder of `ty` when this CPU and compiler have one (see [`decode512`]).
pub(in crate::quant) fn wide_decoder(ty: super::GgmlType) -> Option<super::DecodeFn> {
    use super::GgmlType::*;
    if !avx512_available() {
        return None;
    }
    #[cfg(finetune_avx512)]
    let f: Option<super::DecodeFn> = match ty {
        Q4_K => Some(decode512::q4_k),
        Q6_K => Some(decode512::q6_k),
        Q5_0 => Some(decode512::q5_0),
        Q8_0 => Some(decode512::q8_0),
        _ => None,
    };
    #[cfg(not(finetune_avx512))]
    let f = {
        let _ = (ty, Q4_K);
        None
    };
    f
}

/// The AVX-512 two-weight-row repacked Q4_K gemm ([`q4k`]) when this CPU and compiler have it.
pub(in crate::quant) fn q4k_wide() -> Option<super::kernels::DotQ8K2xN<4>> {
    #[cfg(finetune_avx512)]
    if avx512_available() {
        return Some(q4k::gemm2x4);
    }
    None
}

/// The AVX-512 two-weight-row Q6_K tiled-order kernel ([`vecdot_k`]) when this CPU and compiler
/// have it.
pub(in crate::quant) fn q6k_wide() -> Option<super::kernels::DotQ8K2xN<8>> {
    #[cfg(finetune_avx512)]
    if avx512_available() {
        return Some(vecdot_k::q6_k_tiled_2x8);
    }
    None
}

/// Whether the VNNI multi-row kernels can run (AVX-512F/VL/VNNI, detected once).
pub fn vnni_available() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl") && is_x86_feature_detected!("avx512vnni")
    })
}
