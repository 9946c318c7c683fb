//! LoRA products on the CPU: `u = x·Aᵀ`, `y += s·u·Bᵀ` and their backward. Shapes as
//! [`LoraPair`]: `A [r, n_in]`, `B [n_out, r]`, activations `[T, features]`.
//!
//! Each product runs the f32 micro-kernels of [`crate::ops::matmul`] on operands packed once per
//! call, straight from A, B, `u` or `x` (no transposed copies), with one parallel region per
//! forward product and two per backward; products too small to gain from threads stay on the
//! calling thread. Every output element is the one chain of fused multiply-adds that
//! [`gemm_f32_kn`](crate::ops::matmul::gemm_f32_kn) computes for it (k ascending from zero, then
//! added to the destination where it accumulates), so the results do not depend on the thread
//! count or the split and are the plain GEMM's bits.

use rayon::prelude::*;

use crate::lora::LoraPair;
use crate::ops::matmul::{pack_cols, pack_rows, tile, ADD, NR, SET};
use crate::ops::send_ptr::SendPtr;

/// Multiply-adds below which a call runs on the calling thread: a parallel region costs more
/// than it saves there (one token at inference, tiny test shapes).
const SERIAL_FMAS: usize = 1 << 18;

/// `u = x·Aᵀ` (`[T, r]`), the low-rank code of each row; kept for the backward.
pub fn down(p: &LoraPair, x: &[f32]) -> Vec<f32> {
    let (r, n_in) = (p.r, p.n_in);
    let t = x.len() / n_in;
    assert!(p.a.len() >= r * n_in, "lora down: A too short");
    let mut u = vec![0f32; t * r];
    if t == 0 || r == 0 {
        return u;
    }
    let pa = packed_rows(&p.a, r, n_in);
    let rows = rows_per_task(t);
    let up = SendPtr(u.as_mut_ptr());
    let up = &up;
    for_each(t.div_ceil(rows), t * r * n_in < SERIAL_FMAS, |i| {
        let (t0, t1) = (i * rows, ((i + 1) * rows).min(t));
        // SAFETY: task i writes rows t0..t1 of u ([t, r]) and no other task does.
        unsafe { tile::<SET, false>(t1 - t0, r, n_in, &x[t0 * n_in..], n_in, &pa, NR * n_in, up.0.add(t0 * r), r) };
    });
    u
}

/// `y += s · u·Bᵀ` for `u` from [`down`].
pub fn up_add(p: &LoraPair, u: &[f32], s: f32, y: &mut [f32]) {
    let (r, n_out) = (p.r, p.n_out);
    let t = u.len() / r.max(1);
    assert!(y.len() >= t * n_out && p.b.len() >= n_out * r, "lora up_add: operand sizes");
    if t == 0 || r == 0 || n_out == 0 {
        return;
    }
    let pb = packed_rows(&p.b, n_out, r);
    let us: Vec<f32> = u.iter().map(|&v| s * v).collect();
    let rows = rows_per_task(t);
    let yp = SendPtr(y.as_mut_ptr());
    let yp = &yp;
    for_each(t.div_ceil(rows), t * r * n_out < SERIAL_FMAS, |i| {
        let (t0, t1) = (i * rows, ((i + 1) * rows).min(t));
        // SAFETY: task i writes rows t0..t1 of y ([t, n_out], asserted above) and no other task does.
        unsafe { tile::<ADD, false>(t1 - t0, n_out, r, &us[t0 * r..], r, &pb, NR * r, yp.0.add(t0 * n_out), n_out) };
    });
}

