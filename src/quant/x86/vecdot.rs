//! AVX2 twins of [`crate::quant::q8`]'s activation quantizers and [`crate::quant::vecdot`]'s
//! integer dot kernels, with the multi-row variants of the 32-element formats (one weight row
//! against four or eight activation rows, the weight block unpacked once). The integer parts are
//! exact; the f32 parts follow the scalar references operation for operation (one FMA per lane
//! per block for the 32-element formats, scalar f32 per super-block for the k-quants), so results
//! are bit-identical (`tests/simd_vs_scalar.rs`). The kernel table ([`crate::quant::kernels`])
//! lists them per type.

use std::arch::x86_64::*;

use super::available;
use crate::quant::kquants::q4_k::scale_min;
use crate::quant::q8::{self, BlockQ8, BlockQ8K};
use crate::quant::util::f16_round;

/// Q8_0 (`SUM = false`) or Q8_1 (`SUM = true`) quantization; AVX2 when available.
pub fn quantize_q8<const SUM: bool>(x: &[f32], out: &mut [BlockQ8]) {
    assert_eq!(x.len(), out.len() * 32, "quantize_q8: x must hold 32 values per block");
    if available() {
        // SAFETY: features checked; each block reads 32 floats of x and writes one block.
        return unsafe { q8_imp::<SUM>(x, out) };
    }
    q8::quantize_q8_scalar::<SUM>(x, out)
}

/// Q8_K quantization; AVX2 when available.
pub fn quantize_q8k(x: &[f32], out: &mut [BlockQ8K]) {
    assert_eq!(x.len(), out.len() * 256, "quantize_q8k: x must hold 256 values per block");
    if available() {
        // SAFETY: features checked; each block reads 256 floats of x and writes one block.
        return unsafe { q8k_imp(x, out) };
    }
    q8::quantize_q8k_scalar(x, out)
}

/// The little-endian f16 at `b[off..off + 2]` as f32 (exact; F16C, no call).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn f16_at(b: &[u8], off: usize) -> f32 {
    let h = u16::from_le_bytes([b[off], b[off + 1]]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
}
/// The sum of the eight i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

/// `((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7))`, as [`crate::quant::vecdot::hsum8`] (ggml's
/// `hsum_float_8`; also the final sum of `gemm_q0`'s and `rows512`'s tiles).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn hsum_f32(v: __m256) -> f32 {
    let r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    let r = _mm_add_ss(r, _mm_movehdup_ps(r));
    _mm_cvtss_f32(r)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn abs_max(v: &[__m256]) -> __m256 {
    let sign = _mm256_set1_ps(-0.0);
    v.iter().fold(_mm256_setzero_ps(), |m, &x| _mm256_max_ps(m, _mm256_andnot_ps(sign, x)))
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hmax(m: __m256) -> f32 {
    let r = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
    let r = _mm_max_ps(r, _mm_movehl_ps(r, r));
    let r = _mm_max_ss(r, _mm_movehdup_ps(r));
    _mm_cvtss_f32(r)
}

/// Round half to even and convert (`_mm256_round_ps` nearest, then exact conversion).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn round_i32(v: __m256) -> __m256i {
    _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC))
}

