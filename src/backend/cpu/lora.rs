//! LoRA products on the CPU: `u = x·Aᵀ`, `y += s·u·Bᵀ` and their backward, through the
//! thread-count-independent f32 GEMM ([`gemm_f32_kn`]). Shapes as [`LoraPair`]: `A [r, n_in]`,
//! `B [n_out, r]`, activations `[T, features]`.

use crate::lora::LoraPair;
use crate::ops::matmul::gemm_f32_kn;

/// `u = x·Aᵀ` (`[T, r]`), the low-rank code of each row; kept for the backward.
pub fn down(p: &LoraPair, x: &[f32]) -> Vec<f32> {
    let (r, n_in) = (p.r, p.n_in);
    let t = x.len() / n_in;
    let at = transpose(&p.a, r, n_in);
    let mut u = vec![0f32; t * r];
    gemm_f32_kn::<false, false>(x, n_in, t, &at, r, r, n_in, &mut u, r);
    u
}

/// `y += s · u·Bᵀ` for `u` from [`down`].
pub fn up_add(p: &LoraPair, u: &[f32], s: f32, y: &mut [f32]) {
    let (r, n_out) = (p.r, p.n_out);
    let t = u.len() / r.max(1);
    let bt = transpose(&p.b, n_out, r);
    let us: Vec<f32> = u.iter().map(|&v| s * v).collect();
    gemm_f32_kn::<false, true>(&us, r, t, &bt, n_out, n_out, r, y, n_out);
}

/// Backward of `y += s · B·(A·x)` given its input `x`, code `u` and the output gradient `dy`
/// (`[T, n_out]`): accumulates `grad.a += duᵀ·x`, `grad.b += s·dyᵀ·u` and, when given,
/// `dx += du·A` where `du = s · dy·B`.
pub fn backward(p: &LoraPair, x: &[f32], u: &[f32], dy: &[f32], s: f32, grad: &mut LoraPair, dx: Option<&mut [f32]>) {
    let (r, n_in, n_out) = (p.r, p.n_in, p.n_out);
    let t = x.len() / n_in;
    // du[t, j] = s · Σ_o dy[t, o] · B[o, j]
    let mut du = vec![0f32; t * r];
    gemm_f32_kn::<false, false>(dy, n_out, t, &p.b, r, r, n_out, &mut du, r);
    du.iter_mut().for_each(|d| *d *= s);
    // grad.b[o, j] += Σ_t dy[t, o] · (s·u[t, j])
    let us: Vec<f32> = u.iter().map(|&v| s * v).collect();
    gemm_f32_kn::<true, true>(dy, n_out, n_out, &us, r, r, t, &mut grad.b, r);
    // grad.a[j, i] += Σ_t du[t, j] · x[t, i]
    gemm_f32_kn::<true, true>(&du, r, r, x, n_in, n_in, t, &mut grad.a, n_in);
    // dx[t, i] += Σ_j du[t, j] · A[j, i]
    if let Some(dx) = dx {
        gemm_f32_kn::<false, true>(&du, r, t, &p.a, n_in, n_in, r, dx, n_in);
    }
}

/// `[rows × cols]` row-major → `[cols × rows]`.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; rows * cols];
    for (i, row) in m.chunks_exact(cols).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            out[j * rows + i] = v;
        }
    }
    out
}