/// [`down`] then [`up_add`] in one parallel region: each task takes rows of T, computes their
/// code `u` and adds `s·u·Bᵀ` to the same rows of `y` (the bits of the two calls). Returns `u`.
pub fn forward(p: &LoraPair, x: &[f32], s: f32, y: &mut [f32]) -> Vec<f32> {
    let (r, n_in, n_out) = (p.r, p.n_in, p.n_out);
    let t = x.len() / n_in;
    assert!(p.a.len() >= r * n_in && p.b.len() >= n_out * r && y.len() >= t * n_out, "lora forward: operand sizes");
    let mut u = vec![0f32; t * r];
    if t == 0 || r == 0 {
        return u;
    }
    let (pa, pb) = (packed_rows(&p.a, r, n_in), packed_rows(&p.b, n_out, r));
    let rows = rows_per_task(t);
    let (up, yp) = (SendPtr(u.as_mut_ptr()), SendPtr(y.as_mut_ptr()));
    let (up, yp) = (&up, &yp);
    for_each(t.div_ceil(rows), t * r * (n_in + n_out) < SERIAL_FMAS, |i| {
        let (t0, t1) = (i * rows, ((i + 1) * rows).min(t));
        let nt = t1 - t0;
        // SAFETY: task i writes rows t0..t1 of u ([t, r]) and of y ([t, n_out], asserted above),
        // which no other task touches.
        unsafe {
            let ur = up.0.add(t0 * r);
            tile::<SET, false>(nt, r, n_in, &x[t0 * n_in..], n_in, &pa, NR * n_in, ur, r);
            let us: Vec<f32> = std::slice::from_raw_parts(ur, nt * r).iter().map(|&v| s * v).collect();
            if n_out > 0 {
                tile::<ADD, false>(nt, n_out, r, &us, r, &pb, NR * r, yp.0.add(t0 * n_out), n_out);
            }
        }
    });
    u
}

/// Backward of `y += s · B·(A·x)` given its input `x`, code `u` and the output gradient `dy`
/// (`[T, n_out]`): accumulates `grad.a += duᵀ·x`, `grad.b += s·dyᵀ·u` and, when given,
/// `dx += du·A` where `du = s · dy·B`.
///
/// Two parallel regions: first, by rows of T, `du` and then `dx` for those rows; then the
/// gradients, `grad.b` by rows and `grad.a` by columns, as tasks of one region.
pub fn backward(p: &LoraPair, x: &[f32], u: &[f32], dy: &[f32], s: f32, grad: &mut LoraPair, dx: Option<&mut [f32]>) {
    let (r, n_in, n_out) = (p.r, p.n_in, p.n_out);
    let t = x.len() / n_in;
    assert!(u.len() >= t * r && dy.len() >= t * n_out, "lora backward: u or dy too short");
    assert!(p.a.len() >= r * n_in && p.b.len() >= n_out * r, "lora backward: A or B too short");
    assert!(grad.a.len() >= r * n_in && grad.b.len() >= n_out * r, "lora backward: gradients too short");
    assert!(dx.as_ref().is_none_or(|d| d.len() >= t * n_in), "lora backward: dx too short");
    if t == 0 || r == 0 {
        return;
    }
    let serial = 2 * t * r * (n_in + n_out) < SERIAL_FMAS;

    // du[t, j] = s · Σ_o dy[t, o]·B[o, j], then dx[t, i] += Σ_j du[t, j]·A[j, i].
    let pb = packed_cols(&p.b, n_out, r);
    let pa = dx.as_ref().map(|_| packed_cols(&p.a, r, n_in));
    let mut du = vec![0f32; t * r];
    let rows = rows_per_task(t);
    let dup = SendPtr(du.as_mut_ptr());
    let dxp = dx.map(|d| SendPtr(d.as_mut_ptr()));
    let (dup, dxp) = (&dup, &dxp);
    for_each(t.div_ceil(rows), serial, |i| {
        let (t0, t1) = (i * rows, ((i + 1) * rows).min(t));
        let nt = t1 - t0;
        // SAFETY: task i reads and writes rows t0..t1 of du ([t, r]) and of dx ([t, n_in],
        // asserted above), which no other task touches.
        unsafe {
            let d = dup.0.add(t0 * r);
            tile::<SET, false>(nt, r, n_out, &dy[t0 * n_out..], n_out, &pb, NR * n_out, d, r);
            let du_rows = std::slice::from_raw_parts_mut(d, nt * r);
            du_rows.iter_mut().for_each(|v| *v *= s);
            if let (Some(dxp), Some(pa)) = (dxp, &pa) {
                tile::<ADD, false>(nt, n_in, r, du_rows, r, pa, NR * r, dxp.0.add(t0 * n_in), n_in);
            }
        }
    });

    // grad.b[o, j] += Σ_t dy[t, o]·(s·u[t, j]) by rows of grad.b; grad.a[j, i] += Σ_t du[t, j]·x[t, i]
    // by columns of grad.a, each task packing its columns of x 32 at a time.
    let pus = packed_scaled(u, t, r, s);
    let threads = rayon::current_num_threads();
    let rows_b = n_out.div_ceil(2 * threads).div_ceil(12).max(1) * 12;
    let cols_a = n_in.div_ceil(2 * threads).div_ceil(2 * NR).max(1) * (2 * NR);
    let tasks_b = n_out.div_ceil(rows_b);
    let gbp = SendPtr(grad.b.as_mut_ptr());
    let gap = SendPtr(grad.a.as_mut_ptr());
    let (gbp, gap, du) = (&gbp, &gap, &du);
    for_each(tasks_b + n_in.div_ceil(cols_a), serial, |i| {
        if i < tasks_b {
            let (o0, o1) = (i * rows_b, ((i + 1) * rows_b).min(n_out));
            // SAFETY: this task writes rows o0..o1 of grad.b ([n_out, r], asserted above) only.
            unsafe { tile::<ADD, true>(o1 - o0, r, t, &dy[o0..], n_out, &pus, NR * t, gbp.0.add(o0 * r), r) };
            return;
        }
        let c0 = (i - tasks_b) * cols_a;
        let c1 = (c0 + cols_a).min(n_in);
        let mut px = vec![0f32; 2 * NR * t];
        for g0 in (c0..c1).step_by(2 * NR) {
            let gw = (2 * NR).min(c1 - g0);
            pack_cols(x, n_in, t, g0, gw, NR * t, &mut px);
            // SAFETY: this task writes columns c0..c1 of grad.a ([r, n_in], asserted above) only.
            unsafe { tile::<ADD, true>(r, gw, t, du, r, &px, NR * t, gap.0.add(g0), n_in) };
        }
    });
}