/// Pack 32 i32 (four vectors, element order) into 32 saturated i8 at `dst`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pack_store(i: [__m256i; 4], dst: *mut i8) {
    let a = _mm256_packs_epi32(i[0], i[1]);
    let b = _mm256_packs_epi32(i[2], i[3]);
    let p = _mm256_packs_epi16(a, b);
    let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(dst as *mut __m256i, p);
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_imp<const SUM: bool>(x: &[f32], out: &mut [BlockQ8]) {
    for (xb, b) in x.chunks_exact(32).zip(out.iter_mut()) {
        let p = xb.as_ptr();
        let v = [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)), _mm256_loadu_ps(p.add(16)), _mm256_loadu_ps(p.add(24))];
        let amax = hmax(abs_max(&v));
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
        let i = v.map(|x| round_i32(_mm256_mul_ps(x, id)));
        pack_store(i, b.qs.as_mut_ptr());
        b.d = f16_round(d);
        b.s = if SUM {
            let s = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3])));
            f16_round(d * s as f32)
        } else {
            0.0
        };
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8k_imp(x: &[f32], out: &mut [BlockQ8K]) {
    let sign = _mm256_set1_ps(-0.0);
    for (xb, b) in x.chunks_exact(256).zip(out.iter_mut()) {
        let p = xb.as_ptr();
        let v: [__m256; 32] = std::array::from_fn(|j| _mm256_loadu_ps(p.add(8 * j)));
        let amax = hmax(abs_max(&v));
        if amax == 0.0 {
            *b = BlockQ8K::default();
            continue;
        }
        // The first element of that magnitude, with its sign.
        let target = _mm256_set1_ps(amax);
        let mut max = 0f32;
        for (j, &x) in v.iter().enumerate() {
            let hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, x), target, _CMP_EQ_OQ));
            if hit != 0 {
                max = xb[8 * j + hit.trailing_zeros() as usize];
                break;
            }
        }
        let iscale = -127.0 / max;
        let is = _mm256_set1_ps(iscale);
        let top = _mm256_set1_epi32(127);
        for c in 0..8 {
            let i: [__m256i; 4] = std::array::from_fn(|k| _mm256_min_epi32(round_i32(_mm256_mul_ps(v[4 * c + k], is)), top));
            pack_store(i, b.qs.as_mut_ptr().add(32 * c));
            b.bsums[2 * c] = hsum_i32(_mm256_add_epi32(i[0], i[1])) as i16;
            b.bsums[2 * c + 1] = hsum_i32(_mm256_add_epi32(i[2], i[3])) as i16;
        }
        b.d = 1.0 / iscale;
    }
}

macro_rules! wrap8 {
    ($name:ident, $imp:ident) => {
        /// The AVX2 one-row kernel (listed by the kernel table only where AVX2/FMA/F16C are present).
        pub(in crate::quant) fn $name(w: &[u8], a: &[BlockQ8]) -> f32 {
            // SAFETY: the kernel table lists these only when AVX2/FMA/F16C are present; the
            // kernels check the row sizes before reading.
            unsafe { $imp(w, a) }
        }
    };
}
macro_rules! wrap8k {
    ($name:ident, $imp:ident) => {
        /// The AVX2 one-row kernel (listed by the kernel table only where AVX2/FMA/F16C are present).
        pub(in crate::quant) fn $name(w: &[u8], a: &[BlockQ8K]) -> f32 {
            // SAFETY: as for wrap8.
            unsafe { $imp(w, a) }
        }
    };
}
wrap8!(q4_0, q4_0_imp);
wrap8!(q4_1, q4_1_imp);
wrap8!(q5_0, q5_0_imp);
wrap8!(q5_1, q5_1_imp);
wrap8!(q8_0, q8_0_imp);
wrap8k!(q4_k, q4_k_imp);
wrap8k!(q6_k, q6_k_imp);

/// 32 nibbles at `p` (16 bytes): low nibbles → bytes 0..16, high nibbles → bytes 16..32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibbles32(p: *const u8) -> __m256i {
    let t = _mm_loadu_si128(p as *const __m128i);
    let both = _mm256_inserti128_si256(_mm256_castsi128_si256(t), _mm_srli_epi16(t, 4), 1);
    _mm256_and_si256(both, _mm256_set1_epi8(15))
}

/// 0x10 in byte j where bit j of `qh` is set, else 0.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn high_bits(qh: u32) -> __m256i {
    let spread =
        _mm256_shuffle_epi8(_mm256_set1_epi32(qh as i32), _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
    let bit = _mm256_set1_epi64x(0x8040201008040201u64 as i64);
    let on = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    _mm256_and_si256(on, _mm256_set1_epi8(0x10))
}

