//! The training forward `y = x·Wᵀ` on integer dots ([`matmul_q8_fwd`]): the quantized
//! counterpart of [`super::matmul::matmul`], on the chunk kernels of the input backward
//! ([`super::matmul_q8_bwd`], `quant::dot_i8`) with the roles swapped: `y = x·V`, `V = Wᵀ`.
//!
//! The reduction runs along W's rows (`n_in`), so W is quantized as stored, per (output row,
//! 32 consecutive inputs) (`quant::dot_i8_rows`): each task owns a range of ≤ 256 outputs and
//! walks the inputs in chunks of 512; a chunk is decoded 32 rows at a time
//! (`QuantWeight::decode_block`) and packed into a tile (≈128 KiB, per-thread scratch reused
//! across calls) that every token of `x` then meets. `x` is quantized once per call per
//! (token, 32 inputs). An output's sum runs over the input blocks in order on every level and
//! every thread count, so the result bits depend only on the inputs.
//!
//! Two GGUF formats skip the decode and re-quantization, so W enters with no error beyond its
//! own format's: Q8_0 (its blocks are already 8-bit codes per row and 32 inputs:
//! `dot_i8_rows::pack_q8_0_rows`, every level), and Q4_0/Q4_1/Q4_K at the scalar and AVX2 levels
//! (their 4-bit codes in `vpmaddubsw`, [`crate::quant::dot_u4`]; AVX-512 VNNI and NEON
//! re-quantize them, so there the bits differ from AVX2's).
//!
//! With few tokens the tile is not reused enough to pay for its packing: below [`MIN_TOKENS`]
//! GGUF weights that llama.cpp's kernels cover go to [`super::matmul_q8::matmul_q8`], and below
//! [`MIN_TOKENS_F32`] the other quantized weights go to the f32 [`matmul`] (its one-token path).
//! F32/F16/BF16 weights always take [`matmul`] (no quantization to undo).

use rayon::prelude::*;

use super::matmul::matmul;
use super::matmul_q8::{has_q8_path, matmul_q8};
use super::matmul_q8_bwd::uses_integer_dots;
use super::send_ptr::SendPtr;
use crate::quant::dot_i8::{self, Chunk, Layout, Level, QuantRows, BLOCK, SLIVER};
use crate::quant::dot_i8_rows::{pack_q8_0_rows, pack_rows};
use crate::quant::dot_u4::{self, ChunkU4};
use crate::quant::GgmlType;
use crate::weights::gguf::QMatrix;
use crate::weights::QuantWeight;

/// Inputs (W columns) per tile, rounded to whole blocks of W's format and of 32.
const KC: usize = 512;
/// Outputs (W rows) per task at most.
const OW: usize = 256;
/// W rows decoded at a time.
const DEC: usize = 32;
/// Fewest tokens for the integer GEMM on GGUF weights with a [`matmul_q8`] path. Measured
/// (`benches/matmul_7b.rs`, Qwen2-7B Q4_K shapes, 1 thread, GFLOP per CPU-second): at T = 16 the
/// GEMM runs 0.58–0.69× llama.cpp's kernels, at T = 32 1.02–1.06×, at 128 2.2–2.4×.
pub const MIN_TOKENS: usize = 32;
/// Fewest tokens for the integer GEMM on the other quantized weights (fewer take [`matmul`]):
/// at T = 1–2 it runs 0.26–0.41× the f32 path, at T = 3 1.24–1.32× (same bench).
pub const MIN_TOKENS_F32: usize = 3;

/// `y[t, o] = Σ_i x[t, i]·W[o, i]`, x `[T, n_in]`, y `[T, n_out]` overwritten (the semantics of
/// [`matmul`]). x and W are quantized to 8 bits per 32 inputs (relative L2 error ≈ 8e-3 of the
/// f32 result, see `tests/matmul_q8_fwd.rs`). Float weights, and fewer than [`MIN_TOKENS`] /
/// [`MIN_TOKENS_F32`] tokens, take the paths named in the module documentation.
pub fn matmul_q8_fwd(w: &dyn QuantWeight, x: &[f32], y: &mut [f32]) {
    let t = x.len() / w.n_in().max(1);
    if !uses_integer_dots(w) {
        return matmul(w, x, y);
    }
    match w.as_ggml() {
        Some(q) if t < MIN_TOKENS && has_q8_path(&q) => return matmul_q8(&q, x, y),
        _ if t < MIN_TOKENS_F32 => return matmul(w, x, y),
        _ => {}
    }
    matmul_q8_fwd_at(dot_i8::level(), w, x, y)
}

