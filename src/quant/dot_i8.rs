//! Integer dots for the input backward `dX = dY·W` on quantized weights
//! ([`crate::ops::matmul_q8_bwd`]): the reduction runs over W's rows (`n_out`), so W is
//! re-quantized *transposed*, in blocks of [`BLOCK`] consecutive rows per column (int8 codes,
//! one f32 scale per block and column), and dY in blocks of the same rows per token.
//!
//! A chunk of W (rows `b0·32 ..`, a range of columns) is a *tile*: columns in slivers of
//! [`SLIVER`], each sliver's blocks one after the other. [`Layout::Bytes`] (scalar, AVX-512
//! VNNI) stores a block as 8 steps of `[16 columns][4 rows]` bytes, each code `q + 128` (the
//! unsigned operand of `vpdpbusd`; NEON flips it back for `sdot`); [`Layout::Words`] (AVX2) as 16 steps of
//! `[16 columns][2 rows]` i16 codes (`vpmaddwd`). Scales are `[sliver][block][16]` f32.
//!
//! For every token `t` and column `i` of a tile: `acc = fma(Σ_{o∈b} qy[t,o]·qw[o,i] as f32,
//! sw[b,i]·sy[t,b], acc)` for the blocks in order, from 0 or from `dx[t,i]`. The integer sums
//! are exact (|Σ| ≤ 32·127·127 < 2²⁴, so the conversion is too) and the f32 steps are these
//! three in this order on every level: the SIMD twins (`x86/dot_i8.rs`, `arm/dot_i8.rs`) give the scalar
//! reference's bits ([`chunk_scalar`]).

/// Rows (of W, outputs of the forward) per quantization block.
pub const BLOCK: usize = 32;
/// Columns per sliver of a tile.
pub const SLIVER: usize = 16;

/// How a tile stores its codes (and dY its codes: i8 for `Bytes`, i16 for `Words`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Per block 8 steps of `[16][4]` bytes `q ^ 0x80` (= q + 128 as u8); dY codes i8.
    Bytes,
    /// Per block 16 steps of `[16][2]` i16; dY codes i16.
    Words,
}

impl Layout {
    /// Bytes of one block of one sliver.
    pub const fn block_bytes(self) -> usize {
        match self {
            Layout::Bytes => BLOCK * SLIVER,
            Layout::Words => 2 * BLOCK * SLIVER,
        }
    }
    /// Bytes of one dY code.
    pub const fn code_bytes(self) -> usize {
        match self {
            Layout::Bytes => 1,
            Layout::Words => 2,
        }
    }
}

/// The kernels, by instruction set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// [`chunk_scalar`], the reference.
    Scalar,
    /// AVX2 `vpmaddwd` on i16 codes, 3 tokens × 16 columns per step.
    Avx2,
    /// AVX-512 VNNI `vpdpbusd`, 6 tokens × 32 columns per step.
    Vnni,
    /// AArch64 NEON (widening multiplies), 3 tokens × 16 columns per step.
    Neon,
    /// [`Level::Neon`] with `sdot` (the `dotprod` extension).
    NeonDot,
}

impl Level {
    /// Every level, scalar first.
    pub const ALL: [Level; 5] = [Level::Scalar, Level::Avx2, Level::Vnni, Level::Neon, Level::NeonDot];

