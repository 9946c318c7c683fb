//! Q2_K (84 B): `scales:u8[16]` (low nibble scale, high nibble min), `qs:u8[64]` 2-bit codes,
//! `d:f16`, `dmin:f16`. y = d·(sc&15)·q − dmin·(sc>>4).

use crate::quant::util::f16_at;

/// Decode one Q2_K block into 256 values.
pub fn decode(b: &[u8], y: &mut [f32]) {
    let scales = &b[0..16];
    let qs = &b[16..80];
    let d = f16_at(b, 80);
    let dmin = f16_at(b, 82);
    for n in 0..2 {
        for j in 0..4 {
            for h in 0..2 {
                let sc = scales[8 * n + 2 * j + h];
                let dl = d * (sc & 15) as f32;
                let ml = dmin * (sc >> 4) as f32;
                let q = &qs[32 * n + 16 * h..32 * n + 16 * h + 16];
                let out = &mut y[128 * n + 32 * j + 16 * h..][..16];
                for l in 0..16 {
                    out[l] = dl * ((q[l] >> (2 * j)) & 3) as f32 - ml;
                }
            }
        }
    }
}
