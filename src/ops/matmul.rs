//! `y = x · Wᵀ` with W a frozen quantized weight `[n_out, n_in]` (GGUF ne = [n_in, n_out]),
//! read in place from the memory map.
//!
//! Many tokens: W is decoded a panel of rows at a time (≈192 KiB of f32, cache-resident),
//! packed as 16-row slivers laid out `[k][16]`, and fed to a 6×16 register-blocked micro-kernel
//! (AVX2+FMA, runtime-detected; a scalar twin otherwise). Panels run in parallel (rayon).
//! One or two tokens: each row is decoded and dotted with x directly.
//! Never more than one panel per thread is dequantized at a time.
//!
//! Backward ([`matmul_backward_input`]): `dx = dy · W`, the same panels restricted to column
//! ranges of W, accumulated by the same micro-kernel.

use rayon::prelude::*;

use super::send_ptr::SendPtr;
pub use crate::weights::QMatrix;
use crate::weights::QuantWeight;

const MR: usize = 6;
pub(crate) const NR: usize = 16;

/// `y[t, o] = Σ_i x[t, i]·W[o, i]` for `t < x.len()/n_in`; `y` is overwritten.
pub fn matmul(w: &dyn QuantWeight, x: &[f32], y: &mut [f32]) {
    let k = w.n_in();
    let t = x.len() / k;
    assert_eq!(x.len(), t * k, "x is not a whole number of rows");
    assert_eq!(y.len(), t * w.n_out(), "y has the wrong size");
    if t <= 2 {
        return gemv(w, x, t, y);
    }
    gemm(w, x, t, y)
}

/// Columns of W (a multiple of the block width) decoded and multiplied at a time: a panel's
/// chunk is `rows × kc` (L2-resident) and a 12-row strip of x's chunk `12 × kc` (L1).
fn k_chunk(k: usize, block: usize) -> usize {
    if k <= 512 || block == 0 || block > 256 {
        return k;
    }
    (256 / block).max(1) * block
}

thread_local! {
    /// Per-thread scratch of the panel loops (decoded rows, packed slivers): grown, never shrunk.
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Many tokens. Panels of W rows run in parallel; each goes over k in chunks of `kc` columns
/// (whole blocks): the chunk's rows are decoded and packed (≈192 KiB), and every token row is
/// multiplied by it, the first chunk setting y and the next ones continuing the same
/// accumulation from y (the bits of one pass over k). x is read once per panel, so panels are
/// as tall as the chunk allows.
fn gemm(w: &dyn QuantWeight, x: &[f32], t: usize, y: &mut [f32]) {
    let k = w.n_in();
    let n = w.n_out();
    let kc = k_chunk(k, w.col_block());
    let threads = rayon::current_num_threads();
    let tall = (192 * 1024 / 4 / kc).max(NR) / NR * NR;
    let even = n.div_ceil(4 * threads).div_ceil(NR) * NR;
    let panel_rows = tall.min(even).max(NR);
    let n_panels = n.div_ceil(panel_rows);
    let yp = SendPtr(y.as_mut_ptr());
    let yp = &yp;
    (0..n_panels).into_par_iter().for_each(|p| {
        with_scratch(|rows, packed| {
            let o0 = p * panel_rows;
            let o1 = (o0 + panel_rows).min(n);
            let nrows = o1 - o0;
            let n_sl = nrows.div_ceil(NR);
            for k0 in (0..k).step_by(kc) {
                let kw = kc.min(k - k0);
                grow(rows, nrows * kw);
                grow(packed, n_sl * NR * kw);
                if kw == k {
                    w.decode_rows(o0, o1, &mut rows[..nrows * k]);
                } else {
                    w.decode_block(o0, o1, k0, k0 + kw, &mut rows[..nrows * kw]);
                }
                pack_rows(&rows[..nrows * kw], kw, nrows, kw, &mut packed[..n_sl * NR * kw]);
                let (b, c) = (&packed[..n_sl * NR * kw], yp.0.wrapping_add(o0));
                // SAFETY: each panel writes only columns o0..o1 of y; panels are disjoint.
                unsafe {
                    if k0 == 0 {
                        tile::<SET, false>(t, nrows, kw, &x[k0..], k, b, NR * kw, c, n)
                    } else {
                        tile::<CONT, false>(t, nrows, kw, &x[k0..], k, b, NR * kw, c, n)
                    }
                }
            }
        })
    });
}

/// Run `f` on this thread's scratch (fresh buffers if it is in use further up the stack).
fn with_scratch<R>(f: impl FnOnce(&mut Vec<f32>, &mut Vec<f32>) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut g) => {
            let (a, b) = &mut *g;
            f(a, b)
        }
        Err(_) => f(&mut Vec::new(), &mut Vec::new()),
    })
}

/// Grow `v` to at least `len` values.
fn grow(v: &mut Vec<f32>, len: usize) {
    if v.len() < len {
        v.resize(len, 0.0);
    }
}

/// Input gradient of [`matmul`] (W frozen): `dx[t, i] = Σ_o dy[t, o]·W[o, i]`, i.e.
/// `dx[T, n_in] = dy[T, n_out] · W`; `dx` is overwritten.
///
/// Works on the quantized blocks: `dx` is split into column ranges (whole blocks, ≤ 512
/// columns) that threads own; a task decodes a panel of rows restricted to its columns
/// (≈64 KiB of f32), repacks it as `[rows][16]` slivers and accumulates `dy_panel · panel`
/// with the micro-kernel. When there are fewer ranges than threads, the rows are also split
/// and the partial sums added.
pub fn matmul_backward_input(w: &dyn QuantWeight, dy: &[f32], dx: &mut [f32]) {
    backward_input_op::<false>(w, dy, dx)
}

/// [`matmul_backward_input`] accumulating: `dx += dy · W`.
pub fn matmul_backward_input_add(w: &dyn QuantWeight, dy: &[f32], dx: &mut [f32]) {
    backward_input_op::<true>(w, dy, dx)
}

