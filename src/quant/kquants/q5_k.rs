//! Q5_K (176 B): `d:f16`, `dmin:f16`, `scales:u8[12]`, `qh:u8[32]`, `qs:u8[128]`. Q4_K plus a
//! fifth bit per element: sub-block s takes bit s of `qh[l]`.

use super::q4_k::{encode_scales_and_codes, scale_min};
use crate::quant::util::f16_at;

/// Decode one Q5_K block into 256 values.
pub fn decode(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let s = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for c in 0..4 {
        let (sc0, m0) = scale_min(2 * c, s);
        let (sc1, m1) = scale_min(2 * c + 1, s);
        let (d0, dm0) = (d * sc0 as f32, dmin * m0 as f32);
        let (d1, dm1) = (d * sc1 as f32, dmin * m1 as f32);
        let q = &qs[32 * c..32 * c + 32];
        for l in 0..32 {
            let h0 = ((qh[l] >> (2 * c)) & 1) << 4;
            let h1 = ((qh[l] >> (2 * c + 1)) & 1) << 4;
            y[64 * c + l] = d0 * ((q[l] & 15) | h0) as f32 - dm0;
            y[64 * c + 32 + l] = d1 * ((q[l] >> 4) | h1) as f32 - dm1;
        }
    }
}

/// Encode one Q5_K block (ggml `quantize_row_q5_K_ref`).
pub fn encode(x: &[f32], b: &mut [u8]) {
    let mut l = [0u8; 256];
    encode_scales_and_codes(x, 31, -0.5, 15, b, &mut l);
    let (qh, qs) = b[16..176].split_at_mut(32);
    qh.fill(0);
    for c in 0..4 {
        for j in 0..32 {
            let mut l1 = l[64 * c + j];
            let mut l2 = l[64 * c + 32 + j];
            if l1 > 15 {
                l1 -= 16;
                qh[j] |= 1 << (2 * c);
            }
            if l2 > 15 {
                l2 -= 16;
                qh[j] |= 2 << (2 * c);
            }
            qs[32 * c + j] = l1 | (l2 << 4);
        }
    }
}
