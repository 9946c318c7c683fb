//! Non-linear 4-bit formats: IQ4_NL (32-element blocks) and IQ4_XS (256-element super-blocks
//! with 6-bit sub-block scales). Codes index the codebook [`KVALUES`].

use super::util::{best_index_int8, f16_at, put_f16, GROUP_MAX_EPS};

/// The IQ4_NL codebook (`kvalues_iq4nl`).
pub const KVALUES: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// Decode one IQ4_NL block (`{f16 d; u8 qs[16]}`) into 32 values.
pub fn decode_nl(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for j in 0..16 {
        y[j] = d * KVALUES[(b[2 + j] & 15) as usize] as f32;
        y[j + 16] = d * KVALUES[(b[2 + j] >> 4) as usize] as f32;
    }
}

/// Decode one IQ4_XS block (`{f16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]}`) into 256 values.
pub fn decode_xs(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let scales_h = u16::from_le_bytes([b[2], b[3]]);
    let scales_l = &b[4..8];
    let qs = &b[8..136];
    for ib in 0..8 {
        let ls = ((scales_l[ib / 2] >> (4 * (ib % 2))) & 15) | ((((scales_h >> (2 * ib)) & 3) as u8) << 4);
        let dl = d * (ls as i32 - 32) as f32;
        let q = &qs[16 * ib..16 * ib + 16];
        for j in 0..16 {
            y[32 * ib + j] = dl * KVALUES[(q[j] & 15) as usize] as f32;
            y[32 * ib + j + 16] = dl * KVALUES[(q[j] >> 4) as usize] as f32;
        }
    }
}

/// Encode one IQ4_NL block (ggml `quantize_row_iq4_nl_ref`: no importance weights, a scale
/// search over ±7 steps around the codebook's end).
pub fn encode_nl(x: &[f32], b: &mut [u8]) {
    const NTRY: i32 = 7;
    let v0 = KVALUES[0] as f32;
    let mut weight = [0f32; 32];
    for (w, &v) in weight.iter_mut().zip(x) {
        *w = v * v;
    }
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in &x[..32] {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    let mut scale = 0f32;
    if amax >= GROUP_MAX_EPS {
        let mut d = -max / v0;
        let mut id = 1.0 / d;
        let (mut sumqx, mut sumq2) = (0f32, 0f32);
        for j in 0..32 {
            let q = KVALUES[best_index_int8(&KVALUES, id * x[j])] as f32;
            sumqx += weight[j] * q * x[j];
            sumq2 += weight[j] * q * q;
        }
        d = sumqx / sumq2;
        let mut best = d * sumqx;
        for itry in -NTRY..=NTRY {
            id = (itry as f32 + v0) / max;
            let (mut sqx, mut sq2) = (0f32, 0f32);
            for j in 0..32 {
                let q = KVALUES[best_index_int8(&KVALUES, id * x[j])] as f32;
                sqx += weight[j] * q * x[j];
                sq2 += weight[j] * q * q;
            }
            if sq2 > 0.0 && sqx * sqx > best * sq2 {
                d = sqx / sq2;
                best = d * sqx;
            }
        }
        scale = d;
    }
    put_f16(b, 0, scale);
    let id = if scale != 0.0 { 1.0 / scale } else { 0.0 };
    for j in 0..16 {
        let l0 = best_index_int8(&KVALUES, id * x[j]) as u8;
        let l1 = best_index_int8(&KVALUES, id * x[j + 16]) as u8;
        b[2 + j] = l0 | (l1 << 4);
    }
}