fn backward_input_op<const ADD_DX: bool>(w: &dyn QuantWeight, dy: &[f32], dx: &mut [f32]) {
    let (k, n) = (w.n_in(), w.n_out());
    if k == 0 {
        return;
    }
    let t = dx.len() / k;
    assert_eq!(dx.len(), t * k, "dx is not a whole number of rows");
    assert_eq!(dy.len(), t * n, "dy has the wrong size");
    if t == 0 || n == 0 {
        if !ADD_DX {
            dx.fill(0.0);
        }
        return;
    }
    let bs = w.col_block();
    let unit = bs / gcd(bs, NR) * NR;
    let threads = rayon::current_num_threads();
    let per = (k.div_ceil(unit) / (2 * threads)).clamp(1, (512 / unit).max(1));
    let cw = per * unit;
    let n_col = k.div_ceil(cw);
    let kp = (16 * 1024 / cw).max(16).min(n);
    let n_panels = n.div_ceil(kp);
    let n_split = (2 * threads).div_ceil(n_col).clamp(1, n_panels);
    let parts: Vec<Vec<f32>> = (0..n_col)
        .into_par_iter()
        .map(|c| {
            let (c0, c1) = (c * cw, ((c + 1) * cw).min(k));
            (0..n_split)
                .into_par_iter()
                .map(|s| {
                    let (p0, p1) = (s * n_panels / n_split, (s + 1) * n_panels / n_split);
                    backward_input_part(w, dy, t, c0, c1, p0 * kp, (p1 * kp).min(n), kp)
                })
                .reduce_with(|mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                    a
                })
                .expect("n_split ≥ 1")
        })
        .collect();
    for (c, part) in parts.iter().enumerate() {
        let (c0, c1) = (c * cw, ((c + 1) * cw).min(k));
        for (dst, src) in dx.chunks_exact_mut(k).zip(part.chunks_exact(c1 - c0)) {
            if ADD_DX {
                dst[c0..c1].iter_mut().zip(src).for_each(|(d, &v)| *d += v);
            } else {
                dst[c0..c1].copy_from_slice(src);
            }
        }
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// `dy[:, o0..o1] · W[o0..o1, c0..c1]` as a `[t, c1−c0]` buffer: `kp` rows decoded at a time,
/// each such panel's product added to the buffer in row order. Panels are decoded in groups
/// (≈512 KiB packed) and the tokens taken 48 at a time across a group, so the buffer's rows
/// stay in cache while the group's panels are added (the same additions in the same order).
#[allow(clippy::too_many_arguments)]
fn backward_input_part(w: &dyn QuantWeight, dy: &[f32], t: usize, c0: usize, c1: usize, o0: usize, o1: usize, kp: usize) -> Vec<f32> {
    const MC: usize = 48;
    let (n, wc) = (w.n_out(), c1 - c0);
    let n_sl = wc.div_ceil(NR);
    let psz = n_sl * NR * kp;
    let group = (128 * 1024 / psz).clamp(1, (o1 - o0).div_ceil(kp));
    let mut acc = vec![0f32; t * wc];
    with_scratch(|rows, packed| {
        grow(rows, kp * wc);
        grow(packed, group * psz);
        for g0 in (o0..o1).step_by(group * kp) {
            let g1 = (g0 + group * kp).min(o1);
            for (p0, dst) in (g0..g1).step_by(kp).zip(packed.chunks_exact_mut(psz)) {
                let nrows = kp.min(g1 - p0);
                w.decode_block(p0, p0 + nrows, c0, c1, &mut rows[..nrows * wc]);
                pack_cols(&rows[..nrows * wc], wc, nrows, 0, wc, NR * kp, dst);
            }
            for m0 in (0..t).step_by(MC) {
                let mr = MC.min(t - m0);
                for (p0, bp) in (g0..g1).step_by(kp).zip(packed.chunks_exact(psz)) {
                    let nrows = kp.min(g1 - p0);
                    // SAFETY: rows m0..m0+mr of acc [t, wc].
                    unsafe { tile::<ADD, false>(mr, wc, nrows, &dy[m0 * n + p0..], n, bp, NR * kp, acc.as_mut_ptr().add(m0 * wc), wc) };
                }
            }
        }
    });
    acc
}

/// Plain f32 GEMM on one thread: `C[m×n] = A[m×k] · Bᵀ` where `B` is given as `n` rows of
/// length `k` (row stride `ldb`), A with row stride `lda`, C with row stride `ldc`.
/// Uses the same packing and micro-kernel as [`matmul`]; `packed` is scratch space.
#[allow(clippy::too_many_arguments)]
pub fn gemm_f32_bt(
    a: &[f32],
    lda: usize,
    m: usize,
    b: &[f32],
    ldb: usize,
    n: usize,
    k: usize,
    c: &mut [f32],
    ldc: usize,
    packed: &mut Vec<f32>,
) {
    gemm_bt_op::<false>(a, lda, m, b, ldb, n, k, c, ldc, packed)
}

/// [`gemm_f32_bt`] accumulating: `C[m×n] += A[m×k] · Bᵀ`.
#[allow(clippy::too_many_arguments)]
pub fn gemm_f32_bt_add(
    a: &[f32],
    lda: usize,
    m: usize,
    b: &[f32],
    ldb: usize,
    n: usize,
    k: usize,
    c: &mut [f32],
    ldc: usize,
    packed: &mut Vec<f32>,
) {
    gemm_bt_op::<true>(a, lda, m, b, ldb, n, k, c, ldc, packed)
}

#[allow(clippy::too_many_arguments)]
fn gemm_bt_op<const ADD_C: bool>(
    a: &[f32],
    lda: usize,
    m: usize,
    b: &[f32],
    ldb: usize,
    n: usize,
    k: usize,
    c: &mut [f32],
    ldc: usize,
    packed: &mut Vec<f32>,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(a.len() >= (m - 1) * lda + k && b.len() >= (n - 1) * ldb + k && c.len() >= (m - 1) * ldc + n);
    let n_sl = n.div_ceil(NR);
    packed.resize(n_sl * NR * k, 0.0);
    pack_rows(b, ldb, n, k, packed);
    // SAFETY: the assert above bounds rows 0..m, columns 0..n of c.
    unsafe {
        if ADD_C {
            tile::<ADD, false>(m, n, k, a, lda, packed, NR * k, c.as_mut_ptr(), ldc)
        } else {
            tile::<SET, false>(m, n, k, a, lda, packed, NR * k, c.as_mut_ptr(), ldc)
        }
    };
}

/// Parallel f32 GEMM with B given row-major `[k × n]` (row stride `ldb`):
/// `C[m×n] = op(A)·B` (or `+=` with `ADD_C`), `op(A)[i, kk] = a[i·lda + kk]`, or `a[kk·lda + i]`
/// when `TA` (A stored `[k × m]`). C has row stride `ldc`.
///
/// Work is split into fixed tiles of C (48 rows × 64 columns), each computed whole by one task
/// with a fixed summation order, so results do not depend on the number of threads.
#[allow(clippy::too_many_arguments)]
pub fn gemm_f32_kn<const TA: bool, const ADD_C: bool>(
    a: &[f32],
    lda: usize,
    m: usize,
    b: &[f32],
    ldb: usize,
    n: usize,
    k: usize,
    c: &mut [f32],
    ldc: usize,
) {
    const MB: usize = 8 * MR;
    const NB: usize = 4 * NR;
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !ADD_C {
            c.chunks_mut(ldc).take(m).for_each(|r| r[..n].fill(0.0));
        }
        return;
    }
    let a_need = if TA { (k - 1) * lda + m } else { (m - 1) * lda + k };
    assert!(a.len() >= a_need && b.len() >= (k - 1) * ldb + n && c.len() >= (m - 1) * ldc + n, "gemm_f32_kn: operand sizes");
    let (tm, tn) = (m.div_ceil(MB), n.div_ceil(NB));
    let cp = SendPtr(c.as_mut_ptr());
    let cp = &cp;
    (0..tm * tn).into_par_iter().for_each_init(Vec::new, |packed: &mut Vec<f32>, ti| {
        let (i0, j0) = (ti / tn * MB, ti % tn * NB);
        let (i1, j1) = ((i0 + MB).min(m), (j0 + NB).min(n));
        let n_sl = (j1 - j0).div_ceil(NR);
        packed.resize(n_sl * NR * k, 0.0);
        pack_cols(b, ldb, k, j0, j1 - j0, NR * k, packed);
        let a_off = if TA { i0 } else { i0 * lda };
        let cc = cp.0.wrapping_add(i0 * ldc + j0);
        // SAFETY: tiles are disjoint and inside C (asserted above).
        unsafe {
            if ADD_C {
                tile::<ADD, TA>(i1 - i0, j1 - j0, k, &a[a_off..], lda, packed, NR * k, cc, ldc)
            } else {
                tile::<SET, TA>(i1 - i0, j1 - j0, k, &a[a_off..], lda, packed, NR * k, cc, ldc)
            }
        };
    });
}

