//! RMSNorm: `y = x / sqrt(mean(x²) + eps) · w` per row. As ggml's CPU kernel: squares in f32
//! summed in f64, the mean and scale in f32.

/// In-place RMSNorm of each `n`-wide row of `x`, then multiply by `w` (if given).
pub fn rms_norm_inplace(x: &mut [f32], n: usize, eps: f32, w: Option<&[f32]>) {
    for row in x.chunks_exact_mut(n) {
        let ss: f64 = row.iter().map(|&v| (v * v) as f64).sum();
        let mean = (ss / n as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        match w {
            Some(w) => row.iter_mut().zip(w).for_each(|(v, &g)| *v = *v * scale * g),
            None => row.iter_mut().for_each(|v| *v *= scale),
        }
    }
}

/// `out = rmsnorm(x) · w` for each row, leaving `x` untouched.
pub fn rms_norm(x: &[f32], out: &mut [f32], n: usize, eps: f32, w: Option<&[f32]>) {
    out.copy_from_slice(x);
    rms_norm_inplace(out, n, eps, w);
}
