//! The training forward `y = x·Wᵀ` on Q4_0/Q4_1 weights' *own* 4-bit codes
//! ([`crate::ops::matmul_q8_fwd`]): instead of decoding W to f32 and re-quantizing it to 8 bits
//! per block (`dot_i8_rows`), the tile holds each block's codes `q ∈ 0..=15` as stored and its
//! `W = d·q + m` coefficients (Q4_1: `d`, `m`; Q4_0: `d`, `−8·d`), so W carries no error beyond
//! its own format's and packing is a nibble unpack. This is llama.cpp's Q4_1 × Q8_1 dot, tiled.
//!
//! Tile ([`pack_u4`]): outputs (W rows) in slivers of [`SLIVER`], per sliver `nb` blocks of 32
//! inputs, a block 8 steps of `[16 outputs][4 inputs]` bytes `q` (the [`Layout::Bytes`] order,
//! without its offset); `d` and `m` as `[sliver][block][16]` f32. Activations: i8 codes per
//! (token, 32 inputs) with scale `sy` (as [`quantize_block_scalar`]) and `ys = sy·Σ codes`.
//!
//! For every token `t` and output `o`, blocks in order: `acc = fma(Σ q·qy as f32, d·sy, acc)`,
//! then `acc = fma(m, ys, acc)`, from 0 or from `y[t, o]` ([`chunk_u4_scalar`]). The integer
//! sums are exact (|Σ| ≤ 32·15·127), so the AVX2 kernel (`x86/dot_u4.rs`: `vpmaddubsw` of
//! unsigned codes and signed activations, summed in i16 over a block, ≤ 8·2·15·127 < 2¹⁵)
//! gives the reference's bits.
//!
//! Which levels take it ([`level_has_u4`]): scalar and AVX2, where it replaces `vpmaddwd` on
//! i16 codes (1.6 ops per 32 products instead of 4) and the decode + re-quantize of W. AVX-512
//! VNNI and NEON keep the re-quantizing path: `vpdpbusd`/`sdot` already take 8-bit codes at
//! full rate, and a kernel this machine's CPUs (AVX2 only) cannot run would be untested. So
//! on Q4_0/Q4_1 weights the training forward's bits differ between AVX2 and AVX-512/ARM
//! machines (both within the 8-bit error bounds of `tests/matmul_q8_fwd.rs`).
//!
//! [`Layout::Bytes`]: super::dot_i8::Layout::Bytes
//! [`quantize_block_scalar`]: super::dot_i8::quantize_block_scalar

use super::dot_i8::{Level, BLOCK, SLIVER};
use super::util::f16_at;
use super::GgmlType;

/// Bytes of one block of one sliver of the tile.
pub const BLOCK_BYTES: usize = BLOCK * SLIVER;

/// Whether the 4-bit-code path covers weights of type `ty`.
pub fn covers(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_1)
}

/// Whether `level` has a kernel for this path (else the forward re-quantizes W).
pub fn level_has_u4(level: Level) -> bool {
    matches!(level, Level::Scalar | Level::Avx2)
}

/// Unpack `nrows ≤ 16·k` W rows' blocks `b0..b0+nb` (raw GGUF rows of type `ty`, `row_bytes`
/// apart, at `rows`) into slivers `s0..` of a tile of `nb` blocks per sliver: row `o` is lane
/// `o % 16` of sliver `s0 + o / 16`. Lanes past `nrows` (to the sliver's end) get code 0 and
/// `d = m = 0`.
///
/// # Panics
/// If `ty` is not covered ([`covers`]) or the slices do not hold what the shape says.
#[allow(clippy::too_many_arguments)]
pub fn pack_u4(
    ty: GgmlType,
    rows: &[u8],
    row_bytes: usize,
    nrows: usize,
    b0: usize,
    nb: usize,
    s0: usize,
    tile: &mut [u8],
    d: &mut [f32],
    m: &mut [f32],
) {
    assert!(covers(ty), "{ty:?} has no 4-bit-code tile");
    let ts = ty.type_size();
    assert!(nrows == 0 || rows.len() >= (nrows - 1) * row_bytes + (b0 + nb) * ts, "rows too short");
    let end = s0 + nrows.div_ceil(SLIVER);
    assert!(tile.len() >= end * nb * BLOCK_BYTES && d.len() >= end * nb * SLIVER && m.len() >= end * nb * SLIVER, "tile too short");
    let (off, q1) = if ty == GgmlType::Q4_1 { (4, true) } else { (2, false) };
    for o in 0..nrows.div_ceil(SLIVER) * SLIVER {
        let (s, l) = (s0 + o / SLIVER, o % SLIVER);
        for b in 0..nb {
            let at = (s * nb + b) * SLIVER + l;
            let dst = &mut tile[(s * nb + b) * BLOCK_BYTES..(s * nb + b + 1) * BLOCK_BYTES];
            if o >= nrows {
                (d[at], m[at]) = (0.0, 0.0);
                for p in 0..BLOCK / 4 {
                    dst[(p * SLIVER + l) * 4..(p * SLIVER + l) * 4 + 4].fill(0);
                }
                continue;
            }
            let blk = &rows[o * row_bytes + (b0 + b) * ts..o * row_bytes + (b0 + b + 1) * ts];
            let scale = f16_at(blk, 0);
            (d[at], m[at]) = if q1 { (scale, f16_at(blk, 2)) } else { (scale, -8.0 * scale) };
            let qs = &blk[off..off + 16];
            for p in 0..BLOCK / 4 {
                for j in 0..4 {
                    let k = 4 * p + j;
                    dst[(p * SLIVER + l) * 4 + j] = if k < 16 { qs[k] & 15 } else { qs[k - 16] >> 4 };
                }
            }
        }
    }
}

