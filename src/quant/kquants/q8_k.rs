//! Q8_K (292 B): `d:f32`, `qs:i8[256]`, `bsums:i16[16]` (sums of each 16 codes). An
//! activation-side format (the right-hand operand of k-quant dot products).

use crate::quant::util::nearest_int;

/// Decode one Q8_K block into 256 values (y = d·q).
pub fn decode(b: &[u8], y: &mut [f32]) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for j in 0..256 {
        y[j] = d * (b[4 + j] as i8) as f32;
    }
}

/// Encode one Q8_K block (ggml `quantize_row_q8_K_ref`).
pub fn encode(x: &[f32], b: &mut [u8]) {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in &x[..256] {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        b[..292].fill(0);
        return;
    }
    let iscale = -127.0 / max;
    for j in 0..256 {
        b[4 + j] = nearest_int(iscale * x[j]).min(127) as i8 as u8;
    }
    for g in 0..16 {
        let s: i32 = (0..16).map(|k| (b[4 + 16 * g + k] as i8) as i32).sum();
        b[260 + 2 * g..262 + 2 * g].copy_from_slice(&(s as i16).to_le_bytes());
    }
    b[0..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
}
