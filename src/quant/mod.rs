//! Quantized block formats: one file per family, each with a scalar reference decoder (and
//! encoder where supported); the SIMD twins live by instruction set (`x86/` on x86-64, `arm/` on
//! AArch64) and must produce bit-identical results to the scalar ones. The kernel
//! table ([`kernels`]) lists, per type, the functions of the level in use.
//!
//! Entry points: [`decode`] (fastest path available), [`decode_scalar`] (reference),
//! [`encode`], [`decode_par`] (rayon over block ranges), [`quantize_rows`] (activations for the
//! integer matmul).
//!
//! Layering (no module imports one that imports it back): `types`, `util` → the scalar families
//! (`float`, `legacy`, `kquants`, `iq4`, `small`), `q8` (activation blocks), `vecdot` and
//! `q4k_ggml` (scalar dot references) → `x86` / `arm` (SIMD twins) → `kernels` (the table) → the entry
//! points here.

#[cfg(target_arch = "aarch64")]
pub mod arm;
pub mod dot_i8;
pub mod dot_i8_rows;
pub mod dot_u4;
pub mod float;
pub mod gemm_q0;
pub mod iq4;
pub mod kernels;
pub mod kquants;
pub mod legacy;
pub mod q4k_ggml;
pub mod q8;
pub mod small;
pub mod types;
pub mod util;
pub mod vecdot;
#[cfg(target_arch = "x86_64")]
pub mod x86;

pub use kernels::{
    isa, kernels, kernels_for, quantize_rows, quantize_rows_4x8, scalar_kernels, simd_enabled, DecodeFn, EncodeFn, Isa, TypeKernels,
};
pub use types::{GgmlType, QK_K};

use rayon::prelude::*;

/// Errors from the block-level API (sizes that do not fit the format, unsupported types).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[allow(missing_docs)] // variants are documented by their messages / names
pub enum QuantError {
    #[error("type {0} cannot be decoded by this engine")]
    NoDecoder(GgmlType),
    #[error("type {0} cannot be encoded by this engine (encodable: {1})")]
    NoEncoder(GgmlType, String),
    #[error("{ty}: {bytes} bytes is not a whole number of {type_size}-byte blocks")]
    PartialBlock { ty: GgmlType, bytes: usize, type_size: usize },
    #[error("{ty}: {n} elements is not a multiple of the block size {block}")]
    NotBlockMultiple { ty: GgmlType, n: usize, block: usize },
    #[error("{ty}: output holds {have} values, the input decodes to {need}")]
    SizeMismatch { ty: GgmlType, need: usize, have: usize },
}

fn check_sizes(ty: GgmlType, bytes: usize, out: usize) -> Result<(), QuantError> {
    let ts = ty.type_size();
    if bytes % ts != 0 {
        return Err(QuantError::PartialBlock { ty, bytes, type_size: ts });
    }
    let need = bytes / ts * ty.block_size();
    if need != out {
        return Err(QuantError::SizeMismatch { ty, need, have: out });
    }
    Ok(())
}

/// Decode with the scalar reference path.
pub fn decode_scalar(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    let f = scalar_kernels(ty).decode_scalar.ok_or(QuantError::NoDecoder(ty))?;
    check_sizes(ty, bytes.len(), out.len())?;
    f(bytes, out);
    Ok(())
}

/// Decode with the fastest path available (bit-identical to [`decode_scalar`]).
pub fn decode(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    let f = kernels(ty).decode.ok_or(QuantError::NoDecoder(ty))?;
    check_sizes(ty, bytes.len(), out.len())?;
    f(bytes, out);
    Ok(())
}

/// [`decode`] split across rayon threads in runs of whole blocks.
pub fn decode_par(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    check_sizes(ty, bytes.len(), out.len())?;
    let blocks_per_task = (1 << 16) / ty.block_size().max(1) + 1;
    bytes
        .par_chunks(blocks_per_task * ty.type_size())
        .zip(out.par_chunks_mut(blocks_per_task * ty.block_size()))
        .try_for_each(|(b, y)| decode(ty, b, y))
}

/// Encode `x` (a multiple of the block size) into `out` (the matching number of bytes).
pub fn encode(ty: GgmlType, x: &[f32], out: &mut [u8]) -> Result<(), QuantError> {
    let f = kernels(ty).encode.ok_or_else(|| {
        let list: Vec<_> = GgmlType::ALL.iter().filter(|t| t.can_encode()).map(|t| t.name()).collect();
        QuantError::NoEncoder(ty, list.join(", "))
    })?;
    let (bs, ts) = (ty.block_size(), ty.type_size());
    if x.len() % bs != 0 {
        return Err(QuantError::NotBlockMultiple { ty, n: x.len(), block: bs });
    }
    if out.len() != x.len() / bs * ts {
        return Err(QuantError::SizeMismatch { ty, need: x.len() / bs * ts, have: out.len() });
    }
    for (xb, b) in x.chunks_exact(bs).zip(out.chunks_exact_mut(ts)) {
        f(xb, b);
    }
    Ok(())
}

/// [`encode`] split across rayon threads.
pub fn encode_par(ty: GgmlType, x: &[f32], out: &mut [u8]) -> Result<(), QuantError> {
    let (bs, ts) = (ty.block_size(), ty.type_size());
    if x.len() % bs != 0 {
        return Err(QuantError::NotBlockMultiple { ty, n: x.len(), block: bs });
    }
    if out.len() != x.len() / bs * ts {
        return Err(QuantError::SizeMismatch { ty, need: x.len() / bs * ts, have: out.len() });
    }
    let per = 4096 / bs + 1;
    x.par_chunks(per * bs).zip(out.par_chunks_mut(per * ts)).try_for_each(|(xs, o)| encode(ty, xs, o))
}