/// Pack `n` rows of length `k` (row `r` at `b[r·ldb..]`) as the micro-kernel's B operand: slivers
/// of 16 rows, each `[k][16]` (transposed), the rows past `n` zero; `out` holds whole slivers.
pub(crate) fn pack_rows(b: &[f32], ldb: usize, n: usize, k: usize, out: &mut [f32]) {
    for (s, sl) in out.chunks_exact_mut(NR * k).enumerate() {
        for r in 0..NR {
            let src = s * NR + r;
            if src < n {
                let row = &b[src * ldb..src * ldb + k];
                for (kk, &v) in row.iter().enumerate() {
                    sl[kk * NR + r] = v;
                }
            } else {
                for kk in 0..k {
                    sl[kk * NR + r] = 0.0;
                }
            }
        }
    }
}

/// Pack columns `c0..c0 + n` of the `k` rows of a row-major matrix (row `kk` at `b[kk·ldb..]`)
/// as the micro-kernel's B operand: slivers of 16 columns, each `[k][16]`, the columns past `n`
/// zero; sliver `s` starts at `out[s·stride]`.
pub(crate) fn pack_cols(b: &[f32], ldb: usize, k: usize, c0: usize, n: usize, stride: usize, out: &mut [f32]) {
    for s in 0..n.div_ceil(NR) {
        let (j0, nj) = (c0 + s * NR, NR.min(n - s * NR));
        for (kk, d) in out[s * stride..s * stride + k * NR].chunks_exact_mut(NR).enumerate() {
            let src = &b[kk * ldb + j0..kk * ldb + j0 + nj];
            if let (Ok(d), Ok(src)) = (<&mut [f32; NR]>::try_from(&mut *d), <&[f32; NR]>::try_from(src)) {
                // A whole sliver row: a fixed-size copy (vector moves, no memcpy call per row).
                *d = *src;
            } else {
                d[..nj].copy_from_slice(src);
                d[nj..].fill(0.0);
            }
        }
    }
}

/// How a micro-kernel call combines its sums with C: overwrite C, add to C, or continue the
/// sums from C (the accumulators start at C's values, so splitting k into chunks run in order
/// gives the same bits as one call over all of k).
pub(crate) const SET: u8 = 0;
pub(crate) const ADD: u8 = 1;
const CONT: u8 = 2;

/// `C[m×n] (mode) op(A)[m×k] · B` with B packed as slivers (`[k][16]`, sliver `s` at
/// `b[s·bstride..]`); element `(i, kk)` of op(A) is `a[i·lda + kk]`, or `a[kk·lda + i]` when `TA`.
/// Runs the AVX-512 micro-kernel (12×32) where enabled, else the 6×16 one; every output
/// element is one chain of fused multiply-adds over k ascending either way (same bits).
///
/// # Safety
/// `c` must be valid for `m` rows of `n` writes (and reads) at stride `ldc`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn tile<const MODE: u8, const TA: bool>(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    bstride: usize,
    c: *mut f32,
    ldc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    if TA {
        assert!(k == 0 || a.len() >= (k - 1) * lda + m, "A too short");
    } else {
        assert!(a.len() >= (m - 1) * lda + k, "A too short");
    }
    assert!(b.len() >= (n.div_ceil(NR) - 1) * bstride + k * NR, "B too short");
    tile_at::<MODE, TA>(level(), m, n, k, a, lda, b, bstride, c, ldc)
}

/// Which micro-kernel the f32 GEMMs run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    /// The scalar twin.
    Scalar,
    /// The 6×16 SIMD kernel (AVX2+FMA, NEON).
    Simd,
    /// The 12×32 AVX-512 kernel.
    #[cfg_attr(not(all(target_arch = "x86_64", finetune_avx512)), allow(dead_code))]
    Avx512,
}

