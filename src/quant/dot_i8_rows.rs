//! The tile packing of the forward `y = x·Wᵀ` on integer dots ([`crate::ops::matmul_q8_fwd`]):
//! there the reduction runs along W's rows (`n_in`), so W is quantized *as stored*, per (row
//! `o`, [`BLOCK`] consecutive inputs), and the tile's columns are W's rows (the outputs).
//! The tile is the one [`dot_i8::chunk`](super::dot_i8::chunk) reads (see [`super::dot_i8`]):
//! outputs in slivers of [`SLIVER`], per sliver `nb` blocks of 32 inputs, a block in
//! [`Layout::Bytes`] or [`Layout::Words`], scales `[sliver][block][16]`. So the chunk kernels
//! of the backward run the forward unchanged; only the packing differs.
//!
//! A row's block is quantized as [`quantize_block_scalar`] does (scale `amax/127`, codes
//! `round_ties_even(x·(1/scale))`, saturated to i8); the AVX2 twin
//! (`x86/dot_i8_rows.rs`) gives the same bits.

use super::dot_i8::{quantize_block_scalar, Layout, Level, BLOCK, SLIVER};

/// [`pack_rows_scalar`] at `level`'s speed, in `level.layout()` (the same bits).
#[allow(clippy::too_many_arguments)]
pub fn pack_rows(
    level: Level,
    rows: &[f32],
    ld: usize,
    nrows: usize,
    ncols: usize,
    s0: usize,
    nb: usize,
    tile: &mut [u8],
    scales: &mut [f32],
) {
    check(level.layout(), rows, ld, nrows, ncols, s0, nb, tile, scales);
    #[cfg(target_arch = "x86_64")]
    if level != Level::Scalar && level.supported() {
        let words = level.layout() == Layout::Words;
        // SAFETY: every non-scalar x86 level has AVX2; `check` has bounded every access.
        return unsafe { super::x86::dot_i8_rows::pack_rows_avx2(words, rows, ld, nrows, ncols, s0, nb, tile, scales) };
    }
    pack_rows_scalar(level.layout(), rows, ld, nrows, ncols, s0, nb, tile, scales)
}

/// The bounds every packer relies on (panics with what is wrong).
#[allow(clippy::too_many_arguments)]
fn check(layout: Layout, rows: &[f32], ld: usize, nrows: usize, ncols: usize, s0: usize, nb: usize, tile: &[u8], scales: &[f32]) {
    assert!(ncols <= ld && ncols.div_ceil(BLOCK) == nb, "{ncols} columns do not make {nb} blocks of row stride {ld}");
    assert!(nrows == 0 || rows.len() >= (nrows - 1) * ld + ncols, "rows too short");
    let end = s0 + nrows.div_ceil(SLIVER);
    assert!(tile.len() >= end * nb * layout.block_bytes() && scales.len() >= end * nb * SLIVER, "tile too short");
}

/// Quantize `nrows` rows of W (`ncols` inputs each, row stride `ld`; `ncols` makes exactly
/// `nb` blocks of 32, the last one possibly short) into the tile's slivers `s0..`, a tile of
/// `nb` blocks per sliver: row `o` is lane `o % 16` of sliver `s0 + o / 16`. Inputs past
/// `ncols` (to the block's end) and lanes past `nrows` (to the sliver's end) get code 0 and
/// scale 0.
///
/// # Panics
/// If the slices do not hold what the shape says.
#[allow(clippy::too_many_arguments)]
pub fn pack_rows_scalar(
    layout: Layout,
    rows: &[f32],
    ld: usize,
    nrows: usize,
    ncols: usize,
    s0: usize,
    nb: usize,
    tile: &mut [u8],
    scales: &mut [f32],
) {
    check(layout, rows, ld, nrows, ncols, s0, nb, tile, scales);
    let bb = layout.block_bytes();
    let mut q = [0i8; BLOCK];
    for o in 0..nrows.div_ceil(SLIVER) * SLIVER {
        let (s, l) = (s0 + o / SLIVER, o % SLIVER);
        for b in 0..nb {
            let d = if o < nrows {
                quantize_block_scalar(&rows[o * ld + b * BLOCK..o * ld + ((b + 1) * BLOCK).min(ncols)], &mut q)
            } else {
                q.fill(0);
                0.0
            };
            scales[(s * nb + b) * SLIVER + l] = d;
            let dst = &mut tile[(s * nb + b) * bb..(s * nb + b + 1) * bb];
            for (r, &v) in q.iter().enumerate() {
                match layout {
                    Layout::Bytes => dst[(r / 4 * SLIVER + l) * 4 + r % 4] = v as u8 ^ 0x80,
                    Layout::Words => {
                        let at = ((r / 2 * SLIVER + l) * 2 + r % 2) * 2;
                        dst[at..at + 2].copy_from_slice(&(v as i16).to_le_bytes());
                    }
                }
            }
        }
    }
}

/// [`pack_rows_scalar`] for Q8_0 weights straight from their raw blocks: a Q8_0 block is
/// already 32 inputs of one row as i8 codes with one scale, so the tile takes W's own codes and
/// scales (no decode, no re-quantization, no error added to W). `rows` holds `nrows` raw rows
/// `row_bytes` apart; blocks `b0..b0 + nb` of each go to blocks `0..nb` of slivers `s0..`.
/// Lanes past `nrows` get code 0 and scale 0. Every level reads the same tile, so the bits do
/// not depend on the level.
///
/// # Panics
/// If the slices do not hold what the shape says.
#[allow(clippy::too_many_arguments)]
pub fn pack_q8_0_rows(
    layout: Layout,
    rows: &[u8],
    row_bytes: usize,
    nrows: usize,
    b0: usize,
    nb: usize,
    s0: usize,
    tile: &mut [u8],
    scales: &mut [f32],
) {
    const TS: usize = 2 + BLOCK;
    assert!(nrows == 0 || rows.len() >= (nrows - 1) * row_bytes + (b0 + nb) * TS, "rows too short");
    let end = s0 + nrows.div_ceil(SLIVER);
    let bb = layout.block_bytes();
    assert!(tile.len() >= end * nb * bb && scales.len() >= end * nb * SLIVER, "tile too short");
    for o in 0..nrows.div_ceil(SLIVER) * SLIVER {
        let (s, l) = (s0 + o / SLIVER, o % SLIVER);
        for b in 0..nb {
            let blk = (o < nrows).then(|| &rows[o * row_bytes + (b0 + b) * TS..o * row_bytes + (b0 + b + 1) * TS]);
            scales[(s * nb + b) * SLIVER + l] = blk.map_or(0.0, |blk| super::util::f16_at(blk, 0));
            let dst = &mut tile[(s * nb + b) * bb..(s * nb + b + 1) * bb];
            for r in 0..BLOCK {
                let v = blk.map_or(0, |blk| blk[2 + r] as i8);
                match layout {
                    Layout::Bytes => dst[(r / 4 * SLIVER + l) * 4 + r % 4] = v as u8 ^ 0x80,
                    Layout::Words => {
                        let at = ((r / 2 * SLIVER + l) * 2 + r % 2) * 2;
                        dst[at..at + 2].copy_from_slice(&(v as i16).to_le_bytes());
                    }
                }
            }
        }
    }
}
