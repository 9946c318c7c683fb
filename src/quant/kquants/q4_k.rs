//! Q4_K (144 B): `d:f16`, `dmin:f16`, `scales:u8[12]` (8 six-bit scales and mins), `qs:u8[128]`.
//! y = d·sc·q − dmin·m per 32-element sub-block.

use crate::quant::util::{f16_at, make_qkx2_quants, nearest_int, put_f16};

/// Unpack the 6-bit scale and min of sub-block `j` (ggml `get_scale_min_k4`).
#[inline(always)]
pub fn scale_min(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 15) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

/// Pack 8 six-bit (scale, min) pairs into the 12-byte layout read by [`scale_min`].
pub fn pack_scale_min(ls: &[u8; 8], lm: &[u8; 8], s: &mut [u8]) {
    s[..12].fill(0);
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 15) | ((lm[j] & 15) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
}

/// Decode one Q4_K block into 256 values.
pub fn decode(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let s = &b[4..16];
    let qs = &b[16..144];
    for c in 0..4 {
        let (sc0, m0) = scale_min(2 * c, s);
        let (sc1, m1) = scale_min(2 * c + 1, s);
        let (d0, dm0) = (d * sc0 as f32, dmin * m0 as f32);
        let (d1, dm1) = (d * sc1 as f32, dmin * m1 as f32);
        let q = &qs[32 * c..32 * c + 32];
        for l in 0..32 {
            y[64 * c + l] = d0 * (q[l] & 15) as f32 - dm0;
            y[64 * c + 32 + l] = d1 * (q[l] >> 4) as f32 - dm1;
        }
    }
}

/// Shared Q4_K/Q5_K encoder front half: per-sub-block (scale, min) search with weights
/// `rms(x) + |x|`, 6-bit packing, then codes recomputed from the stored scales.
/// Returns (d, dmin) as written and fills `l` with codes in [0, nmax].
pub(crate) fn encode_scales_and_codes(x: &[f32], nmax: i32, rmin: f32, nstep: i32, head: &mut [u8], l: &mut [u8; 256]) {
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    let mut weights = [0f32; 32];
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let sum_x2: f32 = xs.iter().map(|v| v * v).sum();
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        let (sc, mn) = make_qkx2_quants(nmax, xs, &weights, &mut l[32 * j..32 * j + 32], rmin, 0.1, nstep);
        scales[j] = sc;
        mins[j] = mn;
        max_scale = max_scale.max(sc);
        max_min = max_min.max(mn);
    }
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    for j in 0..8 {
        ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
    }
    put_f16(head, 0, max_scale / 63.0);
    put_f16(head, 2, max_min / 63.0);
    pack_scale_min(&ls, &lm, &mut head[4..16]);
    let d = f16_at(head, 0);
    let dmin = f16_at(head, 2);
    for j in 0..8 {
        let (sc, m) = scale_min(j, &head[4..16]);
        let dj = d * sc as f32;
        if dj == 0.0 {
            continue;
        }
        let dm = dmin * m as f32;
        for ii in 0..32 {
            l[32 * j + ii] = nearest_int((x[32 * j + ii] + dm) / dj).clamp(0, nmax) as u8;
        }
    }
}

/// Encode one Q4_K block (ggml `quantize_row_q4_K_ref`).
pub fn encode(x: &[f32], b: &mut [u8]) {
    let mut l = [0u8; 256];
    encode_scales_and_codes(x, 15, -1.0, 20, b, &mut l);
    let qs = &mut b[16..144];
    for c in 0..4 {
        for i in 0..32 {
            qs[32 * c + i] = l[64 * c + i] | (l[64 * c + 32 + i] << 4);
        }
    }
}