/// i32 lanes of 4-element sums of `u·s` (u unsigned bytes, s signed bytes).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn lanes_us(u: __m256i, s: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
}

/// i32 lanes of 4-element sums of `x·y`, both signed bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn lanes_ss(x: __m256i, y: __m256i) -> __m256i {
    lanes_us(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn act(ab: &BlockQ8) -> __m256i {
    _mm256_loadu_si256(ab.qs.as_ptr() as *const __m256i)
}

/// The 32-element body: `codes(block) → (d_w, m_w, i32 lanes against a)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn legacy(w: &[u8], a: &[BlockQ8], ts: usize, has_m: bool, lanes: impl Fn(&[u8], &BlockQ8) -> __m256i) -> f32 {
    assert_eq!(w.len(), a.len() * ts, "weight row and activation row differ in length");
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0f32;
    for (blk, ab) in w.chunks_exact(ts).zip(a) {
        let dd = _mm256_set1_ps(f16_at(blk, 0) * ab.d);
        acc = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(lanes(blk, ab)), acc);
        if has_m {
            summs += f16_at(blk, 2) * ab.s;
        }
    }
    hsum_f32(acc) + summs
}

/// [`legacy`] for `N` activation rows; `codes(block)` gives the 32 weight codes (signed
/// bytes when `signed`, else unsigned). With `VNNI`, AVX-512 VNNI `vpdpbusd` sums the four
/// `u·s` byte products of a lane in one step ([`dpbusd`]); `maddubs`+`madd` give the same i32
/// lanes (|u| ≤ 128 and |s| ≤ 127 here, so the i16 pair sums never saturate), so both give
/// the same bits.
///
/// # Safety
/// AVX2/FMA/F16C present, and AVX-512 VL+VNNI when `VNNI` ([`super::vnni_available`]).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn legacy_n<const N: usize, const VNNI: bool>(
    w: &[u8],
    a: [&[BlockQ8]; N],
    ts: usize,
    has_m: bool,
    signed: bool,
    codes: impl Fn(&[u8]) -> __m256i,
) -> [f32; N] {
    for r in &a {
        assert_eq!(w.len(), r.len() * ts, "weight row and activation row differ in length");
    }
    let mut acc = [_mm256_setzero_ps(); N];
    let mut summs = [0f32; N];
    for (ib, blk) in w.chunks_exact(ts).enumerate() {
        let q = codes(blk);
        let dw = f16_at(blk, 0);
        let m = if has_m { f16_at(blk, 2) } else { 0.0 };
        let uq = if signed { _mm256_sign_epi8(q, q) } else { q };
        // dw·d in every lane from a broadcast load and one vector multiply (the same
        // product as the scalar one, one shuffle fewer).
        let dwv = _mm256_set1_ps(dw);
        for t in 0..N {
            let ab = a[t].get_unchecked(ib);
            let y = if signed { _mm256_sign_epi8(act(ab), q) } else { act(ab) };
            let lanes = if VNNI { dpbusd(uq, y) } else { lanes_us(uq, y) };
            let dd = _mm256_mul_ps(dwv, _mm256_broadcast_ss(&ab.d));
            acc[t] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(lanes), acc[t]);
            if has_m {
                summs[t] += m * ab.s;
            }
        }
    }
    std::array::from_fn(|t| hsum_f32(acc[t]) + summs[t])
}

/// `vpdpbusd` from zero: i32 lane `i` = Σ_{k<4} u[4i+k]·s[4i+k] (`u` unsigned, `s` signed
/// bytes). Inline assembly (EVEX, AVX-512 VL+VNNI) rather than the intrinsic, which needs
/// Rust 1.89 (this crate's MSRV is older).
///
/// # Safety
/// The CPU has AVX-512 VL and VNNI ([`super::vnni_available`]).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn dpbusd(u: __m256i, s: __m256i) -> __m256i {
    let mut acc = _mm256_setzero_si256();
    std::arch::asm!("{{evex}} vpdpbusd {acc}, {u}, {s}", acc = inout(ymm_reg) acc, u = in(ymm_reg) u, s = in(ymm_reg) s, options(pure, nomem, nostack));
    acc
}