    /// Whether this CPU (and compiler) can run the level.
    pub fn supported(self) -> bool {
        match self {
            Level::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => super::x86::available(),
            #[cfg(all(target_arch = "x86_64", finetune_avx512))]
            Level::Vnni => super::x86::available() && super::x86::vnni_available() && super::x86::avx512_available(),
            #[cfg(target_arch = "aarch64")]
            Level::Neon => super::arm::available(),
            #[cfg(target_arch = "aarch64")]
            Level::NeonDot => super::arm::dotprod_available(),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The tile layout the level reads.
    pub fn layout(self) -> Layout {
        match self {
            Level::Avx2 => Layout::Words,
            Level::Scalar | Level::Vnni | Level::Neon | Level::NeonDot => Layout::Bytes,
        }
    }
}

/// The level in use: the best this CPU supports, [`Level::Scalar`] when `FINETUNE_SIMD=scalar`,
/// at most [`Level::Avx2`] when `FINETUNE_SIMD=avx2` (see [`super::isa`]).
pub fn level() -> Level {
    level_for(super::isa())
}

/// The level that kernel-table level `isa` runs: VNNI only under [`super::Isa::Avx2Vnni`]
/// (which [`super::isa`] never is when AVX-512 is capped off) and where this CPU has it.
pub fn level_for(isa: super::Isa) -> Level {
    use super::Isa;
    match isa {
        Isa::Avx2Vnni if Level::Vnni.supported() => Level::Vnni,
        Isa::Avx2 | Isa::Avx2Vnni => Level::Avx2,
        Isa::NeonDot if Level::NeonDot.supported() => Level::NeonDot,
        Isa::Neon | Isa::NeonDot => Level::Neon,
        _ => Level::Scalar,
    }
}

/// Activation (or output-gradient) rows quantized per (row, 32 values) for the chunk kernels:
/// codes in a layout's code width (i8, or i16 little-endian for [`Layout::Words`]), rows padded
/// to whole blocks with code 0; per block the scale, `−128·Σ codes` (VNNI's correction) and
/// `scale·Σ codes` (`dot_u4`'s).
pub struct QuantRows {
    /// `t` rows of `ldq` codes.
    pub codes: Vec<u8>,
    /// Per (row, block).
    pub scales: Vec<f32>,
    /// Per (row, block): `−128·Σ codes`.
    pub corr: Vec<i32>,
    /// Per (row, block): `scale·Σ codes`.
    pub ys: Vec<f32>,
    /// Codes per row (a multiple of 32).
    pub ldq: usize,
}

impl QuantRows {
    /// Quantize the `t` rows of `n` values of `x` (each block as [`quantize_block_scalar`]),
    /// codes in `layout`, rows in parallel.
    pub fn new(level: Level, layout: Layout, x: &[f32], t: usize, n: usize) -> QuantRows {
        use rayon::prelude::*;
        let nbt = n.div_ceil(BLOCK);
        let ldq = nbt * BLOCK;
        let cb = layout.code_bytes();
        let mut q =
            QuantRows { codes: vec![0; t * ldq * cb], scales: vec![0.0; t * nbt], corr: vec![0; t * nbt], ys: vec![0.0; t * nbt], ldq };
        let rows = q.codes.par_chunks_mut(ldq * cb).zip(q.scales.par_chunks_mut(nbt)).zip(q.corr.par_chunks_mut(nbt));
        let rows = rows.zip(q.ys.par_chunks_mut(nbt));
        rows.zip(x.par_chunks(n)).for_each(|((((codes, scales), corr), ys), row)| {
            for (b, ((s, c), ys)) in scales.iter_mut().zip(corr.iter_mut()).zip(ys.iter_mut()).enumerate() {
                let dst = &mut codes[b * BLOCK * cb..(b + 1) * BLOCK * cb];
                let sum;
                (*s, sum) = quantize_block_codes(level, layout, &row[b * BLOCK..((b + 1) * BLOCK).min(n)], dst);
                *c = -128 * sum;
                *ys = *s * sum as f32;
            }
        });
        q
    }
}

/// [`quantize_block_scalar`] written straight into `dst` (32 codes in `layout`'s width; past
/// `x.len()` code 0): returns the scale and the sum of the codes. AVX2 where `level` has it (the
/// same bits).
pub fn quantize_block_codes(level: Level, layout: Layout, x: &[f32], dst: &mut [u8]) -> (f32, i32) {
    assert!(x.len() <= BLOCK && dst.len() == BLOCK * layout.code_bytes(), "one block of codes");
    #[cfg(target_arch = "x86_64")]
    if level != Level::Scalar && level.supported() {
        // SAFETY: every non-scalar x86 level has AVX2; the lengths are checked above.
        return unsafe { super::x86::dot_i8::quantize_block_codes_avx2(layout == Layout::Words, x, dst) };
    }
    let _ = level;
    let mut q = [0i8; BLOCK];
    let d = quantize_block_scalar(x, &mut q);
    match layout {
        Layout::Bytes => dst.iter_mut().zip(&q).for_each(|(d, &v)| *d = v as u8),
        Layout::Words => dst.chunks_exact_mut(2).zip(&q).for_each(|(d, &v)| d.copy_from_slice(&(v as i16).to_le_bytes())),
    }
    (d, q.iter().map(|&v| v as i32).sum())
}

/// [`pack_block_scalar`] at `level`'s speed, in `level.layout()` (the same bits).
#[allow(clippy::too_many_arguments)]
pub fn pack_block(
    level: Level,
    rows: &[f32],
    ld: usize,
    nrows: usize,
    ncols: usize,
    b: usize,
    nb: usize,
    tile: &mut [u8],
    scales: &mut [f32],
    amax: &mut [f32],
    inv: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if level != Level::Scalar && level.supported() {
        let words = level.layout() == Layout::Words;
        // SAFETY: every non-scalar x86 level has AVX2; the kernel checks the slices' lengths.
        return unsafe { super::x86::dot_i8::pack_block_avx2(words, rows, ld, nrows, ncols, b, nb, tile, scales) };
    }
    pack_block_scalar(level.layout(), rows, ld, nrows, ncols, b, nb, tile, scales, amax, inv)
}

/// Quantize one block of up to [`BLOCK`] values (the rest of `q` set to 0): scale
/// `amax / 127`, codes `round_ties_even(x / scale)` through the reciprocal. Returns the scale.
pub fn quantize_block_scalar(x: &[f32], q: &mut [i8; BLOCK]) -> f32 {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    q.fill(0);
    for (q, &v) in q.iter_mut().zip(x) {
        *q = (v * id).round_ties_even() as i8;
    }
    d
}

/// Quantize `rows` (`nrows ≤ 32` rows of W restricted to `ncols ≤ ld` columns, row stride `ld`)
/// column by column into block `b` of a tile with `nb` blocks per sliver: codes into `tile`,
/// scales into `scales`. Rows past `nrows` and columns past `ncols` (to the sliver's end) get
/// code 0 and scale 0. `amax`/`inv` are scratch of at least `ncols` rounded up to 16.
#[allow(clippy::too_many_arguments)]
pub fn pack_block_scalar(
    layout: Layout,
    rows: &[f32],
    ld: usize,
    nrows: usize,
    ncols: usize,
    b: usize,
    nb: usize,
    tile: &mut [u8],
    scales: &mut [f32],
    amax: &mut [f32],
    inv: &mut [f32],
) {
    let nsl = ncols.div_ceil(SLIVER);
    let wide = nsl * SLIVER;
    let (amax, inv) = (&mut amax[..wide], &mut inv[..wide]);
    amax.fill(0.0);
    for r in 0..nrows {
        for (m, &v) in amax[..ncols].iter_mut().zip(&rows[r * ld..r * ld + ncols]) {
            *m = m.max(v.abs());
        }
    }
    for (c, (m, i)) in amax.iter_mut().zip(inv.iter_mut()).enumerate() {
        let d = *m / 127.0;
        *i = if d != 0.0 { 1.0 / d } else { 0.0 };
        *m = d;
        scales[(c / SLIVER * nb + b) * SLIVER + c % SLIVER] = d;
    }
    let bb = layout.block_bytes();
    for s in 0..nsl {
        let dst = &mut tile[(s * nb + b) * bb..(s * nb + b + 1) * bb];
        let cols = SLIVER.min(ncols - s * SLIVER);
        for r in 0..BLOCK {
            for c in 0..SLIVER {
                let q = if r < nrows && c < cols {
                    let col = s * SLIVER + c;
                    (rows[r * ld + col] * inv[col]).round_ties_even() as i8
                } else {
                    0
                };
                match layout {
                    Layout::Bytes => dst[(r / 4 * SLIVER + c) * 4 + r % 4] = q as u8 ^ 0x80,
                    Layout::Words => {
                        let at = ((r / 2 * SLIVER + c) * 2 + r % 2) * 2;
                        dst[at..at + 2].copy_from_slice(&(q as i16).to_le_bytes());
                    }
                }
            }
        }
    }
}

/// One tile's product, added to (or, with `zero`, written over) `dx`. Raw pointers because the
/// output is a column range of a shared buffer.
#[derive(Clone, Copy, Debug)]
pub struct Chunk {
    /// Tokens.
    pub t: usize,
    /// Blocks in the tile (per sliver).
    pub nb: usize,
    /// Columns of the tile (slivers: `ncols.div_ceil(16)`).
    pub ncols: usize,
    /// dY codes of token 0, block `b0`: i8 ([`Layout::Bytes`]) or i16 ([`Layout::Words`]), 32
    /// per block, a token's codes `ldq` codes after the previous token's.
    pub qy: *const u8,
    /// Codes per token row of `qy` (a multiple of 32).
    pub ldq: usize,
    /// dY scales of token 0, block `b0`; a token's scales `ldq / 32` after the previous.
    pub sy: *const f32,
    /// `−128·Σ codes` of each dY block (same indexing as `sy`; read by [`Level::Vnni`]).
    pub ycorr: *const i32,
    /// The tile's codes ([`pack_block`]).
    pub tile: *const u8,
    /// The tile's scales.
    pub scales: *const f32,
    /// `dx` at token 0, the tile's first column; row stride `ldx`.
    pub dx: *mut f32,
    /// Row stride of `dx`.
    pub ldx: usize,
    /// Start every sum from 0 instead of `dx`.
    pub zero: bool,
}

/// The scalar reference of a tile ([`Chunk`], tile in `layout`).
///
/// # Safety
/// Every pointer of `c` valid for what it describes (`t` rows, `nb` blocks, `ncols` columns).
pub unsafe fn chunk_scalar(c: &Chunk, layout: Layout) {
    let bb = layout.block_bytes();
    let cb = layout.code_bytes();
    let ls = c.ldq / BLOCK;
    for t in 0..c.t {
        for col in 0..c.ncols {
            let (s, l) = (col / SLIVER, col % SLIVER);
            let out = c.dx.add(t * c.ldx + col);
            let mut acc = if c.zero { 0.0 } else { *out };
            for b in 0..c.nb {
                let blk = c.tile.add((s * c.nb + b) * bb);
                let qy = c.qy.add((t * c.ldq + b * BLOCK) * cb);
                let mut sum = 0i32;
                for r in 0..BLOCK {
                    let (w, y) = match layout {
                        Layout::Bytes => ((*blk.add((r / 4 * SLIVER + l) * 4 + r % 4) ^ 0x80) as i8 as i32, *qy.add(r) as i8 as i32),
                        Layout::Words => {
                            let at = ((r / 2 * SLIVER + l) * 2 + r % 2) * 2;
                            let w = i16::from_le_bytes([*blk.add(at), *blk.add(at + 1)]);
                            let y = i16::from_le_bytes([*qy.add(2 * r), *qy.add(2 * r + 1)]);
                            (w as i32, y as i32)
                        }
                    };
                    sum += w * y;
                }
                let d = *c.scales.add((s * c.nb + b) * SLIVER + l) * *c.sy.add(t * ls + b);
                acc = (sum as f32).mul_add(d, acc);
            }
            *out = acc;
        }
    }
}

/// A tile's product at `level` (which this CPU must support).
///
/// # Safety
/// As [`chunk_scalar`], and `level.supported()`; the tile is in `level.layout()`.
pub unsafe fn chunk(level: Level, c: &Chunk) {
    match level {
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => super::x86::dot_i8::chunk_avx2(c),
        #[cfg(all(target_arch = "x86_64", finetune_avx512))]
        Level::Vnni => super::x86::dot_i8::chunk_vnni(c),
        #[cfg(target_arch = "aarch64")]
        Level::Neon => super::arm::dot_i8::chunk_neon::<false>(c),
        #[cfg(target_arch = "aarch64")]
        Level::NeonDot => super::arm::dot_i8::chunk_neon::<true>(c),
        _ => chunk_scalar(c, level.layout()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::kernels::allows_avx512;
    use crate::quant::Isa;

    #[test]
    fn block_codes_have_the_scalar_bits_at_every_level() {
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 8.0
        };
        let mut blocks: Vec<Vec<f32>> = (0..40).map(|i| (0..[32, 31, 17, 1, 0][i % 5]).map(|_| next()).collect()).collect();
        blocks.push(vec![0.0; 32]);
        // Ties: x·(1/d) lands on .5 (amax 127 makes d = 1).
        blocks.push((0..32).map(|i| if i == 0 { 127.0 } else { i as f32 - 15.5 }).collect());
        blocks.push((0..32).map(|i| if i == 3 { -127.0 } else { 0.5 + i as f32 }).collect());
        for x in &blocks {
            for layout in [Layout::Bytes, Layout::Words] {
                let mut want = vec![0xA5u8; BLOCK * layout.code_bytes()];
                let (d0, s0) = quantize_block_codes(Level::Scalar, layout, x, &mut want);
                let mut q = [0i8; BLOCK];
                assert_eq!(d0.to_bits(), quantize_block_scalar(x, &mut q).to_bits());
                assert_eq!(s0, q.iter().map(|&v| v as i32).sum::<i32>());
                for level in Level::ALL.into_iter().filter(|l| l.supported() && *l != Level::Scalar) {
                    let mut got = vec![0x5Au8; BLOCK * layout.code_bytes()];
                    let (d, sum) = quantize_block_codes(level, layout, x, &mut got);
                    assert_eq!((d.to_bits(), sum, &got), (d0.to_bits(), s0, &want), "{level:?} {layout:?} {x:?}");
                }
            }
        }
    }

    #[test]
    fn finetune_simd_avx2_caps_the_int8_dots_at_avx2() {
        // The values `FINETUNE_SIMD` may take, and what they leave of AVX-512.
        assert!(allows_avx512(None) && allows_avx512(Some("")) && allows_avx512(Some("native")));
        assert!(!allows_avx512(Some("avx2")) && !allows_avx512(Some(" avx2\n")) && !allows_avx512(Some("scalar")));
        // The kernel-table level maps onto the int8 dots': VNNI only from the VNNI table.
        assert_eq!(level_for(Isa::Avx2), Level::Avx2);
        assert_eq!(level_for(Isa::Scalar), Level::Scalar);
        let vnni = if Level::Vnni.supported() { Level::Vnni } else { Level::Avx2 };
        assert_eq!(level_for(Isa::Avx2Vnni), vnni);
        // Under the cap (as `bench --train --isa avx2` runs) no AVX-512 level is in use.
        if std::env::var("FINETUNE_SIMD").as_deref() == Ok("avx2") {
            assert_ne!(crate::quant::isa(), Isa::Avx2Vnni);
            assert_ne!(level(), Level::Vnni);
        }
    }
}