/// [`matmul_q8_fwd`]'s integer path at kernel level `level`, whatever the token count (tests
/// compare levels; it quantizes float weights too). Q4_0/Q4_1/Q4_K take their 4-bit codes where the
/// level has that kernel ([`dot_u4::level_has_u4`]).
///
/// # Panics
/// If this CPU cannot run `level`, or the buffers do not fit W's shape.
pub fn matmul_q8_fwd_at(level: Level, w: &dyn QuantWeight, x: &[f32], y: &mut [f32]) {
    matmul_q8_fwd_codes_at(level, dot_u4::level_has_u4(level), w, x, y)
}

/// [`matmul_q8_fwd_at`] with the Q4_0/Q4_1/Q4_K path chosen: `four_bit` multiplies their 4-bit
/// codes, else W is decoded and re-quantized as for the other formats (what AVX-512 VNNI and
/// NEON run; tests compare each level with the scalar reference of its path).
///
/// # Panics
/// If this CPU cannot run `level`, `four_bit` on a level without that kernel, or the buffers
/// do not fit W's shape.
pub fn matmul_q8_fwd_codes_at(level: Level, four_bit: bool, w: &dyn QuantWeight, x: &[f32], y: &mut [f32]) {
    assert!(level.supported(), "kernel level {level:?} is not supported on this CPU");
    assert!(!four_bit || dot_u4::level_has_u4(level), "kernel level {level:?} has no 4-bit-code kernel");
    let (k, n) = (w.n_in(), w.n_out());
    if k == 0 {
        y.fill(0.0);
        return;
    }
    let t = x.len() / k;
    assert_eq!(x.len(), t * k, "x is not a whole number of rows");
    assert_eq!(y.len(), t * n, "y has the wrong size");
    if t == 0 || n == 0 {
        return;
    }
    if let Some(qm) = w.as_ggml().filter(|qm| four_bit && dot_u4::covers(qm.ty)) {
        return fwd_u4(level, &qm, x, t, y);
    }
    // Q8_0 blocks are already a row's 32 inputs in 8 bits: the tile takes them as they are.
    let q8_0 = w.as_ggml().filter(|qm| qm.ty == GgmlType::Q8_0);
    let q8_0 = q8_0.as_ref();
    let layout = level.layout();
    let cb = layout.code_bytes();
    let q = QuantRows::new(level, layout, x, t, k);
    let unit = lcm(w.col_block().max(1), BLOCK);
    let kc = (KC / unit).max(1) * unit;
    let threads = rayon::current_num_threads();
    let ow = OW.min(n.div_ceil(2 * threads).div_ceil(DEC) * DEC);
    let yp = SendPtr(y.as_mut_ptr());
    let yp = &yp;
    let q = &q;
    (0..n.div_ceil(ow)).into_par_iter().for_each(|r| {
        let (o0, o1) = (r * ow, ((r + 1) * ow).min(n));
        with_scratch(|s| {
            let nout = o1 - o0;
            let nsl = nout.div_ceil(SLIVER);
            let nbk = kc / BLOCK;
            grow(&mut s.rows, DEC * kc);
            grow(&mut s.tile, nsl * nbk * layout.block_bytes());
            grow(&mut s.scales, nsl * nbk * SLIVER);
            for i0 in (0..k).step_by(kc) {
                let i1 = (i0 + kc).min(k);
                let ncols = i1 - i0;
                let nb = ncols.div_ceil(BLOCK);
                if let Some(qm) = q8_0 {
                    pack_q8_0_rows(layout, qm.rows(o0, o1), qm.row_bytes(), nout, i0 / BLOCK, nb, 0, &mut s.tile, &mut s.scales);
                } else {
                    for r0 in (o0..o1).step_by(DEC) {
                        let r1 = (r0 + DEC).min(o1);
                        let rows = &mut s.rows[..(r1 - r0) * ncols];
                        w.decode_block(r0, r1, i0, i1, rows);
                        pack_rows(level, rows, ncols, r1 - r0, ncols, (r0 - o0) / SLIVER, nb, &mut s.tile, &mut s.scales);
                    }
                }
                let c = Chunk {
                    t,
                    nb,
                    ncols: nout,
                    qy: q.codes[i0 * cb..].as_ptr(),
                    ldq: q.ldq,
                    sy: q.scales[i0 / BLOCK..].as_ptr(),
                    ycorr: q.corr[i0 / BLOCK..].as_ptr(),
                    tile: s.tile.as_ptr(),
                    scales: s.scales.as_ptr(),
                    dx: yp.0.wrapping_add(o0),
                    ldx: n,
                    zero: i0 == 0,
                };
                // SAFETY: the level is supported (checked above); the tile holds `nb` blocks of
                // `nout` outputs in `layout`; the codes/scales hold `t` rows of `ldq` codes from
                // input `i0` (a multiple of 32); this task alone writes outputs o0..o1 of y's
                // `t` rows.
                unsafe { dot_i8::chunk(level, &c) };
            }
        })
    });
}