/// The level in use (see [`avx512_enabled`]).
fn level() -> Level {
    #[cfg(all(target_arch = "x86_64", finetune_avx512))]
    if avx512_enabled() {
        return Level::Avx512;
    }
    if crate::quant::simd_enabled() {
        Level::Simd
    } else {
        Level::Scalar
    }
}

/// [`tile`] at level `lv` (which this CPU must support), bounds already checked.
#[allow(clippy::too_many_arguments)]
unsafe fn tile_at<const MODE: u8, const TA: bool>(
    lv: Level,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    bstride: usize,
    c: *mut f32,
    ldc: usize,
) {
    #[cfg(all(target_arch = "x86_64", finetune_avx512))]
    if lv == Level::Avx512 {
        return x512::tile::<MODE, TA>(m, n, k, a.as_ptr(), lda, b.as_ptr(), bstride, c, ldc);
    }
    let simd = lv != Level::Scalar;
    for m0 in (0..m).step_by(MR) {
        let mr = MR.min(m - m0);
        let a_off = if TA { m0 } else { m0 * lda };
        for s in 0..n.div_ceil(NR) {
            let nr = NR.min(n - s * NR);
            kernel_gen::<MODE, TA>(simd, mr, nr, k, &a[a_off..], lda, &b[s * bstride..s * bstride + k * NR], c.add(m0 * ldc + s * NR), ldc);
        }
    }
}

/// Whether the f32 GEMMs use the AVX-512 micro-kernel: the CPU has AVX-512F and SIMD is on
/// (`FINETUNE_SIMD=scalar` turns all SIMD off, `FINETUNE_SIMD=avx2` keeps these GEMMs on AVX2).
#[cfg(all(target_arch = "x86_64", finetune_avx512))]
pub fn avx512_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| crate::quant::kernels::avx512_allowed() && std::arch::is_x86_feature_detected!("avx512f"))
}