macro_rules! wrap_n {
    ($name:ident, $vnni:ident, $ts:expr, $m:expr, $signed:expr, $codes:expr) => {
        /// The AVX2 `N`-row kernel (listed by the kernel table only where AVX2/FMA/F16C are present).
        pub(in crate::quant) fn $name<const N: usize>(w: &[u8], a: [&[BlockQ8]; N]) -> [f32; N] {
            // SAFETY: the kernel table lists these only when AVX2/FMA/F16C are present; row
            // lengths are checked before any block is read.
            unsafe { legacy_n::<N, false>(w, a, $ts, $m, $signed, $codes) }
        }
        /// The `N`-row kernel with VNNI (listed by the kernel table only where the CPU has it).
        pub(in crate::quant) fn $vnni<const N: usize>(w: &[u8], a: [&[BlockQ8]; N]) -> [f32; N] {
            // SAFETY: listed only when `vnni_available()` (and AVX2/FMA/F16C); row lengths are
            // checked before any block is read.
            unsafe { legacy_n::<N, true>(w, a, $ts, $m, $signed, $codes) }
        }
    };
}
wrap_n!(q4_0_n, q4_0_n_vnni, 18, false, true, |b: &[u8]| _mm256_sub_epi8(nibbles32(b.as_ptr().add(2)), _mm256_set1_epi8(8)));
wrap_n!(q4_1_n, q4_1_n_vnni, 20, true, false, |b: &[u8]| nibbles32(b.as_ptr().add(4)));
wrap_n!(q5_0_n, q5_0_n_vnni, 22, false, true, |b: &[u8]| {
    let q = _mm256_or_si256(nibbles32(b.as_ptr().add(6)), high_bits(u32::from_le_bytes([b[2], b[3], b[4], b[5]])));
    _mm256_sub_epi8(q, _mm256_set1_epi8(16))
});
wrap_n!(q5_1_n, q5_1_n_vnni, 24, true, false, |b: &[u8]| _mm256_or_si256(
    nibbles32(b.as_ptr().add(8)),
    high_bits(u32::from_le_bytes([b[4], b[5], b[6], b[7]]))
));
wrap_n!(q8_0_n, q8_0_n_vnni, 34, false, true, |b: &[u8]| _mm256_loadu_si256(b.as_ptr().add(2) as *const __m256i));

/// [`legacy`] for `R` consecutive weight rows (`w` holds them, each `a.len()` blocks) against
/// one activation row: the activation block is loaded once per `R` weight blocks and the `R`
/// accumulator chains run side by side (decoding, where every weight row meets one activation
/// row). Per row the operations are [`legacy`]'s (one FMA per block into eight lanes, the `m·s`
/// sum in scalar f32, the same final sum), so the bits are; with `VNNI` the integer lanes come
/// from [`dpbusd`] (the same i32 lanes, see [`legacy_n`]).
///
/// # Safety
/// AVX2/FMA/F16C present, and AVX-512 VL+VNNI when `VNNI` ([`super::vnni_available`]).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn legacy_rows<const R: usize, const VNNI: bool>(
    w: &[u8],
    a: &[BlockQ8],
    ts: usize,
    has_m: bool,
    signed: bool,
    codes: impl Fn(&[u8]) -> __m256i,
) -> [f32; R] {
    let rb = a.len() * ts;
    assert_eq!(w.len(), R * rb, "weight rows and activation row differ in length");
    let mut acc = [_mm256_setzero_ps(); R];
    let mut summs = [0f32; R];
    // The next R rows (the caller's next group, contiguous with these in a matrix): fetched
    // into L1 while these are summed, R·ts bytes per block step.
    let next = w.as_ptr().wrapping_add(R * rb);
    for (ib, ab) in a.iter().enumerate() {
        let y = act(ab);
        for line in (ib * R * ts..(ib + 1) * R * ts).step_by(64) {
            // A hint only: never faults, whatever the address.
            _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(line) as *const i8);
        }
        for r in 0..R {
            let off = r * rb + ib * ts;
            let blk = w.get_unchecked(off..off + ts);
            let q = codes(blk);
            let lanes = match (signed, VNNI) {
                (true, true) => dpbusd(_mm256_sign_epi8(q, q), _mm256_sign_epi8(y, q)),
                (true, false) => lanes_ss(q, y),
                (false, true) => dpbusd(q, y),
                (false, false) => lanes_us(q, y),
            };
            let dd = _mm256_set1_ps(f16_at(blk, 0) * ab.d);
            acc[r] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(lanes), acc[r]);
            if has_m {
                summs[r] += f16_at(blk, 2) * ab.s;
            }
        }
    }
    std::array::from_fn(|r| hsum_f32(acc[r]) + summs[r])
}