/// One tile's product, added to (or, with `zero`, written over) `y`. Raw pointers because the
/// output is a column range of a shared buffer.
#[derive(Clone, Copy, Debug)]
pub struct ChunkU4 {
    /// Tokens.
    pub t: usize,
    /// Blocks in the tile (per sliver).
    pub nb: usize,
    /// Outputs of the tile (slivers: `ncols.div_ceil(16)`).
    pub ncols: usize,
    /// i8 activation codes of token 0 at the tile's first block; a token's codes `ldq` after
    /// the previous token's.
    pub qy: *const i8,
    /// Codes per token row (a multiple of 32).
    pub ldq: usize,
    /// Activation scales (token 0, first block); a token's `ldq / 32` after the previous.
    pub sy: *const f32,
    /// `sy·Σ codes` per activation block (indexed as `sy`).
    pub ys: *const f32,
    /// The tile's codes ([`pack_u4`]).
    pub tile: *const u8,
    /// The tile's `d` per (sliver, block, lane).
    pub d: *const f32,
    /// The tile's `m` per (sliver, block, lane).
    pub m: *const f32,
    /// `y` at token 0, the tile's first output; row stride `ldy`.
    pub y: *mut f32,
    /// Row stride of `y`.
    pub ldy: usize,
    /// Start every sum from 0 instead of `y`.
    pub zero: bool,
}

/// The scalar reference of a tile.
///
/// # Safety
/// Every pointer of `c` valid for what it describes (`t` rows, `nb` blocks, `ncols` outputs).
pub unsafe fn chunk_u4_scalar(c: &ChunkU4) {
    let ls = c.ldq / BLOCK;
    for t in 0..c.t {
        for col in 0..c.ncols {
            let (s, l) = (col / SLIVER, col % SLIVER);
            let out = c.y.add(t * c.ldy + col);
            let mut acc = if c.zero { 0.0 } else { *out };
            for b in 0..c.nb {
                let blk = c.tile.add((s * c.nb + b) * BLOCK_BYTES);
                let qy = c.qy.add(t * c.ldq + b * BLOCK);
                let mut sum = 0i32;
                for r in 0..BLOCK {
                    sum += *blk.add((r / 4 * SLIVER + l) * 4 + r % 4) as i32 * *qy.add(r) as i32;
                }
                let at = (s * c.nb + b) * SLIVER + l;
                acc = (sum as f32).mul_add(*c.d.add(at) * *c.sy.add(t * ls + b), acc);
                acc = (*c.m.add(at)).mul_add(*c.ys.add(t * ls + b), acc);
            }
            *out = acc;
        }
    }
}