/// The 6×16 micro-kernel on one sliver (`simd`: the SIMD one, else the scalar twin), element `(i, kk)` of A at `a[i·lda + kk]`, or
/// `a[kk·lda + i]` when `TA`; `mr ≤ 6` rows and `nr ≤ 16` columns of C are combined per `MODE`.
///
/// # Safety
/// `c` must be valid for `mr` rows of `nr` writes (and reads) at stride `ldc`.
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_gen<const MODE: u8, const TA: bool>(
    simd: bool,
    mr: usize,
    nr: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    c: *mut f32,
    ldc: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if simd && nr == NR {
        // A whole sliver: the kernel combines its accumulators with C itself (vector loads and
        // stores; the same additions as the scalar loop below).
        match mr {
            6 => avx2_kernel::<6, MODE, TA>(k, a, lda, b, c, ldc),
            5 => avx2_kernel::<5, MODE, TA>(k, a, lda, b, c, ldc),
            4 => avx2_kernel::<4, MODE, TA>(k, a, lda, b, c, ldc),
            3 => avx2_kernel::<3, MODE, TA>(k, a, lda, b, c, ldc),
            2 => avx2_kernel::<2, MODE, TA>(k, a, lda, b, c, ldc),
            _ => avx2_kernel::<1, MODE, TA>(k, a, lda, b, c, ldc),
        }
        return;
    }
    let mut acc = [0f32; MR * NR];
    if MODE == CONT {
        for i in 0..mr {
            for j in 0..nr {
                acc[i * NR + j] = *c.add(i * ldc + j);
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        if simd {
            let p = acc.as_mut_ptr();
            match mr {
                6 => avx2_kernel::<6, CONT, TA>(k, a, lda, b, p, NR),
                5 => avx2_kernel::<5, CONT, TA>(k, a, lda, b, p, NR),
                4 => avx2_kernel::<4, CONT, TA>(k, a, lda, b, p, NR),
                3 => avx2_kernel::<3, CONT, TA>(k, a, lda, b, p, NR),
                2 => avx2_kernel::<2, CONT, TA>(k, a, lda, b, p, NR),
                _ => avx2_kernel::<1, CONT, TA>(k, a, lda, b, p, NR),
            }
        } else {
            scalar_kernel::<TA>(mr, k, a, lda, b, &mut acc);
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if simd {
            match mr {
                6 => neon::kernel::<6, TA>(k, a, lda, b, &mut acc),
                5 => neon::kernel::<5, TA>(k, a, lda, b, &mut acc),
                4 => neon::kernel::<4, TA>(k, a, lda, b, &mut acc),
                3 => neon::kernel::<3, TA>(k, a, lda, b, &mut acc),
                2 => neon::kernel::<2, TA>(k, a, lda, b, &mut acc),
                _ => neon::kernel::<1, TA>(k, a, lda, b, &mut acc),
            }
        } else {
            scalar_kernel::<TA>(mr, k, a, lda, b, &mut acc);
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = simd;
        scalar_kernel::<TA>(mr, k, a, lda, b, &mut acc);
    }
    for i in 0..mr {
        for j in 0..nr {
            if MODE == ADD {
                *c.add(i * ldc + j) += acc[i * NR + j];
            } else {
                *c.add(i * ldc + j) = acc[i * NR + j];
            }
        }
    }
}

/// Scalar twin of the micro-kernel (reference and fallback): `acc += A·B`, k ascending.
fn scalar_kernel<const TA: bool>(mr: usize, k: usize, a: &[f32], lda: usize, b: &[f32], acc: &mut [f32; MR * NR]) {
    for kk in 0..k {
        let bv = &b[kk * NR..kk * NR + NR];
        for i in 0..mr {
            let av = if TA { a[kk * lda + i] } else { a[i * lda + kk] };
            for j in 0..NR {
                acc[i * NR + j] = av.mul_add(bv[j], acc[i * NR + j]);
            }
        }
    }
}

/// `M` rows × one whole sliver (16 columns) of `C (MODE) A·B` with AVX2+FMA, `C` at `c` with row
/// stride `ldc`: the accumulators start at C's values (`CONT`) or at zero, run one fused
/// multiply-add per k, k ascending, and are stored (`SET`, `CONT`) or added to C (`ADD`).
/// Partial slivers come through a 16-wide scratch row block with `CONT`.
///
/// # Safety
/// `c` must be valid for `M` rows of 16 reads and writes at stride `ldc`; AVX2 and FMA present.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_kernel<const M: usize, const MODE: u8, const TA: bool>(k: usize, a: &[f32], lda: usize, b: &[f32], c: *mut f32, ldc: usize) {
    use std::arch::x86_64::*;
    if TA {
        assert!(k == 0 || a.len() >= (k - 1) * lda + M);
    } else {
        assert!(a.len() >= (M - 1) * lda + k);
    }
    assert!(b.len() >= k * NR);
    let mut c0 = [_mm256_setzero_ps(); M];
    let mut c1 = [_mm256_setzero_ps(); M];
    if MODE == CONT {
        for i in 0..M {
            c0[i] = _mm256_loadu_ps(c.add(i * ldc));
            c1[i] = _mm256_loadu_ps(c.add(i * ldc + 8));
        }
    }
    let ap = a.as_ptr();
    let bp = b.as_ptr();
    for kk in 0..k {
        let b0 = _mm256_loadu_ps(bp.add(kk * NR));
        let b1 = _mm256_loadu_ps(bp.add(kk * NR + 8));
        for i in 0..M {
            let av = _mm256_broadcast_ss(&*ap.add(if TA { kk * lda + i } else { i * lda + kk }));
            c0[i] = _mm256_fmadd_ps(av, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(av, b1, c1[i]);
        }
    }
    for i in 0..M {
        let (p0, p1) = (c.add(i * ldc), c.add(i * ldc + 8));
        if MODE == ADD {
            _mm256_storeu_ps(p0, _mm256_add_ps(_mm256_loadu_ps(p0), c0[i]));
            _mm256_storeu_ps(p1, _mm256_add_ps(_mm256_loadu_ps(p1), c1[i]));
        } else {
            _mm256_storeu_ps(p0, c0[i]);
            _mm256_storeu_ps(p1, c1[i]);
        }
    }
}

/// The AVX-512 micro-kernel: up to 12 rows × 32 columns (two slivers side by side) in 24 zmm
/// accumulators, each lane one fused multiply-add per k, k ascending, as the 6×16 kernels.
/// (Built with Rust ≥ 1.89, where these intrinsics are stable: see build.rs.)
#[cfg(all(target_arch = "x86_64", finetune_avx512))]
#[allow(clippy::incompatible_msrv)]
mod x512 {
    use super::{ADD, CONT, NR};
    use std::arch::x86_64::*;

    /// [`super::tile`] with the AVX-512 kernel: strips of up to 12 rows (then 8, 4, 2, 1), each
    /// against pairs of slivers (a last odd sliver alone).
    ///
    /// # Safety
    /// As [`super::tile`], with its bounds on `a` and `b` checked by the caller; AVX-512F present.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile<const MODE: u8, const TA: bool>(
        m: usize,
        n: usize,
        k: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        bstride: usize,
        c: *mut f32,
        ldc: usize,
    ) {
        let mut m0 = 0;
        while m0 < m {
            let mr = match m - m0 {
                12.. => 12,
                8..=11 => 8,
                4..=7 => 4,
                2..=3 => 2,
                _ => 1,
            };
            let a0 = a.add(if TA { m0 } else { m0 * lda });
            let mut j = 0;
            while j < n {
                let nr = (n - j).min(2 * NR);
                let b0 = b.add(j / NR * bstride);
                let cc = c.add(m0 * ldc + j);
                if nr > NR {
                    let b1 = b0.add(bstride);
                    match mr {
                        12 => kernel::<12, 2, MODE, TA>(k, a0, lda, [b0, b1], cc, ldc, nr),
                        8 => kernel::<8, 2, MODE, TA>(k, a0, lda, [b0, b1], cc, ldc, nr),
                        4 => kernel::<4, 2, MODE, TA>(k, a0, lda, [b0, b1], cc, ldc, nr),
                        2 => kernel::<2, 2, MODE, TA>(k, a0, lda, [b0, b1], cc, ldc, nr),
                        _ => kernel::<1, 2, MODE, TA>(k, a0, lda, [b0, b1], cc, ldc, nr),
                    }
                } else {
                    match mr {
                        12 => kernel::<12, 1, MODE, TA>(k, a0, lda, [b0], cc, ldc, nr),
                        8 => kernel::<8, 1, MODE, TA>(k, a0, lda, [b0], cc, ldc, nr),
                        4 => kernel::<4, 1, MODE, TA>(k, a0, lda, [b0], cc, ldc, nr),
                        2 => kernel::<2, 1, MODE, TA>(k, a0, lda, [b0], cc, ldc, nr),
                        _ => kernel::<1, 1, MODE, TA>(k, a0, lda, [b0], cc, ldc, nr),
                    }
                }
                j += 2 * NR;
            }
            m0 += mr;
        }
    }

    /// `M` rows × `W` slivers (`nr ≤ 16·W` columns stored).
    ///
    /// # Safety
    /// As [`tile`], for this micro-tile.
    #[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn kernel<const M: usize, const W: usize, const MODE: u8, const TA: bool>(
        k: usize,
        a: *const f32,
        lda: usize,
        b: [*const f32; W],
        c: *mut f32,
        ldc: usize,
        nr: usize,
    ) {
        let mut mask = [0u16; W];
        for w in 0..W {
            mask[w] = ((1u32 << nr.saturating_sub(w * NR).min(NR)) - 1) as u16;
        }
        let mut acc = [[_mm512_setzero_ps(); W]; M];
        if MODE == CONT {
            for i in 0..M {
                for w in 0..W {
                    acc[i][w] = _mm512_maskz_loadu_ps(mask[w], c.add(i * ldc + w * NR));
                }
            }
        }
        for kk in 0..k {
            let mut bv = [_mm512_setzero_ps(); W];
            for w in 0..W {
                bv[w] = _mm512_loadu_ps(b[w].add(kk * NR));
            }
            for i in 0..M {
                let av = _mm512_set1_ps(*a.add(if TA { kk * lda + i } else { i * lda + kk }));
                for w in 0..W {
                    acc[i][w] = _mm512_fmadd_ps(av, bv[w], acc[i][w]);
                }
            }
        }
        for i in 0..M {
            for w in 0..W {
                let p = c.add(i * ldc + w * NR);
                let v = if MODE == ADD { _mm512_add_ps(_mm512_maskz_loadu_ps(mask[w], p), acc[i][w]) } else { acc[i][w] };
                _mm512_mask_storeu_ps(p, mask[w], v);
            }
        }
    }
}

/// One or two tokens: decode each row and dot it with x (rows in parallel).
fn gemv(w: &dyn QuantWeight, x: &[f32], t: usize, y: &mut [f32]) {
    let k = w.n_in();
    let n = w.n_out();
    let chunk = (4096 / k.max(1)).max(1);
    let yp = SendPtr(y.as_mut_ptr());
    let yp = &yp;
    (0..n.div_ceil(chunk)).into_par_iter().for_each_init(
        || vec![0f32; chunk * k],
        |buf, ci| {
            let r0 = ci * chunk;
            let r1 = (r0 + chunk).min(n);
            let rows = &mut buf[..(r1 - r0) * k];
            w.decode_rows(r0, r1, rows);
            for (r, row) in rows.chunks_exact(k).enumerate() {
                for tt in 0..t {
                    // SAFETY: chunks write disjoint rows r0..r1 of each output row.
                    unsafe { *yp.0.add(tt * n + r0 + r) = dot(row, &x[tt * k..(tt + 1) * k]) };
                }
            }
        },
    );
}

/// f32 dot product: AVX2+FMA when available (runtime-detected), else a portable loop.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    #[cfg(target_arch = "x86_64")]
    if crate::quant::simd_enabled() {
        // SAFETY: AVX2/FMA presence checked by simd_enabled(); reads stay within n.
        return unsafe { dot_avx2(&a[..n], &b[..n]) };
    }
    #[cfg(target_arch = "aarch64")]
    if crate::quant::simd_enabled() {
        return neon::dot(&a[..n], &b[..n]);
    }
    dot_scalar(&a[..n], &b[..n])
}

/// Portable twin of the dot product (16 partial sums).
fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let n = a.len().min(b.len());
    let chunks = n / 16;
    for c in 0..chunks {
        let (aa, bb) = (&a[c * 16..c * 16 + 16], &b[c * 16..c * 16 + 16]);
        for l in 0..16 {
            acc[l] += aa[l] * bb[l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 16..n {
        s += a[i] * b[i];
    }
    s
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (l, acc_l) in acc.iter_mut().enumerate() {
            *acc_l = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8 * l)), _mm256_loadu_ps(pb.add(i + 8 * l)), *acc_l);
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc[0]);
        i += 8;
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), s);
    let mut total: f32 = lanes.iter().sum();
    while i < n {
        total += a[i] * b[i];
        i += 1;
    }
    total
}

