//! Q6_K (210 B): `ql:u8[128]` low nibbles, `qh:u8[64]` high 2-bit pairs, `scales:i8[16]`,
//! `d:f16`. y = d·sc·(q − 32) per 16-element sub-block.

use crate::quant::util::{f16_at, make_qx_quants, nearest_int, put_f16, GROUP_MAX_EPS};

/// Decode one Q6_K block into 256 values.
pub fn decode(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 208);
    for n in 0..2 {
        let ql = &b[64 * n..64 * n + 64];
        let qh = &b[128 + 32 * n..128 + 32 * n + 32];
        let sc = &b[192 + 8 * n..192 + 8 * n + 8];
        let out = &mut y[128 * n..128 * n + 128];
        for l in 0..32 {
            let i = l / 16;
            let q1 = ((ql[l] & 15) | ((qh[l] & 3) << 4)) as i8 - 32;
            let q2 = ((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            out[l] = (d * (sc[i] as i8) as f32) * q1 as f32;
            out[l + 32] = (d * (sc[i + 2] as i8) as f32) * q2 as f32;
            out[l + 64] = (d * (sc[i + 4] as i8) as f32) * q3 as f32;
            out[l + 96] = (d * (sc[i + 6] as i8) as f32) * q4 as f32;
        }
    }
}

/// Encode one Q6_K block (ggml `quantize_row_q6_K_ref`).
pub fn encode(x: &[f32], b: &mut [u8]) {
    let mut l = [0i8; 256];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
    for ib in 0..16 {
        let s = make_qx_quants(32, &x[16 * ib..16 * ib + 16], &mut l[16 * ib..16 * ib + 16], 1);
        scales[ib] = s;
        if s.abs() > max_abs_scale {
            max_abs_scale = s.abs();
            max_scale = s;
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        b[..210].fill(0);
        return;
    }
    let iscale = -128.0 / max_scale;
    put_f16(b, 208, 1.0 / iscale);
    for ib in 0..16 {
        b[192 + ib] = nearest_int(iscale * scales[ib]).min(127) as i8 as u8;
    }
    let d = f16_at(b, 208);
    for j in 0..16 {
        let dj = d * (b[192 + j] as i8) as f32;
        if dj == 0.0 {
            continue;
        }
        for ii in 0..16 {
            let q = nearest_int(x[16 * j + ii] / dj).clamp(-32, 31);
            l[16 * j + ii] = (q + 32) as i8;
        }
    }
    let (ql, rest) = b.split_at_mut(128);
    let qh = &mut rest[..64];
    for n in 0..2 {
        let lq = &l[128 * n..128 * n + 128];
        for i in 0..32 {
            let (a, bb, c, e) = (lq[i] as u8, lq[i + 32] as u8, lq[i + 64] as u8, lq[i + 96] as u8);
            ql[64 * n + i] = (a & 15) | ((c & 15) << 4);
            ql[64 * n + i + 32] = (bb & 15) | ((e & 15) << 4);
            qh[32 * n + i] = (a >> 4) | ((bb >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6);
        }
    }
}
