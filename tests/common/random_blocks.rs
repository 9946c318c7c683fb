//! Random blocks of every decodable type, with extreme scales (NaN-free), for the decode tests.
#![allow(dead_code)]

use finetune::quant::GgmlType;

use super::Rng;

/// Offsets of the f16 scale fields inside one block of `ty` (everything else is random bits).
fn f16_fields(ty: GgmlType) -> &'static [usize] {
    use GgmlType::*;
    match ty {
        Q4_0 | Q5_0 | Q8_0 | IQ4_NL | IQ4_XS => &[0],
        Q4_1 | Q5_1 | Q4_K | Q5_K => &[0, 2],
        Q2_K => &[80, 82],
        Q3_K => &[108],
        Q6_K => &[208],
        TQ1_0 => &[52],
        TQ2_0 => &[64],
        _ => &[],
    }
}

/// `n_blocks` random blocks of `ty`.
pub fn random_blocks(ty: GgmlType, n_blocks: usize, rng: &mut Rng) -> Vec<u8> {
    let ts = ty.type_size();
    let mut out = vec![0u8; n_blocks * ts];
    rng.bytes(&mut out);
    for blk in out.chunks_exact_mut(ts) {
        match ty {
            GgmlType::F16 | GgmlType::BF16 => {
                let bits = if ty == GgmlType::F16 { rng.f16_bits() } else { (rng.f32_bits() >> 16) as u16 };
                blk.copy_from_slice(&bits.to_le_bytes());
            }
            GgmlType::F32 => blk.copy_from_slice(&rng.f32_bits().to_le_bytes()),
            GgmlType::Q8_K => {
                // d is f32: finite, mostly moderate, sometimes extreme
                let d = if rng.below(4) == 0 { f32::from_bits(rng.f32_bits()) } else { rng.normal() * 1e-3 };
                blk[0..4].copy_from_slice(&d.to_le_bytes());
            }
            _ => {
                for &off in f16_fields(ty) {
                    blk[off..off + 2].copy_from_slice(&rng.f16_bits().to_le_bytes());
                }
            }
        }
    }
    out
}

/// Every type with a decoder.
pub fn decodable_types() -> Vec<GgmlType> {
    GgmlType::ALL.iter().copied().filter(|t| t.can_decode()).collect()
}