/// NEON twins of the AVX2 micro-kernel and dot product: each 8-lane AVX2 vector is two NEON
/// vectors doing the same fused multiply-adds in the same order, so the results are the AVX2
/// kernels' bits.
#[cfg(target_arch = "aarch64")]
mod neon {
    use super::{MR, NR};
    use std::arch::aarch64::*;

    /// [`super::avx2_kernel`]: rows of 16 accumulators (four vectors) starting at `acc`'s values,
    /// `acc += a_ik · b_k`.
    pub(super) fn kernel<const M: usize, const TA: bool>(k: usize, a: &[f32], lda: usize, b: &[f32], acc: &mut [f32; MR * NR]) {
        if TA {
            assert!(k == 0 || a.len() >= (k - 1) * lda + M);
        } else {
            assert!(a.len() >= (M - 1) * lda + k);
        }
        assert!(b.len() >= k * NR);
        // SAFETY: NEON is baseline on AArch64; every load is within the lengths asserted above.
        unsafe {
            let mut c = [[vdupq_n_f32(0.0); 4]; M];
            for (i, ci) in c.iter_mut().enumerate() {
                for (q, v) in ci.iter_mut().enumerate() {
                    *v = vld1q_f32(acc.as_ptr().add(i * NR + 4 * q));
                }
            }
            let ap = a.as_ptr();
            let bp = b.as_ptr();
            for kk in 0..k {
                let bv: [float32x4_t; 4] = std::array::from_fn(|q| vld1q_f32(bp.add(kk * NR + 4 * q)));
                for (i, ci) in c.iter_mut().enumerate() {
                    let av = *ap.add(if TA { kk * lda + i } else { i * lda + kk });
                    for q in 0..4 {
                        ci[q] = vfmaq_n_f32(ci[q], bv[q], av);
                    }
                }
            }
            for (i, ci) in c.iter().enumerate() {
                for (q, &v) in ci.iter().enumerate() {
                    vst1q_f32(acc.as_mut_ptr().add(i * NR + 4 * q), v);
                }
            }
        }
    }