/// A tile's product at `level` (supported by this CPU, and [`level_has_u4`]).
///
/// # Safety
/// As [`chunk_u4_scalar`], and `level.supported()`.
pub unsafe fn chunk_u4(level: Level, c: &ChunkU4) {
    match level {
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => super::x86::dot_u4::chunk_u4_avx2(c),
        Level::Scalar => chunk_u4_scalar(c),
        _ => panic!("no 4-bit-code kernel at level {level:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::legacy::{decode_q4_0, decode_q4_1};

    /// xorshift64*: a fixed-seed generator for the tests.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    /// Raw GGUF rows of `ty` with random codes and scales (f16 bit patterns of modest values).
    fn raw_rows(ty: GgmlType, nrows: usize, nb: usize, rng: &mut Rng) -> Vec<u8> {
        let ts = ty.type_size();
        let mut v = vec![0u8; nrows * nb * ts];
        for blk in v.chunks_exact_mut(ts) {
            for b in blk.iter_mut() {
                *b = rng.next() as u8;
            }
            // d and m as f16 in [2^-8, 2^-4) with random sign (exponent 7..10 of 15-bias).
            for off in if ty == GgmlType::Q4_1 { vec![0, 2] } else { vec![0] } {
                let h = (((7 + rng.next() % 4) as u16) << 10) | (rng.next() as u16 & 0x3ff) | ((rng.next() as u16 & 1) << 15);
                blk[off..off + 2].copy_from_slice(&h.to_le_bytes());
            }
        }
        v
    }

    #[test]
    fn tile_values_are_the_decoded_weights() {
        let mut rng = Rng(3);
        for ty in [GgmlType::Q4_0, GgmlType::Q4_1] {
            let (nrows, nb) = (21, 3);
            let raw = raw_rows(ty, nrows, nb, &mut rng);
            let rb = nb * ty.type_size();
            let nsl = nrows.div_ceil(SLIVER);
            let mut tile = vec![0xAAu8; nsl * nb * BLOCK_BYTES];
            let (mut d, mut m) = (vec![f32::NAN; nsl * nb * SLIVER], vec![f32::NAN; nsl * nb * SLIVER]);
            pack_u4(ty, &raw, rb, nrows, 0, nb, 0, &mut tile, &mut d, &mut m);
            for o in 0..nsl * SLIVER {
                let (s, l) = (o / SLIVER, o % SLIVER);
                for b in 0..nb {
                    let at = (s * nb + b) * SLIVER + l;
                    let mut want = [0f32; 32];
                    if o < nrows {
                        let blk = &raw[o * rb + b * ty.type_size()..o * rb + (b + 1) * ty.type_size()];
                        if ty == GgmlType::Q4_0 {
                            decode_q4_0(blk, &mut want)
                        } else {
                            decode_q4_1(blk, &mut want)
                        }
                    }
                    for (r, &w) in want.iter().enumerate() {
                        let q = tile[(s * nb + b) * BLOCK_BYTES + (r / 4 * SLIVER + l) * 4 + r % 4];
                        assert!(q < 16, "{ty:?} row {o} block {b} input {r}: code {q}");
                        // d·q and the offset are exact in f32, so the sum is the decoded value (as a
                        // value: Q4_0's (8 − 8)·d is −0 for negative d, d·8 − 8d is +0).
                        assert_eq!(d[at] * q as f32 + m[at], w, "{ty:?} row {o} block {b} input {r}");
                    }
                }
            }
        }
    }

    /// The SIMD kernel on extreme codes (15 against ±127 everywhere: the largest i16 partial
    /// sums) and on random ones, odd token and output counts, from 0 and from `y`.
    #[test]
    fn simd_kernel_gives_the_scalar_bits() {
        let levels: Vec<Level> = [Level::Avx2].into_iter().filter(|l| l.supported() && level_has_u4(*l)).collect();
        let mut rng = Rng(9);
        for (case, &(t, ncols, nb)) in [(7usize, 37usize, 3usize), (3, 16, 1), (10, 50, 2), (1, 5, 4)].iter().enumerate() {
            for extreme in [false, true] {
                let nsl = ncols.div_ceil(SLIVER);
                let tile: Vec<u8> = (0..nsl * nb * BLOCK_BYTES).map(|_| if extreme { 15 } else { (rng.next() % 16) as u8 }).collect();
                let sign = if case % 2 == 0 { 1 } else { -1 };
                let qy: Vec<i8> =
                    (0..t * nb * BLOCK).map(|_| if extreme { 127 * sign } else { (rng.next() % 255) as i32 - 127 } as i8).collect();
                let f = |rng: &mut Rng| (rng.next() % 1000) as f32 / 997.0 - 0.5;
                let (sy, ys): (Vec<f32>, Vec<f32>) = (0..t * nb).map(|_| (f(&mut rng), f(&mut rng))).unzip();
                let (d, m): (Vec<f32>, Vec<f32>) = (0..nsl * nb * SLIVER).map(|_| (f(&mut rng), f(&mut rng))).unzip();
                let y0: Vec<f32> = (0..t * ncols).map(|_| f(&mut rng)).collect();
                for zero in [true, false] {
                    let run = |level: Level| {
                        let mut y = y0.clone();
                        let c = ChunkU4 {
                            t,
                            nb,
                            ncols,
                            qy: qy.as_ptr(),
                            ldq: nb * BLOCK,
                            sy: sy.as_ptr(),
                            ys: ys.as_ptr(),
                            tile: tile.as_ptr(),
                            d: d.as_ptr(),
                            m: m.as_ptr(),
                            y: y.as_mut_ptr(),
                            ldy: ncols,
                            zero,
                        };
                        // SAFETY: every buffer holds what `c` describes; the level is supported.
                        unsafe { chunk_u4(level, &c) };
                        y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                    };
                    let want = run(Level::Scalar);
                    if extreme {
                        // Σ = 32·15·(±127) per block: the scalar reference is the plain sum.
                        let s = (32 * 15 * 127 * sign) as f32;
                        let mut acc = if zero { 0.0 } else { y0[0] };
                        for b in 0..nb {
                            acc = s.mul_add(d[b * SLIVER] * sy[b], acc);
                            acc = m[b * SLIVER].mul_add(ys[b], acc);
                        }
                        assert_eq!(want[0], acc.to_bits());
                    }
                    for &level in &levels {
                        assert_eq!(run(level), want, "{level:?} T={t} cols={ncols} nb={nb} extreme={extreme} zero={zero}");
                    }
                }
            }
        }
    }
}
