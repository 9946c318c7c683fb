//! Plain float element types: F32, F16, BF16 (one element per "block").

use half::f16;

/// F32: the bytes are the values.
pub fn decode_f32(b: &[u8], y: &mut [f32]) {
    let n = y.len().min(b.len() / 4);
    #[cfg(target_endian = "little")]
    {
        // SAFETY: `y` has room for n f32 = 4n bytes, `b` holds at least 4n bytes, the regions
        // are distinct borrows, and every bit pattern is a valid f32.
        unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), y.as_mut_ptr() as *mut u8, 4 * n) }
    }
    #[cfg(not(target_endian = "little"))]
    for (o, c) in y[..n].iter_mut().zip(b.chunks_exact(4)) {
        *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
}

/// F16 → f32 (exact).
pub fn decode_f16(b: &[u8], y: &mut [f32]) {
    for (o, c) in y.iter_mut().zip(b.chunks_exact(2)) {
        *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
    }
}

/// BF16 → f32: the bits shifted into the top half.
pub fn decode_bf16(b: &[u8], y: &mut [f32]) {
    for (o, c) in y.iter_mut().zip(b.chunks_exact(2)) {
        *o = f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16);
    }
}

/// f32 → F32 bytes.
pub fn encode_f32(x: &[f32], b: &mut [u8]) {
    for (v, c) in x.iter().zip(b.chunks_exact_mut(4)) {
        c.copy_from_slice(&v.to_le_bytes());
    }
}

/// f32 → F16 (round to nearest even).
pub fn encode_f16(x: &[f32], b: &mut [u8]) {
    for (v, c) in x.iter().zip(b.chunks_exact_mut(2)) {
        c.copy_from_slice(&f16::from_f32(*v).to_le_bytes());
    }
}

/// f32 → BF16 as ggml (`ggml_compute_fp32_to_bf16`): NaN forced quiet, otherwise round to
/// nearest even.
pub fn encode_bf16(x: &[f32], b: &mut [u8]) {
    for (v, c) in x.iter().zip(b.chunks_exact_mut(2)) {
        let u = v.to_bits();
        let h = if u & 0x7fff_ffff > 0x7f80_0000 {
            ((u >> 16) | 64) as u16
        } else {
            ((u as u64 + (0x7fff + ((u >> 16) & 1)) as u64) >> 16) as u16
        };
        c.copy_from_slice(&h.to_le_bytes());
    }
}