    /// [`super::dot_avx2`]: four 8-lane accumulators over 32-element steps, then 8-element
    /// steps into the first, the lanes added `(a0 + a1) + (a2 + a3)` and summed in order, then
    /// the scalar tail.
    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        // SAFETY: NEON is baseline; loads stay below n.
        unsafe {
            let mut acc = [[vdupq_n_f32(0.0); 2]; 4];
            let mut i = 0;
            while i + 32 <= n {
                for (l, acc_l) in acc.iter_mut().enumerate() {
                    for (h, v) in acc_l.iter_mut().enumerate() {
                        let o = i + 8 * l + 4 * h;
                        *v = vfmaq_f32(*v, vld1q_f32(pa.add(o)), vld1q_f32(pb.add(o)));
                    }
                }
                i += 32;
            }
            while i + 8 <= n {
                for (h, v) in acc[0].iter_mut().enumerate() {
                    *v = vfmaq_f32(*v, vld1q_f32(pa.add(i + 4 * h)), vld1q_f32(pb.add(i + 4 * h)));
                }
                i += 8;
            }
            let mut lanes = [0f32; 8];
            for (h, out) in lanes.chunks_exact_mut(4).enumerate() {
                let s = vaddq_f32(vaddq_f32(acc[0][h], acc[1][h]), vaddq_f32(acc[2][h], acc[3][h]));
                vst1q_f32(out.as_mut_ptr(), s);
            }
            let mut total: f32 = lanes.iter().sum();
            while i < n {
                total += a[i] * b[i];
                i += 1;
            }
            total
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{self, GgmlType};

    fn reference(wf: &[f32], x: &[f32], k: usize, n: usize) -> Vec<f64> {
        let t = x.len() / k;
        let mut y = vec![0f64; t * n];
        for tt in 0..t {
            for o in 0..n {
                y[tt * n + o] = (0..k).map(|i| x[tt * k + i] as f64 * wf[o * k + i] as f64).sum();
            }
        }
        y
    }

    #[test]
    fn matmul_matches_f64_reference_for_odd_shapes() {
        let mut seed = 1u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        for &(k, n, t) in &[(64usize, 17usize, 1usize), (64, 33, 2), (96, 50, 3), (128, 100, 7), (256, 161, 13), (32, 16, 6)] {
            let wf: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
            let mut wb = vec![0u8; k * n / 32 * 34];
            quant::encode(GgmlType::Q8_0, &wf, &mut wb).unwrap();
            let mut wd = vec![0f32; k * n];
            quant::decode(GgmlType::Q8_0, &wb, &mut wd).unwrap();
            let x: Vec<f32> = (0..k * t).map(|_| rnd()).collect();
            let qm = QMatrix { ty: GgmlType::Q8_0, n_in: k, n_out: n, data: &wb };
            let mut y = vec![0f32; t * n];
            matmul(&qm, &x, &mut y);
            let r = reference(&wd, &x, k, n);
            for i in 0..y.len() {
                assert!((y[i] as f64 - r[i]).abs() < 1e-4 * (1.0 + r[i].abs()), "k{k} n{n} t{t} i{i}: {} vs {}", y[i], r[i]);
            }
        }
    }

    /// [`pack_rows`], nothing to do when `k = 0`.
    fn pack(b: &[f32], ldb: usize, n: usize, k: usize, out: &mut [f32]) {
        if k > 0 {
            pack_rows(b, ldb, n, k, out);
        }
    }

    fn levels() -> Vec<Level> {
        let mut v = vec![Level::Scalar];
        if crate::quant::simd_enabled() {
            v.push(Level::Simd);
        }
        #[cfg(all(target_arch = "x86_64", finetune_avx512))]
        if std::arch::is_x86_feature_detected!("avx512f") {
            v.push(Level::Avx512);
        }
        v
    }

    /// `tile` in `mode` at `lv` on a copy of `c0`.
    #[allow(clippy::too_many_arguments)]
    fn run(
        lv: Level,
        mode: u8,
        ta: bool,
        m: usize,
        n: usize,
        k: usize,
        a: &[f32],
        lda: usize,
        b: &[f32],
        c0: &[f32],
        ldc: usize,
    ) -> Vec<f32> {
        let mut c = c0.to_vec();
        let (bs, cp) = (NR * k, c.as_mut_ptr());
        // SAFETY: c is m × ldc (ldc ≥ n); a and b are sized by the caller.
        unsafe {
            match (mode, ta) {
                (SET, false) => tile_at::<SET, false>(lv, m, n, k, a, lda, b, bs, cp, ldc),
                (ADD, false) => tile_at::<ADD, false>(lv, m, n, k, a, lda, b, bs, cp, ldc),
                (CONT, false) => tile_at::<CONT, false>(lv, m, n, k, a, lda, b, bs, cp, ldc),
                (SET, true) => tile_at::<SET, true>(lv, m, n, k, a, lda, b, bs, cp, ldc),
                (ADD, true) => tile_at::<ADD, true>(lv, m, n, k, a, lda, b, bs, cp, ldc),
                _ => tile_at::<CONT, true>(lv, m, n, k, a, lda, b, bs, cp, ldc),
            }
        }
        c
    }

    /// Every micro-kernel level gives the scalar twin's bits (one fused multiply-add per k, k
    /// ascending), in every mode, with A plain or transposed, on odd shapes; and the values are
    /// right (f64 reference). CONT over k split in two chunks gives SET's bits over all of k.
    #[test]
    fn micro_kernels_match_scalar_bits_on_odd_shapes() {
        let mut seed = 5u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let lv = levels();
        assert!(lv.len() >= 2 || !crate::quant::simd_enabled(), "no SIMD level to compare");
        for &m in &[1usize, 2, 3, 5, 7, 11, 12, 13, 25, 38] {
            for &n in &[1usize, 15, 16, 17, 31, 33, 47, 64] {
                for &k in &[0usize, 1, 3, 17, 64, 131] {
                    let ldc = n + 3;
                    let bm: Vec<f32> = (0..n * k).map(|_| rnd()).collect();
                    let mut b = vec![0f32; n.div_ceil(NR) * NR * k];
                    pack(&bm, k, n, k, &mut b);
                    let c0: Vec<f32> = (0..m * ldc).map(|_| rnd()).collect();
                    for ta in [false, true] {
                        let lda = if ta { m + 2 } else { k + 1 };
                        let a: Vec<f32> = (0..if ta { k.max(1) * lda } else { m * lda }).map(|_| rnd()).collect();
                        let av = |i: usize, kk: usize| if ta { a[kk * lda + i] } else { a[i * lda + kk] };
                        for mode in [SET, ADD, CONT] {
                            let want = run(Level::Scalar, mode, ta, m, n, k, &a, lda, &b, &c0, ldc);
                            for i in 0..m {
                                for j in 0..ldc {
                                    let w = want[i * ldc + j];
                                    if j >= n {
                                        assert_eq!(w.to_bits(), c0[i * ldc + j].to_bits(), "column past n written");
                                        continue;
                                    }
                                    let dot: f64 = (0..k).map(|kk| av(i, kk) as f64 * bm[j * k + kk] as f64).sum();
                                    let r = if mode == SET { dot } else { dot + c0[i * ldc + j] as f64 };
                                    assert!((w as f64 - r).abs() < 1e-5 * (1.0 + k as f64), "m{m} n{n} k{k} ta{ta} mode{mode}: {w} vs {r}");
                                }
                            }
                            for &l in &lv[1..] {
                                let got = run(l, mode, ta, m, n, k, &a, lda, &b, &c0, ldc);
                                let same = got.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits());
                                assert!(same, "{l:?} differs from scalar: m{m} n{n} k{k} ta{ta} mode{mode}");
                            }
                        }
                        // k split in two chunks: SET over the first, CONT over the rest.
                        let k1 = k / 2;
                        for &l in &lv {
                            let whole = run(l, SET, ta, m, n, k, &a, lda, &b, &c0, ldc);
                            let mut b1 = vec![0f32; n.div_ceil(NR) * NR * k1];
                            let mut b2 = vec![0f32; n.div_ceil(NR) * NR * (k - k1)];
                            pack(&bm, k, n, k1, &mut b1);
                            pack(&bm[k1..], k, n, k - k1, &mut b2);
                            let (a1, a2) = if ta { (&a[..], &a[k1 * lda..]) } else { (&a[..], &a[k1..]) };
                            let part = run(l, SET, ta, m, n, k1, a1, lda, &b1, &c0, ldc);
                            let split = run(l, CONT, ta, m, n, k - k1, a2, lda, &b2, &part, ldc);
                            let same = split.iter().zip(&whole).all(|(x, y)| x.to_bits() == y.to_bits());
                            assert!(same, "{l:?}: k split {k1}+{} differs from one pass: m{m} n{n} ta{ta}", k - k1);
                        }
                    }
                }
            }
        }
    }

