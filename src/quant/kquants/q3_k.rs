//! Q3_K (110 B): `hmask:u8[32]`, `qs:u8[64]`, `scales:u8[12]` (16 six-bit scales, offset 32),
//! `d:f16`. q = low 2 bits − (high bit clear ? 4 : 0); y = d·sc·q.

use crate::quant::util::f16_at;

/// The 16 signed 6-bit sub-block scales.
pub fn scales(s: &[u8]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        let low = if i < 8 { s[i] & 15 } else { s[i - 8] >> 4 };
        let hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        *o = (low | (hi << 4)) as i8 - 32;
    }
    out
}

/// Decode one Q3_K block into 256 values.
pub fn decode(b: &[u8], y: &mut [f32]) {
    let hmask = &b[0..32];
    let qs = &b[32..96];
    let sc = scales(&b[96..108]);
    let d = f16_at(b, 108);
    for n in 0..2 {
        for j in 0..4 {
            for h in 0..2 {
                let dl = d * sc[8 * n + 2 * j + h] as f32;
                let bit = 1u8 << (4 * n + j);
                let base = 128 * n + 32 * j + 16 * h;
                for l in 0..16 {
                    let low = ((qs[32 * n + 16 * h + l] >> (2 * j)) & 3) as i8;
                    let q = low - if hmask[16 * h + l] & bit != 0 { 0 } else { 4 };
                    y[base + l] = dl * q as f32;
                }
            }
        }
    }
}