macro_rules! wrap_rows {
    ($name:ident, $vnni:ident, $ts:expr, $m:expr, $signed:expr, $layout:ident, $codes:expr) => {
        /// Four consecutive weight rows against one activation row (listed by the kernel table
        /// only where AVX2/FMA/F16C are present).
        pub(in crate::quant) fn $name(w: &[u8], a: &[BlockQ8]) -> [f32; 4] {
            // SAFETY: listed only with AVX2/FMA/F16C; the row lengths are checked first.
            unsafe { legacy_rows::<4, false>(w, a, $ts, $m, $signed, $codes) }
        }
        /// [`$name`] with VNNI (listed by the kernel table only where the CPU has it): the
        /// AVX-512 kernel of [`super::rows512`] where the CPU and compiler have it (the same bits).
        pub(in crate::quant) fn $vnni(w: &[u8], a: &[BlockQ8]) -> [f32; 4] {
            #[cfg(finetune_avx512)]
            if super::rows512::available() {
                // SAFETY: the CPU features were checked; the row lengths are checked first.
                return unsafe { super::rows512::$layout(w, a) };
            }
            // SAFETY: listed only when `vnni_available()` (and AVX2/FMA/F16C); lengths checked.
            unsafe { legacy_rows::<4, true>(w, a, $ts, $m, $signed, $codes) }
        }
    };
}
wrap_rows!(q4_0_rows, q4_0_rows_vnni, 18, false, true, q4_0, |b: &[u8]| _mm256_sub_epi8(nibbles32(b.as_ptr().add(2)), _mm256_set1_epi8(8)));
wrap_rows!(q4_1_rows, q4_1_rows_vnni, 20, true, false, q4_1, |b: &[u8]| nibbles32(b.as_ptr().add(4)));
wrap_rows!(q5_0_rows, q5_0_rows_vnni, 22, false, true, q5_0, |b: &[u8]| {
    let q = _mm256_or_si256(nibbles32(b.as_ptr().add(6)), high_bits(u32::from_le_bytes([b[2], b[3], b[4], b[5]])));
    _mm256_sub_epi8(q, _mm256_set1_epi8(16))
});
wrap_rows!(q5_1_rows, q5_1_rows_vnni, 24, true, false, q5_1, |b: &[u8]| _mm256_or_si256(
    nibbles32(b.as_ptr().add(8)),
    high_bits(u32::from_le_bytes([b[4], b[5], b[6], b[7]]))
));
// Q8_0 stays on `legacy_rows`: perf on Gemma 3's tg (its 178 MB output matrix, memory-bound)
// gave a two-rows-per-zmm Q8_0 kernel 33 % more samples than this one (Q5_0: 34 % fewer).
/// Four consecutive Q8_0 weight rows against one activation row (listed by the kernel table
/// only where AVX2/FMA/F16C are present).
pub(in crate::quant) fn q8_0_rows(w: &[u8], a: &[BlockQ8]) -> [f32; 4] {
    // SAFETY: listed only with AVX2/FMA/F16C; the row lengths are checked first.
    unsafe { legacy_rows::<4, false>(w, a, 34, false, true, |b: &[u8]| _mm256_loadu_si256(b.as_ptr().add(2) as *const __m256i)) }
}
/// [`q8_0_rows`] with VNNI (listed by the kernel table only where the CPU has it).
pub(in crate::quant) fn q8_0_rows_vnni(w: &[u8], a: &[BlockQ8]) -> [f32; 4] {
    // SAFETY: listed only when `vnni_available()` (and AVX2/FMA/F16C); lengths checked.
    unsafe { legacy_rows::<4, true>(w, a, 34, false, true, |b: &[u8]| _mm256_loadu_si256(b.as_ptr().add(2) as *const __m256i)) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_0_imp(w: &[u8], a: &[BlockQ8]) -> f32 {
    legacy(w, a, 18, false, |b, ab| {
        let q = _mm256_sub_epi8(nibbles32(b.as_ptr().add(2)), _mm256_set1_epi8(8));
        lanes_ss(q, act(ab))
    })
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_1_imp(w: &[u8], a: &[BlockQ8]) -> f32 {
    legacy(w, a, 20, true, |b, ab| lanes_us(nibbles32(b.as_ptr().add(4)), act(ab)))
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_0_imp(w: &[u8], a: &[BlockQ8]) -> f32 {
    legacy(w, a, 22, false, |b, ab| {
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let q = _mm256_or_si256(nibbles32(b.as_ptr().add(6)), high_bits(qh));
        lanes_ss(_mm256_sub_epi8(q, _mm256_set1_epi8(16)), act(ab))
    })
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_1_imp(w: &[u8], a: &[BlockQ8]) -> f32 {
    legacy(w, a, 24, true, |b, ab| {
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        lanes_us(_mm256_or_si256(nibbles32(b.as_ptr().add(8)), high_bits(qh)), act(ab))
    })
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_0_imp(w: &[u8], a: &[BlockQ8]) -> f32 {
    legacy(w, a, 34, false, |b, ab| lanes_ss(_mm256_loadu_si256(b.as_ptr().add(2) as *const __m256i), act(ab)))
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_k_imp(w: &[u8], a: &[BlockQ8K]) -> f32 {
    assert_eq!(w.len(), a.len() * 144, "weight row and activation row differ in length");
    let (mut acc, mut accm) = (0f32, 0f32);
    let low = _mm256_set1_epi8(15);
    for (b, ab) in w.chunks_exact(144).zip(a) {
        let s = &b[4..16];
        let mut sumv = _mm256_setzero_si256();
        let mut summ = 0i32;
        for c in 0..4 {
            let (sc0, m0) = scale_min(2 * c, s);
            let (sc1, m1) = scale_min(2 * c + 1, s);
            let q = _mm256_loadu_si256(b.as_ptr().add(16 + 32 * c) as *const __m256i);
            let lo = _mm256_and_si256(q, low);
            let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
            let a0 = _mm256_loadu_si256(ab.qs.as_ptr().add(64 * c) as *const __m256i);
            let a1 = _mm256_loadu_si256(ab.qs.as_ptr().add(64 * c + 32) as *const __m256i);
            let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a0), _mm256_set1_epi16(sc0 as i16));
            let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a1), _mm256_set1_epi16(sc1 as i16));
            sumv = _mm256_add_epi32(sumv, _mm256_add_epi32(p0, p1));
            let bs = &ab.bsums[4 * c..4 * c + 4];
            summ += m0 as i32 * (bs[0] as i32 + bs[1] as i32) + m1 as i32 * (bs[2] as i32 + bs[3] as i32);
        }
        let sumi = hsum_i32(sumv);
        acc += (f16_at(b, 0) * ab.d) * sumi as f32;
        accm += (f16_at(b, 2) * ab.d) * summ as f32;
    }
    acc - accm
}

/// ggml's `ggml_vec_dot_q6_K_q8_K` (AVX2) order; see [`crate::quant::vecdot::dot_q6_k`].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6_k_imp(w: &[u8], a: &[BlockQ8K]) -> f32 {
    assert_eq!(w.len(), a.len() * 210, "weight row and activation row differ in length");
    let mut accv = _mm256_setzero_ps();
    for (b, ab) in w.chunks_exact(210).zip(a) {
        let sumv = _mm256_sub_epi32(q6_k_lanes(b, [ab])[0], q6_k_offset(&b[192..208], &ab.bsums));
        let d = ab.d * f16_at(b, 208);
        accv = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumv), accv);
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), accv);
    crate::quant::vecdot::hsum8(lanes)
}