    /// A weight that counts the values its decoders produce.
    #[derive(Debug)]
    struct Counting<'a>(QMatrix<'a>, std::sync::atomic::AtomicUsize);

    impl QuantWeight for Counting<'_> {
        fn n_in(&self) -> usize {
            self.0.n_in
        }
        fn n_out(&self) -> usize {
            self.0.n_out
        }
        fn format(&self) -> crate::weights::WeightFormat {
            self.0.format()
        }
        fn byte_size(&self) -> usize {
            self.0.byte_size()
        }
        fn col_block(&self) -> usize {
            self.0.col_block()
        }
        fn decode_cols(&self, r: usize, c0: usize, c1: usize, out: &mut [f32]) {
            self.1.fetch_add(c1 - c0, std::sync::atomic::Ordering::Relaxed);
            self.0.decode_cols(r, c0, c1, out)
        }
        fn decode_rows(&self, r0: usize, r1: usize, out: &mut [f32]) {
            self.1.fetch_add((r1 - r0) * self.0.n_in, std::sync::atomic::Ordering::Relaxed);
            self.0.decode_rows(r0, r1, out)
        }
    }

    /// Forward and input backward decode each weight value exactly once per call, the forward
    /// (k in chunks) gives the bits of one pass over k, and the backward agrees with an f64
    /// reference (Q4_K: 256-wide blocks, column ranges of whole
    /// blocks).
    #[test]
    fn each_weight_block_is_decoded_once_per_call() {
        let mut seed = 9u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let (k, n, t) = (1024usize, 200usize, 13usize);
        let wf: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
        let mut wb = vec![0u8; k * n / 256 * 144];
        quant::encode(GgmlType::Q4_K, &wf, &mut wb).unwrap();
        let mut wd = vec![0f32; k * n];
        quant::decode(GgmlType::Q4_K, &wb, &mut wd).unwrap();
        let w = Counting(QMatrix { ty: GgmlType::Q4_K, n_in: k, n_out: n, data: &wb }, Default::default());
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let x: Vec<f32> = (0..t * k).map(|_| rnd()).collect();
            let mut y = vec![0f32; t * n];
            w.1.store(0, std::sync::atomic::Ordering::Relaxed);
            pool.install(|| matmul(&w, &x, &mut y));
            assert_eq!(w.1.load(std::sync::atomic::Ordering::Relaxed), n * k, "forward, {threads} threads");
            // The forward goes over k in chunks (1024 > 512): the bits of one pass over k.
            let mut y1 = vec![0f32; t * n];
            gemm_f32_bt(&x, k, t, &wd, k, n, k, &mut y1, n, &mut Vec::new());
            assert!(y.iter().zip(&y1).all(|(a, b)| a.to_bits() == b.to_bits()), "forward differs from one pass");
            let dy: Vec<f32> = (0..t * n).map(|_| rnd()).collect();
            let mut dx = vec![0f32; t * k];
            w.1.store(0, std::sync::atomic::Ordering::Relaxed);
            pool.install(|| matmul_backward_input(&w, &dy, &mut dx));
            assert_eq!(w.1.load(std::sync::atomic::Ordering::Relaxed), n * k, "backward, {threads} threads");
            for tt in 0..t {
                for i in 0..k {
                    let r: f64 = (0..n).map(|o| dy[tt * n + o] as f64 * wd[o * k + i] as f64).sum();
                    assert!((dx[tt * k + i] as f64 - r).abs() < 1e-4 * (1.0 + r.abs()), "dx[{tt},{i}]: {} vs {r}", dx[tt * k + i]);
                }
            }
        }
    }

    /// The input backward's grouped loop (panels decoded in groups, tokens 48 at a time) gives
    /// the bits of the plain order: each `kp`-row panel's product over all tokens added in turn.
    #[test]
    fn grouped_backward_keeps_the_panel_order_bits() {
        let mut seed = 11u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let (k, n, t, kp) = (512usize, 600usize, 100usize, 64usize);
        let wf: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
        let mut wb = vec![0u8; k * n / 256 * 144];
        quant::encode(GgmlType::Q4_K, &wf, &mut wb).unwrap();
        let w = QMatrix { ty: GgmlType::Q4_K, n_in: k, n_out: n, data: &wb };
        let dy: Vec<f32> = (0..t * n).map(|_| rnd()).collect();
        let (c0, c1, o0, o1) = (256, 512, 8, 600);
        let got = backward_input_part(&w, &dy, t, c0, c1, o0, o1, kp);
        let wc = c1 - c0;
        let mut want = vec![0f32; t * wc];
        for p0 in (o0..o1).step_by(kp) {
            let nrows = kp.min(o1 - p0);
            let mut rows = vec![0f32; nrows * wc];
            for (r, out) in rows.chunks_exact_mut(wc).enumerate() {
                w.decode_cols(p0 + r, c0, c1, out);
            }
            let mut packed = vec![0f32; wc.div_ceil(NR) * NR * kp];
            pack_cols(&rows, wc, nrows, 0, wc, NR * kp, &mut packed);
            // SAFETY: want is [t, wc].
            unsafe { tile::<ADD, false>(t, wc, nrows, &dy[p0..], n, &packed, NR * kp, want.as_mut_ptr(), wc) };
        }
        assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "grouped order changed the bits");
    }
}
