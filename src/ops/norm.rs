//! RMSNorm: `y = x / sqrt(mean(x²) + eps) · w` per row. As ggml's CPU kernel: squares in f32
//! summed in f64, the mean and scale in f32.
//!
//! Backward (w frozen): with `r = 1/sqrt(mean(x²) + eps)` and `g = dy·w`,
//! `dx = r·g − x · r³ · (g·x) / n`.

/// In-place RMSNorm of each `n`-wide row of `x`, then multiply by `w` (if given). Rows are
/// independent: many rows are split across rayon threads (the same bits either way).
pub fn rms_norm_inplace(x: &mut [f32], n: usize, eps: f32, w: Option<&[f32]>) {
    use rayon::prelude::*;
    let norm_row = |row: &mut [f32]| {
        let scale = inv_rms(row, eps);
        match w {
            Some(w) => row.iter_mut().zip(w).for_each(|(v, &g)| *v = *v * scale * g),
            None => row.iter_mut().for_each(|v| *v *= scale),
        }
    };
    if x.len() >= PAR_MIN && n > 0 {
        x.par_chunks_exact_mut(n).with_min_len((PAR_MIN / 4).div_ceil(n)).for_each(norm_row);
    } else {
        x.chunks_exact_mut(n).for_each(norm_row);
    }
}

/// Elements from which a row-wise op is worth splitting across threads.
const PAR_MIN: usize = 1 << 15;

/// `out = rmsnorm(x) · w` for each row, leaving `x` untouched.
pub fn rms_norm(x: &[f32], out: &mut [f32], n: usize, eps: f32, w: Option<&[f32]>) {
    out.copy_from_slice(x);
    rms_norm_inplace(out, n, eps, w);
}

/// `1/sqrt(mean(row²) + eps)`, squares summed in f64 as ggml does.
fn inv_rms(row: &[f32], eps: f32) -> f32 {
    let ss: f64 = row.iter().map(|&v| (v * v) as f64).sum();
    let mean = (ss / row.len() as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

/// Input gradient of [`rms_norm_inplace`] for each `n`-wide row: `dx` is overwritten with
/// dL/dx given `dy` = dL/dy, the forward's input `x` and its (frozen) weight `w`.
pub fn rms_norm_backward(x: &[f32], w: Option<&[f32]>, n: usize, eps: f32, dy: &[f32], dx: &mut [f32]) {
    assert!(x.len() == dy.len() && x.len() == dx.len(), "rms_norm_backward: x, dy, dx differ in size");
    assert!(w.is_none_or(|w| w.len() == n), "rms_norm_backward: w must hold n values");
    use rayon::prelude::*;
    if n == 0 {
        return;
    }
    // Rows are independent: many are split across threads (the same bits either way).
    let rows = x.par_chunks_exact(n).zip(dy.par_chunks_exact(n)).zip(dx.par_chunks_exact_mut(n));
    rows.with_min_len((PAR_MIN / 4).div_ceil(n)).for_each(|((xr, dyr), dxr)| {
        let r = inv_rms(xr, eps);
        // g = dy·w, written into dx first; then the row's projection onto x.
        match w {
            Some(w) => dxr.iter_mut().zip(dyr).zip(w).for_each(|((d, &g), &wv)| *d = g * wv),
            None => dxr.copy_from_slice(dyr),
        }
        let gx: f64 = dxr.iter().zip(xr).map(|(&g, &v)| g as f64 * v as f64).sum();
        let c = (gx * (r as f64).powi(3) / n as f64) as f32;
        dxr.iter_mut().zip(xr).for_each(|(d, &v)| *d = r * *d - c * v);
    });
}