/// Rows of T per task: about four tasks per thread, whole 12-row strips (the AVX-512 kernel's
/// height, twice the AVX2 one's).
fn rows_per_task(t: usize) -> usize {
    t.div_ceil(4 * rayon::current_num_threads()).div_ceil(12).max(1) * 12
}

/// `f(i)` for every `i < n`: in order on this thread when `serial`, else as parallel tasks.
fn for_each(n: usize, serial: bool, f: impl Fn(usize) + Sync + Send) {
    if serial || n <= 1 {
        (0..n).for_each(f)
    } else {
        (0..n).into_par_iter().for_each(f)
    }
}

/// `m` (`rows × k`, row-major) as the kernels' B operand of `X·mᵀ`: slivers of 16 rows of m,
/// each `[k][16]`, the rows past `rows` zero.
fn packed_rows(m: &[f32], rows: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0f32; rows.div_ceil(NR) * NR * k];
    if k > 0 {
        pack_rows(m, k, rows, k, &mut out);
    }
    out
}

/// `m` (`k × n`, row-major) as the kernels' B operand of `X·m`: slivers of 16 columns, each
/// `[k][16]`, the columns past `n` zero.
fn packed_cols(m: &[f32], k: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n.div_ceil(NR) * NR * k];
    pack_cols(m, n, k, 0, n, NR * k, &mut out);
    out
}

