//! The original 32-element block formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (layouts as ggml's
//! `ggml-common.h` `block_q4_0` … `block_q8_0`). Decoders compute exactly `d·q` or `d·q + m` in f32
//! (no fused multiply-add), which is what ggml's reference and gguf-py produce.

use super::util::{f16_at, put_f16};

/// Elements per block of these formats.
pub const QK: usize = 32;

/// Q4_0: `{f16 d; u8 qs[16]}`, y = (q − 8)·d.
pub fn decode_q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        y[j] = ((qs[j] & 15) as i32 - 8) as f32 * d;
        y[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
    }
}

/// Q4_1: `{f16 d; f16 m; u8 qs[16]}`, y = q·d + m.
pub fn decode_q4_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qs = &b[4..20];
    for j in 0..16 {
        y[j] = d * (qs[j] & 15) as f32 + m;
        y[j + 16] = d * (qs[j] >> 4) as f32 + m;
    }
}

/// Q5_0: `{f16 d; u32 qh; u8 qs[16]}`, y = (q − 16)·d with the fifth bit from qh.
pub fn decode_q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for j in 0..16 {
        let h0 = ((qh >> j) & 1) << 4;
        let h1 = ((qh >> (j + 16)) & 1) << 4;
        y[j] = (((qs[j] & 15) as u32 | h0) as i32 - 16) as f32 * d;
        y[j + 16] = (((qs[j] >> 4) as u32 | h1) as i32 - 16) as f32 * d;
    }
}

/// Q5_1: `{f16 d; f16 m; u32 qh; u8 qs[16]}`, y = q·d + m.
pub fn decode_q5_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for j in 0..16 {
        let h0 = ((qh >> j) & 1) << 4;
        let h1 = ((qh >> (j + 16)) & 1) << 4;
        y[j] = d * ((qs[j] & 15) as u32 | h0) as f32 + m;
        y[j + 16] = d * ((qs[j] >> 4) as u32 | h1) as f32 + m;
    }
}

/// Q8_0: `{f16 d; i8 qs[32]}`, y = q·d.
pub fn decode_q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for j in 0..32 {
        y[j] = (b[2 + j] as i8) as f32 * d;
    }
}

/// The value of largest magnitude (first one on ties), keeping its sign.
fn signed_absmax(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    (amax, max)
}

fn min_max(x: &[f32]) -> (f32, f32) {
    x.iter().fold((f32::MAX, -f32::MAX), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// Encode one Q4_0 block (ggml `quantize_row_q4_0_ref`).
pub fn encode_q4_0(x: &[f32], b: &mut [u8]) {
    let (_, max) = signed_absmax(x);
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(b, 0, d);
    for j in 0..16 {
        let x0 = ((x[j] * id + 8.5) as i8).min(15) as u8;
        let x1 = ((x[j + 16] * id + 8.5) as i8).min(15) as u8;
        b[2 + j] = x0 | (x1 << 4);
    }
}

/// Encode one Q4_1 block (ggml `quantize_row_q4_1_ref`).
pub fn encode_q4_1(x: &[f32], b: &mut [u8]) {
    let (min, max) = min_max(x);
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(b, 0, d);
    put_f16(b, 2, min);
    for j in 0..16 {
        let x0 = (((x[j] - min) * id + 0.5) as i8).min(15) as u8;
        let x1 = (((x[j + 16] - min) * id + 0.5) as i8).min(15) as u8;
        b[4 + j] = x0 | (x1 << 4);
    }
}

/// Encode one Q5_0 block (ggml `quantize_row_q5_0_ref`).
pub fn encode_q5_0(x: &[f32], b: &mut [u8]) {
    let (_, max) = signed_absmax(x);
    let d = max / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(b, 0, d);
    let mut qh = 0u32;
    for j in 0..16 {
        let x0 = ((x[j] * id + 16.5) as i8).min(31) as u8;
        let x1 = ((x[j + 16] * id + 16.5) as i8).min(31) as u8;
        b[6 + j] = (x0 & 15) | ((x1 & 15) << 4);
        qh |= ((x0 as u32 & 0x10) >> 4) << j;
        qh |= ((x1 as u32 & 0x10) >> 4) << (j + 16);
    }
    b[2..6].copy_from_slice(&qh.to_le_bytes());
}

/// Encode one Q5_1 block (ggml `quantize_row_q5_1_ref`).
pub fn encode_q5_1(x: &[f32], b: &mut [u8]) {
    let (min, max) = min_max(x);
    let d = (max - min) / 31.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(b, 0, d);
    put_f16(b, 2, min);
    let mut qh = 0u32;
    for j in 0..16 {
        let x0 = (((x[j] - min) * id + 0.5) as i8).min(31) as u8;
        let x1 = (((x[j + 16] - min) * id + 0.5) as i8).min(31) as u8;
        b[8 + j] = (x0 & 15) | ((x1 & 15) << 4);
        qh |= ((x0 as u32 & 0x10) >> 4) << j;
        qh |= ((x1 as u32 & 0x10) >> 4) << (j + 16);
    }
    b[4..8].copy_from_slice(&qh.to_le_bytes());
}

/// Encode one Q8_0 block (ggml `quantize_row_q8_0_ref`: round half away from zero).
pub fn encode_q8_0(x: &[f32], b: &mut [u8]) {
    let amax = x.iter().fold(0f32, |a, &v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(b, 0, d);
    for j in 0..32 {
        b[2 + j] = (x[j] * id).round() as i8 as u8;
    }
}
