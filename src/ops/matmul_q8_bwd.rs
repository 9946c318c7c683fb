//! The input backward `dx = dy · W` on integer dots ([`matmul_backward_input_q8`]): the
//! quantized counterpart of [`super::matmul::matmul_backward_input`] for training on
//! quantized weights: 2.4–2.9× the f32 path's GFLOP per CPU-second at Qwen2-7B shapes with
//! AVX-512 VNNI, 1.6–1.8× with AVX2 against f32 on AVX2 (`cargo bench --bench matmul_7b`).
//!
//! The reduction runs over W's rows, so W is re-quantized transposed
//! ([`crate::quant::dot_i8`]): each task owns a range of ≈256 columns of `dx` (whole blocks of
//! W's format) and walks W's rows in chunks of 512; a chunk is decoded 32 rows at a time
//! (`QuantWeight::decode_block`) and quantized per (32 rows, column) into a tile (≈144 KiB
//! of codes and scales, twice the codes for AVX2's i16; per-thread scratch reused across
//! calls) that every token of `dy` then meets. `dy` is quantized once per call per (token,
//! 32 rows), the one allocation of a call. A column's sum runs over the row blocks in
//! order on every level and every thread count, so the result bits depend only on the
//! inputs. F32/F16/BF16 weights take the f32 path unchanged (no quantization to undo).

use rayon::prelude::*;

use super::matmul::{matmul_backward_input, matmul_backward_input_add};
use super::send_ptr::SendPtr;
use crate::quant::dot_i8::{self, Chunk, Level, QuantRows, BLOCK, SLIVER};
use crate::quant::GgmlType;
use crate::weights::{QuantWeight, WeightFormat};

/// Rows of W per tile.
const KC: usize = 512;
/// Columns per task (rounded to W's column blocks).
const CW: usize = 256;

/// Input gradient of the forward `y = x·Wᵀ` on integer dots: `dx[t, i] (+)= Σ_o dy[t, o]·W[o, i]`,
/// dy `[T, n_out]`, dx `[T, n_in]`; `accumulate` adds to `dx`, else `dx` is overwritten.
/// dy and W are quantized to 8 bits in blocks of 32 rows of W (relative L2 error ≈ 1e-2 of
/// the f32 result, see `tests/matmul_q8_bwd.rs`). Weights stored as plain floats
/// ([`uses_integer_dots`] false) go to the f32 [`matmul_backward_input`].
pub fn matmul_backward_input_q8(w: &dyn QuantWeight, dy: &[f32], dx: &mut [f32], accumulate: bool) {
    if !uses_integer_dots(w) {
        return if accumulate { matmul_backward_input_add(w, dy, dx) } else { matmul_backward_input(w, dy, dx) };
    }
    matmul_backward_input_q8_at(dot_i8::level(), w, dy, dx, accumulate)
}

/// Whether [`matmul_backward_input_q8`] uses integer dots for `w` (every quantized format;
/// not F32/F16/BF16).
pub fn uses_integer_dots(w: &dyn QuantWeight) -> bool {
    match w.format() {
        WeightFormat::Ggml(t) => !matches!(t, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16),
        WeightFormat::Dense(_) => false,
        _ => true,
    }
}

/// [`matmul_backward_input_q8`]'s integer path at kernel level `level` (tests compare levels).
///
/// # Panics
/// If this CPU cannot run `level`, or the buffers do not fit W's shape.
pub fn matmul_backward_input_q8_at(level: Level, w: &dyn QuantWeight, dy: &[f32], dx: &mut [f32], accumulate: bool) {
    assert!(level.supported(), "kernel level {level:?} is not supported on this CPU");
    let (k, n) = (w.n_in(), w.n_out());
    if k == 0 {
        return;
    }
    let t = dx.len() / k;
    assert_eq!(dx.len(), t * k, "dx is not a whole number of rows");
    assert_eq!(dy.len(), t * n, "dy has the wrong size");
    if t == 0 || n == 0 {
        if !accumulate {
            dx.fill(0.0);
        }
        return;
    }
    let layout = level.layout();
    let q = QuantRows::new(level, layout, dy, t, n);
    let bs = w.col_block().max(1);
    let threads = rayon::current_num_threads();
    let per = (CW / bs).max(1).min((k.div_ceil(bs) / (2 * threads)).max(1));
    let cw = per * bs;
    let dxp = SendPtr(dx.as_mut_ptr());
    let dxp = &dxp;
    let q = &q;
    (0..k.div_ceil(cw)).into_par_iter().for_each(|r| {
        let (c0, c1) = (r * cw, ((r + 1) * cw).min(k));
        with_scratch(|s| {
            let ncols = c1 - c0;
            let wide = ncols.div_ceil(SLIVER) * SLIVER;
            grow(&mut s.rows, BLOCK * ncols);
            grow(&mut s.tile, KC * wide * layout.code_bytes());
            grow(&mut s.scales, KC / BLOCK * wide);
            grow(&mut s.amax, wide);
            grow(&mut s.inv, wide);
            for o0 in (0..n).step_by(KC) {
                let o1 = (o0 + KC).min(n);
                let nb = (o1 - o0).div_ceil(BLOCK);
                for b in 0..nb {
                    let (r0, r1) = (o0 + b * BLOCK, (o0 + (b + 1) * BLOCK).min(o1));
                    let rows = &mut s.rows[..(r1 - r0) * ncols];
                    w.decode_block(r0, r1, c0, c1, rows);
                    dot_i8::pack_block(level, rows, ncols, r1 - r0, ncols, b, nb, &mut s.tile, &mut s.scales, &mut s.amax, &mut s.inv);
                }
                let c = Chunk {
                    t,
                    nb,
                    ncols,
                    qy: q.codes[o0 * layout.code_bytes()..].as_ptr(),
                    ldq: q.ldq,
                    sy: q.scales[o0 / BLOCK..].as_ptr(),
                    ycorr: q.corr[o0 / BLOCK..].as_ptr(),
                    tile: s.tile.as_ptr(),
                    scales: s.scales.as_ptr(),
                    dx: dxp.0.wrapping_add(c0),
                    ldx: k,
                    zero: !accumulate && o0 == 0,
                };
                // SAFETY: the level is supported (checked above); the tile holds `nb` blocks of
                // `ncols` columns in `layout`; the codes/scales hold `t` rows of `ldq` codes
                // from row `o0`; this task alone writes columns c0..c1 of dx's `t` rows.
                unsafe { dot_i8::chunk(level, &c) };
            }
        })
    });
}

/// Per-thread scratch: 32 decoded rows, the tile and its scales, per-column quantization
/// temporaries. Grown, never shrunk.
#[derive(Default)]
struct Scratch {
    rows: Vec<f32>,
    tile: Vec<u8>,
    scales: Vec<f32>,
    amax: Vec<f32>,
    inv: Vec<f32>,
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