/// [`matmul_q8_fwd_at`] on Q4_0/Q4_1/Q4_K weights' own 4-bit codes ([`dot_u4`]): the same task
/// split and input chunks, the tile unpacked from the raw blocks instead of decoded and
/// re-quantized.
fn fwd_u4(level: Level, w: &QMatrix, x: &[f32], t: usize, y: &mut [f32]) {
    let (k, n) = (w.n_in, w.n_out);
    let q = QuantRows::new(level, Layout::Bytes, x, t, k);
    let kc = KC;
    let threads = rayon::current_num_threads();
    let ow = OW.min(n.div_ceil(2 * threads).div_ceil(DEC) * DEC);
    let row_bytes = w.row_bytes();
    let yp = SendPtr(y.as_mut_ptr());
    let yp = &yp;
    let q = &q;
    (0..n.div_ceil(ow)).into_par_iter().for_each(|r| {
        let (o0, o1) = (r * ow, ((r + 1) * ow).min(n));
        with_scratch(|s| {
            let nout = o1 - o0;
            let nsl = nout.div_ceil(SLIVER);
            let nbk = kc / BLOCK;
            grow(&mut s.tile, nsl * nbk * dot_u4::BLOCK_BYTES);
            grow(&mut s.scales, nsl * nbk * SLIVER);
            grow(&mut s.mins, nsl * nbk * SLIVER);
            for i0 in (0..k).step_by(kc) {
                let nb = (kc.min(k - i0)) / BLOCK;
                dot_u4::pack_u4(w.ty, w.rows(o0, o1), row_bytes, nout, i0 / BLOCK, nb, 0, &mut s.tile, &mut s.scales, &mut s.mins);
                let c = ChunkU4 {
                    t,
                    nb,
                    ncols: nout,
                    qy: q.codes[i0..].as_ptr() as *const i8,
                    ldq: q.ldq,
                    sy: q.scales[i0 / BLOCK..].as_ptr(),
                    ys: q.ys[i0 / BLOCK..].as_ptr(),
                    tile: s.tile.as_ptr(),
                    d: s.scales.as_ptr(),
                    m: s.mins.as_ptr(),
                    y: yp.0.wrapping_add(o0),
                    ldy: n,
                    zero: i0 == 0,
                };
                // SAFETY: the level is supported and has a 4-bit kernel (checked by the caller);
                // the tile holds `nb` blocks of `nout` outputs; the codes/scales hold `t` rows of
                // `ldq` codes from input `i0` (a multiple of 32); this task alone writes outputs
                // o0..o1 of y's `t` rows.
                unsafe { dot_u4::chunk_u4(level, &c) };
            }
        })
    });
}

fn lcm(a: usize, b: usize) -> usize {
    let (mut x, mut y) = (a, b);
    while y != 0 {
        (x, y) = (y, x % y);
    }
    a / x * b
}

/// Per-thread scratch: decoded rows, the tile and its scales. Grown, never shrunk.
#[derive(Default)]
struct Scratch {
    rows: Vec<f32>,
    tile: Vec<u8>,
    scales: Vec<f32>,
    mins: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Run `f` on this thread's scratch (a fresh one if it is in use further up the stack).
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut g) => f(&mut g),
        Err(_) => f(&mut Scratch::default()),
    })
}

fn grow<T: Default + Clone>(v: &mut Vec<T>, len: usize) {
    if v.len() < len {
        v.resize(len, T::default());
    }
}
