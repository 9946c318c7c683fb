//! Small formats: MXFP4 (E8M0 scale + E2M1 codes) and the ternary TQ1_0 / TQ2_0.

use super::util::f16_at;

/// E2M1 values doubled (the scale is halved to match).
pub const MXFP4_VALUES: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// E8M0 exponent to f32, halved (`ggml_e8m0_to_fp32_half`): 2^(e−128), exact for every e.
#[inline(always)]
pub fn e8m0_half(e: u8) -> f32 {
    let bits = if e < 2 { 0x0020_0000u32 << e } else { ((e as u32) - 1) << 23 };
    f32::from_bits(bits)
}

/// Decode one MXFP4 block (`{u8 e; u8 qs[16]}`) into 32 values.
pub fn decode_mxfp4(b: &[u8], y: &mut [f32]) {
    let d = e8m0_half(b[0]);
    for j in 0..16 {
        y[j] = d * MXFP4_VALUES[(b[1 + j] & 15) as usize] as f32;
        y[j + 16] = d * MXFP4_VALUES[(b[1 + j] >> 4) as usize] as f32;
    }
}

/// Base-3 digit `n` of a TQ1_0 byte (the byte holds a fixed-point fraction of 3^5).
#[inline(always)]
fn trit(byte: u8, pow3: u8) -> i8 {
    ((byte.wrapping_mul(pow3) as u16 * 3) >> 8) as i8 - 1
}

/// Decode one TQ1_0 block (`{u8 qs[48]; u8 qh[4]; f16 d}`) into 256 values.
pub fn decode_tq1_0(b: &[u8], y: &mut [f32]) {
    const POW3: [u8; 5] = [1, 3, 9, 27, 81];
    let d = f16_at(b, 52);
    for (n, &p) in POW3.iter().enumerate() {
        for m in 0..32 {
            y[32 * n + m] = d * trit(b[m], p) as f32;
        }
        for m in 0..16 {
            y[160 + 16 * n + m] = d * trit(b[32 + m], p) as f32;
        }
    }
    for (n, &p) in POW3[..4].iter().enumerate() {
        for j in 0..4 {
            y[240 + 4 * n + j] = d * trit(b[48 + j], p) as f32;
        }
    }
}

/// Decode one TQ2_0 block (`{u8 qs[64]; f16 d}`) into 256 values.
pub fn decode_tq2_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 64);
    for a in 0..2 {
        for l in 0..4 {
            for m in 0..32 {
                let q = ((b[32 * a + m] >> (2 * l)) & 3) as i8 - 1;
                y[128 * a + 32 * l + m] = d * q as f32;
            }
        }
    }
}