/// `s·u` (`u` is `[t, r]`) packed as [`packed_cols`] does: the scaling done while packing, the
/// same products `s·u[t, j]` the kernels would otherwise read from a scaled copy.
fn packed_scaled(u: &[f32], t: usize, r: usize, s: f32) -> Vec<f32> {
    let mut out = vec![0f32; r.div_ceil(NR) * NR * t];
    for (kk, row) in u.chunks_exact(r).take(t).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            out[j / NR * NR * t + kk * NR + j % NR] = s * v;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::matmul::gemm_f32_kn;

    /// The plain formulation: each product one [`gemm_f32_kn`] call on transposed copies.
    mod plain {
        use super::*;

        pub fn down(p: &LoraPair, x: &[f32]) -> Vec<f32> {
            let (r, n_in) = (p.r, p.n_in);
            let t = x.len() / n_in;
            let at = transpose(&p.a, r, n_in);
            let mut u = vec![0f32; t * r];
            gemm_f32_kn::<false, false>(x, n_in, t, &at, r, r, n_in, &mut u, r);
            u
        }

        pub fn up_add(p: &LoraPair, u: &[f32], s: f32, y: &mut [f32]) {
            let (r, n_out) = (p.r, p.n_out);
            let t = u.len() / r.max(1);
            let bt = transpose(&p.b, n_out, r);
            let us: Vec<f32> = u.iter().map(|&v| s * v).collect();
            gemm_f32_kn::<false, true>(&us, r, t, &bt, n_out, n_out, r, y, n_out);
        }

        pub fn backward(p: &LoraPair, x: &[f32], u: &[f32], dy: &[f32], s: f32, grad: &mut LoraPair, dx: Option<&mut [f32]>) {
            let (r, n_in, n_out) = (p.r, p.n_in, p.n_out);
            let t = x.len() / n_in;
            let mut du = vec![0f32; t * r];
            gemm_f32_kn::<false, false>(dy, n_out, t, &p.b, r, r, n_out, &mut du, r);
            du.iter_mut().for_each(|d| *d *= s);
            let us: Vec<f32> = u.iter().map(|&v| s * v).collect();
            gemm_f32_kn::<true, true>(dy, n_out, n_out, &us, r, r, t, &mut grad.b, r);
            gemm_f32_kn::<true, true>(&du, r, r, x, n_in, n_in, t, &mut grad.a, n_in);
            if let Some(dx) = dx {
                gemm_f32_kn::<false, true>(&du, r, t, &p.a, n_in, n_in, r, dx, n_in);
            }
        }

        fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
            let mut out = vec![0f32; rows * cols];
            for i in 0..rows {
                for j in 0..cols {
                    out[j * rows + i] = m[i * cols + j];
                }
            }
            out
        }
    }

    fn rnd(seed: &mut u64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    fn same(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    }

    /// `down`, `up_add`, `forward` and `backward` (with and without `dx`) give the plain GEMM
    /// formulation's bits on odd shapes (T not a multiple of any tile, ranks 1 to 64, widths
    /// below and across the 16-column slivers and 64-column tiles), on 1 and 3 threads, and on
    /// shapes big enough for the parallel path. Run it also with `FINETUNE_SIMD=avx2` and
    /// `FINETUNE_SIMD=scalar` for the other kernel levels.
    #[test]
    fn lora_products_match_the_plain_gemm_bits() {
        let mut seed = 3u64;
        let mut shapes = Vec::new();
        for &t in &[1usize, 7, 50, 131] {
            for &r in &[1usize, 8, 16, 64] {
                for &(n_in, n_out) in &[(33usize, 20usize), (64, 96), (100, 17)] {
                    shapes.push((t, r, n_in, n_out));
                }
            }
        }
        // Past SERIAL_FMAS: the threaded split.
        shapes.extend([(517, 16, 576, 192), (300, 64, 150, 97), (97, 8, 1536, 70)]);
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            for &(t, r, n_in, n_out) in &shapes {
                let p = LoraPair { n_in, n_out, r, a: rnd(&mut seed, r * n_in), b: rnd(&mut seed, n_out * r) };
                let x = rnd(&mut seed, t * n_in);
                let dy = rnd(&mut seed, t * n_out);
                let y0 = rnd(&mut seed, t * n_out);
                let (ga0, gb0, dx0) = (rnd(&mut seed, r * n_in), rnd(&mut seed, n_out * r), rnd(&mut seed, t * n_in));
                let s = 0.7f32;
                let what = format!("t{t} r{r} n_in{n_in} n_out{n_out} threads{threads}");

                let u = pool.install(|| down(&p, &x));
                let u_ref = plain::down(&p, &x);
                assert!(same(&u, &u_ref), "down: {what}");

                let (mut y, mut y_ref) = (y0.clone(), y0.clone());
                pool.install(|| up_add(&p, &u, s, &mut y));
                plain::up_add(&p, &u, s, &mut y_ref);
                assert!(same(&y, &y_ref), "up_add: {what}");

                let mut y2 = y0.clone();
                let u2 = pool.install(|| forward(&p, &x, s, &mut y2));
                assert!(same(&u2, &u_ref) && same(&y2, &y_ref), "forward: {what}");

                for with_dx in [true, false] {
                    let grad0 = LoraPair { n_in, n_out, r, a: ga0.clone(), b: gb0.clone() };
                    let (mut g, mut g_ref) = (grad0.clone(), grad0);
                    let (mut dx, mut dx_ref) = (dx0.clone(), dx0.clone());
                    pool.install(|| backward(&p, &x, &u, &dy, s, &mut g, with_dx.then_some(&mut dx[..])));
                    plain::backward(&p, &x, &u, &dy, s, &mut g_ref, with_dx.then_some(&mut dx_ref[..]));
                    assert!(same(&g.a, &g_ref.a), "grad.a: {what} dx {with_dx}");
                    assert!(same(&g.b, &g_ref.b), "grad.b: {what} dx {with_dx}");
                    assert!(same(&dx, &dx_ref), "dx: {what} dx {with_dx}");
                    assert!(with_dx || same(&dx, &dx0), "dx written without being asked: {what}");
                }
            }
        }
    }
}
