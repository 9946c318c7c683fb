//! NEON twins of [`super::packed_x86`]'s 4-bit code lookups of AWQ ([`super::awq`]: a column
//! of words shared by the eight rows of each word) and GPTQ ([`super::gptq`]: the nibbles of one
//! word): four codes at a time become four entries of a group's 16-entry table of weights (built
//! by the scalar code) through one `tbl` over the table's 64 bytes, so the values are copied, not
//! computed: the same bits as the scalar path. Used only where [`available`] says so.

use std::arch::aarch64::*;

/// Whether these kernels run here: SIMD not turned off (`FINETUNE_SIMD=scalar`); NEON is
/// baseline on AArch64.
pub fn available() -> bool {
    crate::quant::simd_enabled() && crate::quant::arm::available()
}

/// The 64 bytes of a 16-entry f32 table.
#[inline(always)]
unsafe fn table(lut: &[f32; 16]) -> uint8x16x4_t {
    vld1q_u8_x4(lut.as_ptr() as *const u8)
}

/// Entries `q` (four u32 lanes, each 0..16) of the table: byte indices `4q .. 4q + 4`.
#[inline(always)]
unsafe fn lookup(t: uint8x16x4_t, q: uint32x4_t) -> float32x4_t {
    let idx = vaddq_u32(vmulq_n_u32(q, 4 * 0x0101_0101), vdupq_n_u32(0x0302_0100));
    vreinterpretq_f32_u8(vqtbl4q_u8(t, vreinterpretq_u8_u32(idx)))
}

/// AWQ, eight rows sharing each word: for `kk < n`, word `w = word((k0 + kk)·stride + col)`
/// and each `i < rows`, `out[i·ld + kk] = luts[i][(w >> shifts[i]) & 15]`. Returns the columns
/// done (a multiple of 4); the caller does the rest.
#[allow(clippy::too_many_arguments)]
pub fn awq_rows(
    words: &[u8],
    stride: usize,
    col: usize,
    k0: usize,
    n: usize,
    shifts: &[u32; 8],
    luts: &[[f32; 16]; 8],
    rows: usize,
    out: &mut [f32],
    ld: usize,
) -> usize {
    let n4 = n / 4 * 4;
    if n4 == 0 || rows == 0 || rows > 8 || out.len() < (rows - 1) * ld + n {
        return 0;
    }
    let last = (k0 + n4 - 1) * stride + col;
    if 4 * (last + 1) > words.len() {
        return 0;
    }
    let word = |i: usize| {
        let p = 4 * ((k0 + i) * stride + col);
        u32::from_le_bytes([words[p], words[p + 1], words[p + 2], words[p + 3]])
    };
    // SAFETY: NEON is baseline; every store writes four floats at `r·ld + i` with
    // `r < rows`, `i + 4 ≤ n4 ≤ n`, inside `out` (checked above); the words are read by index.
    unsafe {
        let mask = vdupq_n_u32(15);
        let mut i = 0;
        while i < n4 {
            let ws = [word(i), word(i + 1), word(i + 2), word(i + 3)];
            let w = vld1q_u32(ws.as_ptr());
            for r in 0..rows {
                let q = vandq_u32(vshlq_u32(w, vdupq_n_s32(-(shifts[r] as i32))), mask);
                vst1q_f32(out.as_mut_ptr().add(r * ld + i), lookup(table(&luts[r]), q));
            }
            i += 4;
        }
    }
    n4
}

/// GPTQ 4-bit: word `j` (`j < out.len()/8`) holds codes `8j .. 8j + 8` in its nibbles, low
/// first: `out[8j + m] = lut[(word(j) >> 4m) & 15]`, `word(j)` being the little-endian word
/// `(j0 + j)·stride + col` of `words`. Returns the values written (a multiple of 8).
pub fn gptq4_column(words: &[u8], stride: usize, col: usize, j0: usize, lut: &[f32; 16], out: &mut [f32]) -> usize {
    let nw = out.len() / 8;
    if nw == 0 || 4 * ((j0 + nw - 1) * stride + col + 1) > words.len() {
        return 0;
    }
    // SAFETY: NEON is baseline; stores write floats `8j .. 8j + 8 ≤ out.len()`; words by index.
    unsafe {
        let t = table(lut);
        let mask = vdupq_n_u32(15);
        let sh_lo = vld1q_s32([0, -4, -8, -12].as_ptr());
        let sh_hi = vld1q_s32([-16, -20, -24, -28].as_ptr());
        for j in 0..nw {
            let p = 4 * ((j0 + j) * stride + col);
            let w = vdupq_n_u32(u32::from_le_bytes([words[p], words[p + 1], words[p + 2], words[p + 3]]));
            let o = out.as_mut_ptr().add(8 * j);
            vst1q_f32(o, lookup(t, vandq_u32(vshlq_u32(w, sh_lo), mask)));
            vst1q_f32(o.add(4), lookup(t, vandq_u32(vshlq_u32(w, sh_hi), mask)));
        }
    }
    8 * nw
}
