//! AVX2 twins of the 4-bit code lookups of AWQ ([`super::awq`]: a gather down a word column,
//! shared by the eight rows of each word) and GPTQ ([`super::gptq`]: the nibbles of one word):
//! eight codes at a time become eight entries of a group's 16-entry table of weights (built by
//! the scalar code, so both paths give the same bits). Used only where [`available`] says so.

use std::arch::x86_64::*;

/// Whether these kernels run here: AVX2 on the CPU and SIMD not turned off
/// (`FINETUNE_SIMD=scalar`).
pub fn available() -> bool {
    crate::quant::simd_enabled() && crate::quant::x86::available()
}

/// Entries `idx` (each 0..16) of `lut`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn lookup(lo: __m256, hi: __m256, idx: __m256i) -> __m256 {
    let a = _mm256_permutevar8x32_ps(lo, idx);
    let b = _mm256_permutevar8x32_ps(hi, idx);
    let upper = _mm256_cmpgt_epi32(idx, _mm256_set1_epi32(7));
    _mm256_blendv_ps(a, b, _mm256_castsi256_ps(upper))
}

/// AWQ, eight rows sharing each word: for `kk < n`, word `w = word((k0 + kk)·stride + col)`
/// and each `i < rows`, `out[i·ld + kk] = luts[i][(w >> shifts[i]) & 15]`. Returns the columns
/// done (a multiple of 8).
///
/// # Safety
/// AVX2 must be available; `out` must hold `(rows − 1)·ld + n` values.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
pub unsafe fn awq_rows(
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
    let n8 = n / 8 * 8;
    if n8 == 0 || rows == 0 || out.len() < (rows - 1) * ld + n {
        return 0;
    }
    let last = (k0 + n8 - 1) * stride + col;
    if 4 * (last + 1) > words.len() || last > i32::MAX as usize / 4 {
        return 0;
    }
    let s = stride as i32;
    let steps = _mm256_setr_epi32(0, s, 2 * s, 3 * s, 4 * s, 5 * s, 6 * s, 7 * s);
    let mask = _mm256_set1_epi32(15);
    let base = words.as_ptr() as *const i32;
    let mut i = 0;
    while i < n8 {
        let first = ((k0 + i) * stride + col) as i32;
        let w = _mm256_i32gather_epi32::<4>(base, _mm256_add_epi32(_mm256_set1_epi32(first), steps));
        for r in 0..rows {
            let q = _mm256_and_si256(_mm256_srl_epi32(w, _mm_cvtsi32_si128(shifts[r] as i32)), mask);
            let (lo, hi) = (_mm256_loadu_ps(luts[r].as_ptr()), _mm256_loadu_ps(luts[r].as_ptr().add(8)));
            _mm256_storeu_ps(out.as_mut_ptr().add(r * ld + i), lookup(lo, hi, q));
        }
        i += 8;
    }
    n8
}

/// GPTQ 4-bit: word `j` (`j < out.len()/8`) holds codes `8j .. 8j + 8` in its nibbles, low
/// first: `out[8j + m] = lut[(word(j) >> 4m) & 15]`, `word(j)` being the little-endian word
/// `(j0 + j)·stride + col` of `words`. Returns the values written (a multiple of 8).
///
/// # Safety
/// AVX2 must be available ([`available`]).
#[target_feature(enable = "avx2")]
pub unsafe fn gptq4_column(words: &[u8], stride: usize, col: usize, j0: usize, lut: &[f32; 16], out: &mut [f32]) -> usize {
    let nw = out.len() / 8;
    if nw == 0 || 4 * ((j0 + nw - 1) * stride + col + 1) > words.len() {
        return 0;
    }
    let (lo, hi) = (_mm256_loadu_ps(lut.as_ptr()), _mm256_loadu_ps(lut.as_ptr().add(8)));
    let shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    let mask = _mm256_set1_epi32(15);
    for j in 0..nw {
        let p = words.as_ptr().add(4 * ((j0 + j) * stride + col)) as *const i32;
        let w = _mm256_set1_epi32(i32::from_le(p.read_unaligned()));
        let q = _mm256_and_si256(_mm256_srlv_epi32(w, shifts), mask);
        _mm256_storeu_ps(out.as_mut_ptr().add(8 * j), lookup(lo, hi, q));
    }
    8 * nw
}

#[cfg(test)]
mod tests {
    use crate::safetensors::{Dtype, SafetensorsFile, SafetensorsWriter};
    use crate::util::rng::SplitMix64;
    use crate::weights::{awq::AwqMatrix, gptq::GptqMatrix, QuantWeight};