/// The scaled code sums `Σ scale·q·a` of one Q6_K super-block `b` against `N` activation
/// blocks in ggml's eight lanes (lane `l`: elements with `(e mod 32)/4 = l`), before the
/// code offset ([`q6_k_offset`]).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn q6_k_lanes<const N: usize>(b: &[u8], ab: [&BlockQ8K; N]) -> [__m256i; N] {
    let (m4, m2) = (_mm256_set1_epi8(15), _mm256_set1_epi8(3));
    let sc = &b[192..208];
    let mut sumv = [_mm256_setzero_si256(); N];
    for n in 0..2 {
        let q = q6_k_codes32(b.as_ptr(), n, m4, m2);
        for (m, &qm) in q.iter().enumerate() {
            let e = 128 * n + 32 * m;
            let sv = q6_k_scales32(sc, e / 16);
            for t in 0..N {
                let av = _mm256_loadu_si256(ab[t].qs.as_ptr().add(e) as *const __m256i);
                sumv[t] = _mm256_add_epi32(sumv[t], _mm256_madd_epi16(_mm256_maddubs_epi16(qm, av), sv));
            }
        }
    }
    sumv
}

/// The four 32-code vectors (elements `128n + 32m ..`, m = 0..3) of half `n` of the Q6_K
/// super-block at `p`, codes 0..63.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6_k_codes32(p: *const u8, n: usize, m4: __m256i, m2: __m256i) -> [__m256i; 4] {
    let ql0 = _mm256_loadu_si256(p.add(64 * n) as *const __m256i);
    let ql1 = _mm256_loadu_si256(p.add(64 * n + 32) as *const __m256i);
    let qh = _mm256_loadu_si256(p.add(128 + 32 * n) as *const __m256i);
    let hb = |h: __m256i| _mm256_slli_epi16(_mm256_and_si256(h, m2), 4);
    [
        _mm256_or_si256(_mm256_and_si256(ql0, m4), hb(qh)),
        _mm256_or_si256(_mm256_and_si256(ql1, m4), hb(_mm256_srli_epi16(qh, 2))),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), hb(_mm256_srli_epi16(qh, 4))),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4), hb(_mm256_srli_epi16(qh, 6))),
    ]
}

/// ggml's per-lane code offset of a Q6_K super-block: lane `l` =
/// `32·(bsum_{2l}·scale_{2l} + bsum_{2l+1}·scale_{2l+1})`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn q6_k_offset(sc: &[u8], bsums: &[i16; 16]) -> __m256i {
    let scv = _mm256_cvtepi8_epi16(_mm_loadu_si128(sc.as_ptr() as *const __m128i));
    let bs = _mm256_loadu_si256(bsums.as_ptr() as *const __m256i);
    _mm256_slli_epi32(_mm256_madd_epi16(bs, scv), 5)
}

/// Scales `g` (low 128 bits) and `g + 1` (high) of a Q6_K super-block as i16 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6_k_scales32(sc: &[u8], g: usize) -> __m256i {
    _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16(sc[g] as i8 as i16)), _mm_set1_epi16(sc[g + 1] as i8 as i16), 1)
}
