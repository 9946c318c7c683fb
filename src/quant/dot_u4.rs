//! The training forward `y = x·Wᵀ` on Q4_0/Q4_1/Q4_K weights' *own* 4-bit codes
//! ([`crate::ops::matmul_q8_fwd`]): instead of decoding W to f32 and re-quantizing it to 8 bits
//! per block (`dot_i8_rows`), the tile holds each 32-input block's codes `q ∈ 0..=15` as stored
//! and its `W = d·q + m` coefficients (Q4_1: `d`, `m`; Q4_0: `d`, `−8·d`; Q4_K: `d·sc`,
//! `−dmin·mn` of the sub-block), so W carries no error beyond its own format's and packing is
//! a nibble unpack. This is llama.cpp's Q4_1 × Q8_1 dot, tiled.
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
//! on these weights the training forward's bits differ between AVX2 and AVX-512/ARM
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
    matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q4_K)
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
    // Blocks of 32 per stored block, and the bytes of the stored blocks that hold `b0..b0+nb`.
    let per = ty.block_size() / BLOCK;
    assert!(nrows == 0 || rows.len() >= (nrows - 1) * row_bytes + (b0 + nb).div_ceil(per) * ty.type_size(), "rows too short");
    let end = s0 + nrows.div_ceil(SLIVER);
    assert!(tile.len() >= end * nb * BLOCK_BYTES && d.len() >= end * nb * SLIVER && m.len() >= end * nb * SLIVER, "tile too short");
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
            let mut codes = [0u8; BLOCK];
            (d[at], m[at]) = block_codes(ty, &rows[o * row_bytes..(o + 1) * row_bytes], b0 + b, &mut codes);
            for p in 0..BLOCK / 4 {
                dst[(p * SLIVER + l) * 4..(p * SLIVER + l) * 4 + 4].copy_from_slice(&codes[4 * p..4 * p + 4]);
            }
        }
    }
}

/// The 32 codes of block `b` (of 32 inputs) of one raw row of type `ty`, and its `(d, m)`
/// with `W = d·q + m` exactly as the format's decoder computes it (Q4_0: `(q − 8)·d`; Q4_1:
/// `d·q + m`; Q4_K: `d·sc·q − dmin·mn` with the sub-block's 6-bit scale and min).
fn block_codes(ty: GgmlType, row: &[u8], b: usize, codes: &mut [u8; BLOCK]) -> (f32, f32) {
    let ts = ty.type_size();
    let unpack = |codes: &mut [u8], qs: &[u8], high: bool| {
        for (c, &q) in codes.iter_mut().zip(qs) {
            *c = if high { q >> 4 } else { q & 15 };
        }
    };
    match ty {
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            // Inputs 0..16 in the low nibbles of the 16 code bytes, 16..32 in the high ones.
            let blk = &row[b * ts..(b + 1) * ts];
            let off = if ty == GgmlType::Q4_1 { 4 } else { 2 };
            let qs = &blk[off..off + 16];
            unpack(&mut codes[..16], qs, false);
            unpack(&mut codes[16..], qs, true);
            let scale = f16_at(blk, 0);
            if ty == GgmlType::Q4_1 {
                (scale, f16_at(blk, 2))
            } else {
                (scale, -8.0 * scale)
            }
        }
        GgmlType::Q4_K => {
            // Sub-block j of a 256-input super-block: 32 bytes of codes per pair of sub-blocks,
            // the even one in the low nibbles.
            let (sb, j) = (b / 8, b % 8);
            let blk = &row[sb * ts..(sb + 1) * ts];
            let (sc, mn) = super::kquants::q4_k::scale_min(j, &blk[4..16]);
            unpack(codes, &blk[16 + 32 * (j / 2)..16 + 32 * (j / 2) + 32], j % 2 == 1);
            (f16_at(blk, 0) * sc as f32, -(f16_at(blk, 2) * mn as f32))
        }
        _ => unreachable!("covers() checked"),
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
            // d and m (Q4_K: d and dmin) as f16 in [2^-8, 2^-4) with random sign (exponent
            // 7..10 of 15-bias).
            for off in if ty == GgmlType::Q4_0 { vec![0] } else { vec![0, 2] } {
                let h = (((7 + rng.next() % 4) as u16) << 10) | (rng.next() as u16 & 0x3ff) | ((rng.next() as u16 & 1) << 15);
                blk[off..off + 2].copy_from_slice(&h.to_le_bytes());
            }
        }
        v
    }

    #[test]
    fn tile_values_are_the_decoded_weights() {
        let mut rng = Rng(3);
        for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q4_K] {
            let (nrows, stored) = (21, 2);
            let raw = raw_rows(ty, nrows, stored, &mut rng);
            let (rb, n_in) = (stored * ty.type_size(), stored * ty.block_size());
            let mut dec = vec![0f32; nrows * n_in];
            crate::quant::decode(ty, &raw, &mut dec).unwrap();
            // All blocks of 32, and a window of them starting past the first.
            for (b0, nb) in [(0, n_in / BLOCK), (1, n_in / BLOCK - 2)] {
                let nsl = nrows.div_ceil(SLIVER);
                let mut tile = vec![0xAAu8; nsl * nb * BLOCK_BYTES];
                let (mut d, mut m) = (vec![f32::NAN; nsl * nb * SLIVER], vec![f32::NAN; nsl * nb * SLIVER]);
                pack_u4(ty, &raw, rb, nrows, b0, nb, 0, &mut tile, &mut d, &mut m);
                for o in 0..nsl * SLIVER {
                    let (s, l) = (o / SLIVER, o % SLIVER);
                    for b in 0..nb {
                        let at = (s * nb + b) * SLIVER + l;
                        for r in 0..BLOCK {
                            let want = if o < nrows { dec[o * n_in + (b0 + b) * BLOCK + r] } else { 0.0 };
                            let q = tile[(s * nb + b) * BLOCK_BYTES + (r / 4 * SLIVER + l) * 4 + r % 4];
                            assert!(q < 16, "{ty:?} row {o} block {b} input {r}: code {q}");
                            // d·q and the offset are exact in f32 for these formats, so the sum is
                            // the decoded value (as a value: Q4_0's (8 − 8)·d is −0 for negative
                            // d, d·8 − 8d is +0).
                            assert_eq!(d[at] * q as f32 + m[at], want, "{ty:?} row {o} block {b0}+{b} input {r}");
                        }
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