    /// Random words; scales of mixed magnitude (some rounding to f16 matters), in `dtype`.
    fn file(k: usize, n: usize, g: usize, dtype: Dtype, rng: &mut SplitMix64) -> SafetensorsFile {
        let mut words = |len: usize| (0..len).flat_map(|_| (rng.next_u64() as u32).to_le_bytes()).collect::<Vec<u8>>();
        let (gq, gz, aq, az) = (words(k / 8 * n), words(k.div_ceil(g) * n / 8), words(k * n / 8), words(k / g * n / 8));
        let scales: Vec<f32> =
            (0..k.div_ceil(g) * n).map(|i| 0.013 * (1.0 + (i % 7) as f32) * if i % 3 == 0 { -1.0 } else { 1.0 }).collect();
        let mut w = SafetensorsWriter::new();
        w.add("g.qweight", Dtype::I32, &[k / 8, n], gq).unwrap();
        w.add("g.qzeros", Dtype::I32, &[k.div_ceil(g), n / 8], gz).unwrap();
        w.add_f32("g.scales", dtype, &[k.div_ceil(g), n], &scales).unwrap();
        w.add("a.qweight", Dtype::I32, &[k, n / 8], aq).unwrap();
        w.add("a.qzeros", Dtype::I32, &[k / g, n / 8], az).unwrap();
        w.add_f32("a.scales", dtype, &[k / g, n], &scales[..k / g * n]).unwrap();
        SafetensorsFile::from_bytes("simd.safetensors", w.to_bytes()).unwrap()
    }

    fn same(what: &str, a: &[f32], b: &[f32]) {
        let bad = a.iter().zip(b).position(|(x, y)| x.to_bits() != y.to_bits());
        assert!(bad.is_none(), "{what}: value {} differs: {} vs {}", bad.unwrap_or(0), a[bad.unwrap_or(0)], b[bad.unwrap_or(0)]);
    }

    /// Both paths over whole rows, odd row ranges and odd column ranges (starting and ending
    /// inside words and groups).
    fn compare(what: &str, simd: &dyn QuantWeight, scalar: &dyn QuantWeight) {
        let (k, n) = (simd.n_in(), simd.n_out());
        for (r0, r1) in [(0, n), (3, 21), (5, 6), (n - 9, n)] {
            let (mut a, mut b) = (vec![0f32; (r1 - r0) * k], vec![f32::NAN; (r1 - r0) * k]);
            simd.decode_rows(r0, r1, &mut a);
            scalar.decode_rows(r0, r1, &mut b);
            same(&format!("{what} rows {r0}..{r1}"), &a, &b);
        }
        for (r0, r1, c0, c1) in [(0, 32, 0, 64), (3, 20, 35, 101), (8, 16, 32, k), (5, 6, 1, 9)] {
            let (mut a, mut b) = (vec![0f32; (r1 - r0) * (c1 - c0)], vec![f32::NAN; (r1 - r0) * (c1 - c0)]);
            simd.decode_block(r0, r1, c0, c1, &mut a);
            scalar.decode_block(r0, r1, c0, c1, &mut b);
            same(&format!("{what} rows {r0}..{r1} cols {c0}..{c1}"), &a, &b);
        }
        for r in [0, 1, 7, 13, n - 1] {
            for (c0, c1) in [(0, k), (0, 32), (32, 96), (3, 45), (1, k - 1), (8, 8), (k - 13, k)] {
                let (mut a, mut b) = (vec![0f32; c1 - c0], vec![f32::NAN; c1 - c0]);
                simd.decode_cols(r, c0, c1, &mut a);
                scalar.decode_cols(r, c0, c1, &mut b);
                same(&format!("{what} row {r} cols {c0}..{c1}"), &a, &b);
            }
        }
    }

    #[test]
    fn avx2_awq_and_gptq_decode_equal_the_scalar_reference() {
        if !super::available() {
            eprintln!("AVX2 not available (or FINETUNE_SIMD=scalar): nothing to compare");
            return;
        }
        let mut rng = SplitMix64(5);
        // The kernels take the whole 8-aligned part (so the comparisons below exercise them).
        let words: Vec<u8> = (0..64 * 4).map(|i| i as u8).collect();
        let (lut, mut out) = ([1f32; 16], [0f32; 45]);
        // SAFETY: available() was checked above; `out` holds (2 − 1)·24 + 21 values.
        let done = unsafe {
            let shifts = [0, 4, 0, 0, 0, 0, 0, 0];
            [
                super::awq_rows(&words, 3, 1, 0, 21, &shifts, &[lut; 8], 2, &mut out, 24),
                super::gptq4_column(&words, 2, 1, 0, &lut, &mut out),
            ]
        };
        assert_eq!(done, [16, 40]);
        for (k, n, g, dtype) in [(256, 64, 32, Dtype::F16), (384, 48, 128, Dtype::BF16), (160, 40, 32, Dtype::F32)] {
            let st = file(k, n, g, dtype, &mut rng);
            let get = |name: &str| st.get(name);
            for (sym, ver) in [(false, "gptq"), (true, "gptq_v2")] {
                let q = serde_json::json!({"bits": 4, "group_size": g, "sym": sym, "checkpoint_format": ver, "version": "gemm"});
                let a = AwqMatrix::open(&get, "a", &q, k, n).unwrap();
                let (a_simd, a_scalar) = (AwqMatrix::open(&get, "a", &q, k, n).unwrap().with_simd(true), a.with_simd(false));
                compare(&format!("AWQ {k}x{n} g{g} {dtype}"), &a_simd, &a_scalar);
                let gs = GptqMatrix::open(&get, "g", &q, k, n).unwrap().with_simd(true);
                let gr = GptqMatrix::open(&get, "g", &q, k, n).unwrap().with_simd(false);
                compare(&format!("GPTQ {ver} {k}x{n} g{g} {dtype}"), &gs, &gr);
            }
        }
    }
}
