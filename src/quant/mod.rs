//! Quantized block formats: one file per family, each with a scalar reference decoder (and
//! encoder where supported); [`avx2`] holds the runtime-detected SIMD decoders, which must
//! produce bit-identical results to the scalar ones.
//!
//! Entry points: [`decode`] (fastest path available), [`decode_scalar`] (reference),
//! [`encode`], and [`decode_par`] (rayon over block ranges).

pub mod avx2;
pub mod float;
pub mod iq4;
pub mod kquants;
pub mod legacy;
pub mod q4k_ggml;
pub mod q8;
pub mod small;
pub mod types;
pub mod util;
pub mod vecdot;
pub mod vecdot_avx2;
pub mod vecdot_avx2_k4;

pub use types::{GgmlType, QK_K};

use rayon::prelude::*;

/// Decodes whole blocks: `bytes.len()` is a multiple of the type size and `out` holds
/// the matching number of elements.
pub type DecodeFn = fn(&[u8], &mut [f32]);
/// Encodes one block of `block_size` values into `type_size` bytes.
pub type EncodeFn = fn(&[f32], &mut [u8]);

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

/// The scalar per-block decoder of `ty`, if supported.
pub fn decoder(ty: GgmlType) -> Option<DecodeFn> {
    use GgmlType::*;
    Some(match ty {
        F32 => float::decode_f32,
        F16 => float::decode_f16,
        BF16 => float::decode_bf16,
        Q4_0 => legacy::decode_q4_0,
        Q4_1 => legacy::decode_q4_1,
        Q5_0 => legacy::decode_q5_0,
        Q5_1 => legacy::decode_q5_1,
        Q8_0 => legacy::decode_q8_0,
        Q2_K => kquants::q2_k::decode,
        Q3_K => kquants::q3_k::decode,
        Q4_K => kquants::q4_k::decode,
        Q5_K => kquants::q5_k::decode,
        Q6_K => kquants::q6_k::decode,
        Q8_K => kquants::q8_k::decode,
        IQ4_NL => iq4::decode_nl,
        IQ4_XS => iq4::decode_xs,
        MXFP4 => small::decode_mxfp4,
        TQ1_0 => small::decode_tq1_0,
        TQ2_0 => small::decode_tq2_0,
        _ => return None,
    })
}

/// The per-block encoder of `ty`, if supported.
pub fn encoder(ty: GgmlType) -> Option<EncodeFn> {
    use GgmlType::*;
    Some(match ty {
        F32 => float::encode_f32,
        F16 => float::encode_f16,
        BF16 => float::encode_bf16,
        Q4_0 => legacy::encode_q4_0,
        Q4_1 => legacy::encode_q4_1,
        Q5_0 => legacy::encode_q5_0,
        Q5_1 => legacy::encode_q5_1,
        Q8_0 => legacy::encode_q8_0,
        Q4_K => kquants::q4_k::encode,
        Q5_K => kquants::q5_k::encode,
        Q6_K => kquants::q6_k::encode,
        Q8_K => kquants::q8_k::encode,
        IQ4_NL => iq4::encode_nl,
        _ => return None,
    })
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
    let f = decoder(ty).ok_or(QuantError::NoDecoder(ty))?;
    check_sizes(ty, bytes.len(), out.len())?;
    for (b, y) in bytes.chunks_exact(ty.type_size()).zip(out.chunks_exact_mut(ty.block_size())) {
        f(b, y);
    }
    Ok(())
}

/// Whether SIMD paths are in use (runtime detection; `FINETUNE_SIMD=scalar` turns them off).
pub fn simd_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("FINETUNE_SIMD").map(|v| v != "scalar").unwrap_or(true) && avx2::available())
}

/// Name of the decode path [`decode`] uses for `ty`.
pub fn decode_path(ty: GgmlType) -> &'static str {
    if simd_enabled() && avx2::decoder(ty).is_some() {
        "avx2"
    } else {
        "scalar"
    }
}

/// Decode with the fastest path available (bit-identical to [`decode_scalar`]).
pub fn decode(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    if simd_enabled() {
        if let Some(f) = avx2::decoder(ty) {
            check_sizes(ty, bytes.len(), out.len())?;
            f(bytes, out);
            return Ok(());
        }
    }
    decode_scalar(ty, bytes, out)
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
    let f = encoder(ty).ok_or_else(|| {
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
