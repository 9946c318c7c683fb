//! llama.cpp-numerics attention products, in the order its CPU backend sums them (llamafile's
//! tinyBLAS on f16 operands with 16-wide vectors): element `i` of a dot product goes to lane
//! `i mod 16`, each lane a chain of fused multiply-adds in index order, and the 16 lanes are
//! added as a tree (`_mm512_reduce_add_ps`: lanes `i` and `i+8`, then `i` and `i+4`, then
//! `(0+2) + (1+3)`). For `P·V` the index is the key position. Every token row is computed the
//! same way whatever the batch, so decoding with the cache equals the full-sequence forward.
//!
//! Each product has a scalar reference ([`scores_scalar`], [`weighted_sum`]) and an
//! AVX2/FMA kernel ([`scores`], [`VCols::weighted_sum`] on the transposed values) holding the 16 lanes in two `__m256`, with the same chains and the same tree,
//! so the two agree bit for bit (checked by the unit tests below). On AArch64 the NEON kernels
//! (`mod neon`) hold the 16 lanes in four `float32x4_t` with the same chains and tree.

/// The tree reduction of 16 lanes.
#[inline(always)]
pub(super) fn reduce16(a: &[f32; 16]) -> f32 {
    let t3: [f32; 8] = std::array::from_fn(|i| a[i + 8] + a[i]);
    let t6: [f32; 4] = std::array::from_fn(|i| t3[i + 4] + t3[i]);
    (t6[0] + t6[2]) + (t6[1] + t6[3])
}

#[inline(always)]
fn dot16(q: &[f32], k: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    for (qc, kc) in q.chunks(16).zip(k.chunks(16)) {
        for l in 0..qc.len() {
            acc[l] = qc[l].mul_add(kc[l], acc[l]);
        }
    }
    reduce16(&acc)
}

/// `out[j − lo] = q·K[j]` for `j = lo..lo + out.len()`, `K[j] = k[j·kw..][..q.len()]`.
pub fn scores(q: &[f32], k: &[f32], kw: usize, lo: usize, out: &mut [f32]) {
    assert!(out.is_empty() || k.len() >= (lo + out.len() - 1) * kw + q.len());
    #[cfg(target_arch = "x86_64")]
    if crate::quant::simd_enabled() && q.len() % 16 == 0 {
        // SAFETY: AVX2/FMA checked by simd_enabled(); slices bounded by the assert.
        return unsafe { avx2::scores(q, k, kw, lo, out) };
    }
    #[cfg(target_arch = "aarch64")]
    if crate::quant::simd_enabled() && q.len() % 16 == 0 {
        return neon::scores(q, k, kw, lo, out);
    }
    scores_scalar(q, k, kw, lo, out)
}

/// The scalar reference of [`scores`] (same preconditions).
pub fn scores_scalar(q: &[f32], k: &[f32], kw: usize, lo: usize, out: &mut [f32]) {
    for (jj, o) in out.iter_mut().enumerate() {
        *o = dot16(q, &k[(lo + jj) * kw..(lo + jj) * kw + q.len()]);
    }
}

/// [`scores`] for the `group` query heads of one kv head at once (each key row loaded once for
/// all of them): `q` holds the heads' `d`-wide vectors one after another, `out` their score
/// rows of `out.len() / group` keys one after another. Returns `false` (and computes nothing)
/// where no grouped kernel serves (then call [`scores`] per head); the bits are the same.
pub fn scores_group(q: &[f32], d: usize, group: usize, k: &[f32], kw: usize, lo: usize, out: &mut [f32]) -> bool {
    let n = out.len() / group.max(1);
    if !(2..=4).contains(&group)
        || d % 16 != 0
        || q.len() != group * d
        || out.len() != group * n
        || !crate::quant::simd_enabled()
        || !cfg!(any(target_arch = "x86_64", target_arch = "aarch64"))
    {
        return false;
    }
    assert!(n == 0 || k.len() >= (lo + n - 1) * kw + d);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX2/FMA checked by simd_enabled(); shapes checked above, K rows by the assert.
    unsafe {
        match group {
            2 => avx2_group::scores_group::<2>(q, d, k, kw, lo, out),
            3 => avx2_group::scores_group::<3>(q, d, k, kw, lo, out),
            _ => avx2_group::scores_group::<4>(q, d, k, kw, lo, out),
        }
        true
    }
    #[cfg(target_arch = "aarch64")]
    {
        match group {
            2 => neon::scores_group::<2>(q, d, k, kw, lo, out),
            3 => neon::scores_group::<3>(q, d, k, kw, lo, out),
            _ => neon::scores_group::<4>(q, d, k, kw, lo, out),
        }
        true
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    false
}

/// `o = Σ_j p[j − lo]·V[j]` over `j = lo..lo + p.len()`, `V[j] = v[j·vw..][..o.len()]`,
/// lane `j mod 16`; `acc` is scratch. The scalar reference of [`VCols::weighted_sum`].
pub fn weighted_sum(p: &[f32], v: &[f32], vw: usize, lo: usize, o: &mut [f32], acc: &mut Vec<f32>) {
    assert!(p.is_empty() || v.len() >= (lo + p.len() - 1) * vw + o.len());
    let n = o.len();
    acc.clear();
    acc.resize(16 * n, 0.0);
    for (jj, &pj) in p.iter().enumerate() {
        let l = (lo + jj) % 16;
        let vr = &v[(lo + jj) * vw..(lo + jj) * vw + n];
        acc[l * n..(l + 1) * n].iter_mut().zip(vr).for_each(|(a, &b)| *a = pj.mul_add(b, *a));
    }
    for (d, od) in o.iter_mut().enumerate() {
        let lanes: [f32; 16] = std::array::from_fn(|l| acc[l * n + d]);
        *od = reduce16(&lanes);
    }
}

/// The value cache of every kv head transposed once per attention call (`Vᵀ`, rows padded with
/// zeros to a multiple of 16 positions), so that [`weighted_sum`] becomes a dot product of
/// contiguous rows, as tinyBLAS computes it on llama.cpp's transposed V cache.
pub struct VCols {
    #[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))] // read only by the SIMD kernels
    data: Vec<f32>,
    /// Row length: key positions rounded up to 16.
    lt: usize,
    v_dim: usize,
}

impl VCols {
    /// `Vᵀ` of positions `0..l` of `v` (`[l, n_head_kv·v_dim]`, row stride `vw`), or `None` where
    /// the SIMD kernel is unavailable (the caller then uses [`weighted_sum`]).
    pub fn new(v: &[f32], vw: usize, n_head_kv: usize, v_dim: usize, l: usize) -> Option<Self> {
        if !(cfg!(target_arch = "x86_64") || cfg!(target_arch = "aarch64")) || !crate::quant::simd_enabled() {
            return None;
        }
        let lt = l.div_ceil(16) * 16;
        let cols = n_head_kv * v_dim;
        assert!(cols <= vw && (l == 0 || v.len() >= (l - 1) * vw + cols));
        let mut data = vec![0f32; cols * lt];
        for j0 in (0..l).step_by(16) {
            for c in 0..cols {
                for j in j0..(j0 + 16).min(l) {
                    data[c * lt + j] = v[j * vw + c];
                }
            }
        }
        Some(VCols { data, lt, v_dim })
    }

    /// [`weighted_sum`] for kv head `kvh`, bit for bit (`lo + p.len()` within the `l` positions).
    pub fn weighted_sum(&self, kvh: usize, p: &[f32], lo: usize, o: &mut [f32]) {
        assert!(o.len() <= self.v_dim && lo + p.len() <= self.lt);
        #[cfg(target_arch = "x86_64")]
        {
            let vt = &self.data[kvh * self.v_dim * self.lt..(kvh + 1) * self.v_dim * self.lt];
            // SAFETY: AVX2/FMA checked by simd_enabled() in new(); vt holds v_dim ≥ o.len() rows of lt.
            unsafe { avx2::weighted_sum_t(p, vt, self.lt, lo, o) }
        }
        #[cfg(target_arch = "aarch64")]
        {
            let vt = &self.data[kvh * self.v_dim * self.lt..(kvh + 1) * self.v_dim * self.lt];
            neon::weighted_sum_t(p, vt, self.lt, lo, o)
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            let _ = (kvh, p, lo, o);
            unreachable!("VCols::new returns None here")
        }
    }

    /// [`VCols::weighted_sum`] for the `group` query heads of kv head `kvh` at once (each `Vᵀ`
    /// block loaded once for all): `p` holds their probability rows (`p.len() / group` keys
    /// each) one after another, `o` their `v_dim`-wide outputs one after another. Returns
    /// `false` (and computes nothing) where no grouped kernel serves; the bits are the same.
    pub fn weighted_sum_group(&self, kvh: usize, group: usize, p: &[f32], lo: usize, o: &mut [f32]) -> bool {
        let len = p.len() / group.max(1);
        if !(2..=4).contains(&group) || p.len() != group * len || o.len() != group * self.v_dim {
            return false;
        }
        assert!(lo + len <= self.lt);
        #[cfg(target_arch = "x86_64")]
        {
            let vt = &self.data[kvh * self.v_dim * self.lt..(kvh + 1) * self.v_dim * self.lt];
            // SAFETY: AVX2/FMA checked by simd_enabled() in new(); shapes checked above.
            unsafe {
                match group {
                    2 => avx2_group::weighted_sum_group::<2>(p, vt, self.lt, lo, o),
                    3 => avx2_group::weighted_sum_group::<3>(p, vt, self.lt, lo, o),
                    _ => avx2_group::weighted_sum_group::<4>(p, vt, self.lt, lo, o),
                }
            }
            true
        }
        #[cfg(target_arch = "aarch64")]
        {
            let vt = &self.data[kvh * self.v_dim * self.lt..(kvh + 1) * self.v_dim * self.lt];
            match group {
                2 => neon::weighted_sum_group::<2>(p, vt, self.lt, lo, o),
                3 => neon::weighted_sum_group::<3>(p, vt, self.lt, lo, o),
                _ => neon::weighted_sum_group::<4>(p, vt, self.lt, lo, o),
            }
            true
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            let _ = (kvh, o);
            false
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// [`super::reduce16`] of the lanes `lo` (0..8) and `hi` (8..16): the same additions.
    #[inline(always)]
    pub(super) unsafe fn reduce16(lo: __m256, hi: __m256) -> f32 {
        let t3 = _mm256_add_ps(hi, lo); // a[i+8] + a[i]
        let t6 = _mm_add_ps(_mm256_extractf128_ps::<1>(t3), _mm256_castps256_ps128(t3)); // t3[i+4] + t3[i]
        let s = _mm_add_ps(t6, _mm_movehl_ps(t6, t6)); // t6[0]+t6[2], t6[1]+t6[3]
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
    }

    /// Keys per pass of [`scores`]: 2·KB independent FMA chains.
    const KB: usize = 4;

    /// [`super::scores`] for `q.len()` a multiple of 16.
    ///
    /// # Safety
    /// AVX2 and FMA available; `k` holds rows `lo..lo + out.len()` of width `q.len()` at stride `kw`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn scores(q: &[f32], k: &[f32], kw: usize, lo: usize, out: &mut [f32]) {
        let d = q.len();
        debug_assert!(d % 16 == 0);
        let qp = q.as_ptr();
        let n = out.len();
        let mut jj = 0;
        while jj + KB <= n {
            let kp: [*const f32; KB] = std::array::from_fn(|r| k.as_ptr().add((lo + jj + r) * kw));
            let mut a = [[_mm256_setzero_ps(); 2]; KB];
            for c in (0..d).step_by(16) {
                let (q0, q1) = (_mm256_loadu_ps(qp.add(c)), _mm256_loadu_ps(qp.add(c + 8)));
                for r in 0..KB {
                    a[r][0] = _mm256_fmadd_ps(q0, _mm256_loadu_ps(kp[r].add(c)), a[r][0]);
                    a[r][1] = _mm256_fmadd_ps(q1, _mm256_loadu_ps(kp[r].add(c + 8)), a[r][1]);
                }
            }
            for r in 0..KB {
                out[jj + r] = reduce16(a[r][0], a[r][1]);
            }
            jj += KB;
        }
        while jj < n {
            let kp = k.as_ptr().add((lo + jj) * kw);
            let mut a = [_mm256_setzero_ps(); 2];
            for c in (0..d).step_by(16) {
                a[0] = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(c)), _mm256_loadu_ps(kp.add(c)), a[0]);
                a[1] = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(c + 8)), _mm256_loadu_ps(kp.add(c + 8)), a[1]);
            }
            out[jj] = reduce16(a[0], a[1]);
            jj += 1;
        }
    }

    /// A partial block of key positions: `p` zero-padded and the mask of the lanes in range.
    pub(super) struct Edge {
        pub(super) base: usize,
        pub(super) p: [__m256; 2],
        pub(super) m: [__m256; 2],
    }

    /// The block of key positions `base..base + 16` of `p` (which starts at position `lo`).
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn edge(p: &[f32], lo: usize, base: usize) -> Edge {
        let end = lo + p.len();
        let mut buf = [0f32; 16];
        let mut m = [0f32; 16];
        for l in 0..16 {
            if (lo..end).contains(&(base + l)) {
                buf[l] = p[base + l - lo];
                m[l] = f32::from_bits(!0);
            }
        }
        // SAFETY: in-bounds loads of the two 16-float arrays.
        unsafe {
            let ld = |a: &[f32; 16], i: usize| _mm256_loadu_ps(a.as_ptr().add(i));
            Edge { base, p: [ld(&buf, 0), ld(&buf, 8)], m: [ld(&m, 0), ld(&m, 8)] }
        }
    }

    /// [`super::VCols::weighted_sum`]: 4 outputs at a time, each a dot product of `p` with a
    /// row of `Vᵀ` over 16-aligned blocks of key positions (lane `j mod 16`); in a partial first
    /// or last block the lanes outside `lo..lo + p.len()` keep their accumulator (a blend).
    ///
    /// # Safety
    /// AVX2 and FMA available; `vt` holds `o.len()` rows of `lt ≥ lo + p.len()` rounded up to 16.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weighted_sum_t(p: &[f32], vt: &[f32], lt: usize, lo: usize, o: &mut [f32]) {
        let n = o.len();
        let end = lo + p.len();
        debug_assert!(lt % 16 == 0 && end <= lt && vt.len() >= n * lt);
        let edge = |base: usize| edge(p, lo, base);
        // Blocks: an optional partial head, full blocks full0..full1, an optional partial tail.
        let b0 = lo / 16 * 16;
        let (head, full0) = if lo < end && (lo != b0 || b0 + 16 > end) { (Some(edge(b0)), b0 + 16) } else { (None, b0) };
        let full1 = (end / 16 * 16).max(full0);
        let tail = if end > full1 { Some(edge(full1)) } else { None };
        let span = Span { p: p.as_ptr(), lo, full0, full1, head: head.as_ref(), tail: tail.as_ref() };
        let vp = vt.as_ptr();
        let mut d = 0;
        while d + 4 <= n {
            rows::<4>(&span, vp.add(d * lt), lt, &mut o[d..d + 4]);
            d += 4;
        }
        while d < n {
            rows::<1>(&span, vp.add(d * lt), lt, &mut o[d..d + 1]);
            d += 1;
        }
    }

    /// The key blocks of one [`weighted_sum_t`] call; `p` points at key position `lo`.
    struct Span<'a> {
        p: *const f32,
        lo: usize,
        full0: usize,
        full1: usize,
        head: Option<&'a Edge>,
        tail: Option<&'a Edge>,
    }

    /// One partial block into the accumulators of [`rows`]: lanes out of range keep their value.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn masked<const R: usize>(a: &mut [[__m256; 2]; R], e: &Edge, x: *const f32, lt: usize) {
        for (r, ar) in a.iter_mut().enumerate() {
            let xr = x.add(r * lt + e.base);
            let n0 = _mm256_fmadd_ps(e.p[0], _mm256_loadu_ps(xr), ar[0]);
            let n1 = _mm256_fmadd_ps(e.p[1], _mm256_loadu_ps(xr.add(8)), ar[1]);
            *ar = [_mm256_blendv_ps(ar[0], n0, e.m[0]), _mm256_blendv_ps(ar[1], n1, e.m[1])];
        }
    }

    /// `R` outputs of [`weighted_sum_t`]: rows `x`, `x + lt`, … of `Vᵀ` against `p`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows<const R: usize>(s: &Span, x: *const f32, lt: usize, o: &mut [f32]) {
        let mut a = [[_mm256_setzero_ps(); 2]; R];
        if let Some(e) = s.head {
            masked(&mut a, e, x, lt);
        }
        let mut base = s.full0;
        while base < s.full1 {
            let pb = s.p.add(base - s.lo);
            let (p0, p1) = (_mm256_loadu_ps(pb), _mm256_loadu_ps(pb.add(8)));
            for (r, ar) in a.iter_mut().enumerate() {
                let xr = x.add(r * lt + base);
                ar[0] = _mm256_fmadd_ps(p0, _mm256_loadu_ps(xr), ar[0]);
                ar[1] = _mm256_fmadd_ps(p1, _mm256_loadu_ps(xr.add(8)), ar[1]);
            }
            base += 16;
        }
        if let Some(e) = s.tail {
            masked(&mut a, e, x, lt);
        }
        for (od, ar) in o.iter_mut().zip(&a) {
            *od = reduce16(ar[0], ar[1]);
        }
    }
}

/// The AVX2 kernels of [`avx2`] on NEON: each `__m256` pair (16 lanes) is four `float32x4_t`,
/// `fmadd` is `fmla`, a blend is `bsl`; the same chains and the same [`reduce16`] tree.
#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    type V16 = [float32x4_t; 4];

    /// [`super::reduce16`] of the lanes in `a` (lanes 4q..4q+4 in `a[q]`): the same additions.
    #[inline(always)]
    unsafe fn reduce16(a: &V16) -> f32 {
        let t3 = [vaddq_f32(a[2], a[0]), vaddq_f32(a[3], a[1])]; // a[i+8] + a[i]
        let t6 = vaddq_f32(t3[1], t3[0]); // t3[i+4] + t3[i]
        let (l0, l1, l2, l3) = (vgetq_lane_f32(t6, 0), vgetq_lane_f32(t6, 1), vgetq_lane_f32(t6, 2), vgetq_lane_f32(t6, 3));
        (l0 + l2) + (l1 + l3)
    }

    #[inline(always)]
    unsafe fn load16(p: *const f32) -> V16 {
        std::array::from_fn(|q| vld1q_f32(p.add(4 * q)))
    }

    #[inline(always)]
    unsafe fn fma16(acc: &mut V16, x: &V16, y: &V16) {
        for q in 0..4 {
            acc[q] = vfmaq_f32(acc[q], x[q], y[q]);
        }
    }

    const KB: usize = 4;

    /// [`super::scores`] for `q.len()` a multiple of 16 (the caller's assert bounds `k`).
    pub(super) fn scores(q: &[f32], k: &[f32], kw: usize, lo: usize, out: &mut [f32]) {
        let d = q.len();
        assert!(d % 16 == 0 && (out.is_empty() || k.len() >= (lo + out.len() - 1) * kw + d));
        let n = out.len();
        // SAFETY: NEON is baseline on AArch64; key rows lo..lo + n of width d are in k (asserted).
        unsafe {
            let qp = q.as_ptr();
            let zero = [vdupq_n_f32(0.0); 4];
            let mut jj = 0;
            while jj + KB <= n {
                let kp: [*const f32; KB] = std::array::from_fn(|r| k.as_ptr().add((lo + jj + r) * kw));
                let mut a = [zero; KB];
                for c in (0..d).step_by(16) {
                    let qv = load16(qp.add(c));
                    for r in 0..KB {
                        fma16(&mut a[r], &qv, &load16(kp[r].add(c)));
                    }
                }
                for r in 0..KB {
                    out[jj + r] = reduce16(&a[r]);
                }
                jj += KB;
            }
            while jj < n {
                let kp = k.as_ptr().add((lo + jj) * kw);
                let mut a = zero;
                for c in (0..d).step_by(16) {
                    fma16(&mut a, &load16(qp.add(c)), &load16(kp.add(c)));
                }
                out[jj] = reduce16(&a);
                jj += 1;
            }
        }
    }

    /// A partial block of key positions: `p` zero-padded and the mask of the lanes in range.
    struct Edge {
        base: usize,
        p: V16,
        m: [uint32x4_t; 4],
    }

    fn edge(p: &[f32], lo: usize, base: usize) -> Edge {
        let end = lo + p.len();
        let mut buf = [0f32; 16];
        let mut m = [0u32; 16];
        for l in 0..16 {
            if (lo..end).contains(&(base + l)) {
                buf[l] = p[base + l - lo];
                m[l] = !0;
            }
        }
        // SAFETY: in-bounds loads of the two 16-element arrays.
        unsafe { Edge { base, p: load16(buf.as_ptr()), m: std::array::from_fn(|q| vld1q_u32(m.as_ptr().add(4 * q))) } }
    }

    /// [`super::VCols::weighted_sum`] (the AVX2 `weighted_sum_t`'s blocks and chains).
    pub(super) fn weighted_sum_t(p: &[f32], vt: &[f32], lt: usize, lo: usize, o: &mut [f32]) {
        let n = o.len();
        let end = lo + p.len();
        assert!(lt % 16 == 0 && end <= lt && vt.len() >= n * lt);
        let b0 = lo / 16 * 16;
        let (head, full0) = if lo < end && (lo != b0 || b0 + 16 > end) { (Some(edge(p, lo, b0)), b0 + 16) } else { (None, b0) };
        let full1 = (end / 16 * 16).max(full0);
        let tail = if end > full1 { Some(edge(p, lo, full1)) } else { None };
        let vp = vt.as_ptr();
        for (d, od) in o.iter_mut().enumerate() {
            // SAFETY: NEON is baseline; row d of vt holds lt ≥ every block end (asserted).
            unsafe {
                let x = vp.add(d * lt);
                let mut a = [vdupq_n_f32(0.0); 4];
                let masked = |a: &mut V16, e: &Edge| {
                    let xv = load16(x.add(e.base));
                    for q in 0..4 {
                        a[q] = vbslq_f32(e.m[q], vfmaq_f32(a[q], e.p[q], xv[q]), a[q]);
                    }
                };
                if let Some(e) = &head {
                    masked(&mut a, e);
                }
                let mut base = full0;
                while base < full1 {
                    fma16(&mut a, &load16(p.as_ptr().add(base - lo)), &load16(x.add(base)));
                    base += 16;
                }
                if let Some(e) = &tail {
                    masked(&mut a, e);
                }
                *od = reduce16(&a);
            }
        }
    }

    /// [`super::scores_group`] with `G` heads: per key, its 16-float chunks loaded once and
    /// multiplied into each head's accumulators (the chains of [`scores`]).
    pub(super) fn scores_group<const G: usize>(q: &[f32], d: usize, k: &[f32], kw: usize, lo: usize, out: &mut [f32]) {
        let n = out.len() / G;
        assert!(d % 16 == 0 && q.len() >= G * d && (n == 0 || k.len() >= (lo + n - 1) * kw + d));
        // SAFETY: NEON is baseline; q holds G·d floats and k rows lo..lo + n of width d (asserted).
        unsafe {
            let qp = q.as_ptr();
            for jj in 0..n {
                let kp = k.as_ptr().add((lo + jj) * kw);
                let mut a = [[vdupq_n_f32(0.0); 4]; G];
                for c in (0..d).step_by(16) {
                    let kv = load16(kp.add(c));
                    for (g, ag) in a.iter_mut().enumerate() {
                        fma16(ag, &load16(qp.add(g * d + c)), &kv);
                    }
                }
                for (g, ag) in a.iter().enumerate() {
                    out[g * n + jj] = reduce16(ag);
                }
            }
        }
    }

    /// [`super::VCols::weighted_sum_group`] with `G` heads (the blocks, chains and masked
    /// partial blocks of [`weighted_sum_t`], each `Vᵀ` block loaded once for all heads).
    pub(super) fn weighted_sum_group<const G: usize>(p: &[f32], vt: &[f32], lt: usize, lo: usize, o: &mut [f32]) {
        let len = p.len() / G;
        let n = o.len() / G;
        let end = lo + len;
        assert!(lt % 16 == 0 && end <= lt && vt.len() >= n * lt);
        let row = |g: usize| &p[g * len..(g + 1) * len];
        let b0 = lo / 16 * 16;
        let has_head = lo < end && (lo != b0 || b0 + 16 > end);
        let full0 = if has_head { b0 + 16 } else { b0 };
        let full1 = (end / 16 * 16).max(full0);
        let has_tail = end > full1;
        let heads: [Option<Edge>; G] = std::array::from_fn(|g| has_head.then(|| edge(row(g), lo, b0)));
        let tails: [Option<Edge>; G] = std::array::from_fn(|g| has_tail.then(|| edge(row(g), lo, full1)));
        let pp = p.as_ptr();
        for d in 0..n {
            // SAFETY: NEON is baseline; row d of vt holds lt ≥ every block end, each head's
            // probabilities cover base − lo + 16 ≤ len in the full blocks (asserted above).
            unsafe {
                let x = vt.as_ptr().add(d * lt);
                let mut a = [[vdupq_n_f32(0.0); 4]; G];
                let masked = |a: &mut [V16; G], es: &[Option<Edge>; G]| {
                    for (ag, e) in a.iter_mut().zip(es) {
                        let Some(e) = e else { continue };
                        let xv = load16(x.add(e.base));
                        for q in 0..4 {
                            ag[q] = vbslq_f32(e.m[q], vfmaq_f32(ag[q], e.p[q], xv[q]), ag[q]);
                        }
                    }
                };
                masked(&mut a, &heads);
                let mut base = full0;
                while base < full1 {
                    let xv = load16(x.add(base));
                    for (g, ag) in a.iter_mut().enumerate() {
                        fma16(ag, &load16(pp.add(g * len + base - lo)), &xv);
                    }
                    base += 16;
                }
                masked(&mut a, &tails);
                for (g, ag) in a.iter().enumerate() {
                    o[g * n + d] = reduce16(ag);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2_group {
    use std::arch::x86_64::*;

    use super::avx2::{edge, reduce16, Edge};

    /// [`super::scores_group`] with `G` heads: per key, its 16-float chunks loaded once and
    /// multiplied into each head's two accumulators (the same chains as [`super::scores`]).
    ///
    /// # Safety
    /// AVX2/FMA available; `q` holds `G·d` floats (`d` a multiple of 16), `out` `G·n`, and `k`
    /// rows `lo..lo + n` of width `d` at stride `kw`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn scores_group<const G: usize>(q: &[f32], d: usize, k: &[f32], kw: usize, lo: usize, out: &mut [f32]) {
        let n = out.len() / G;
        let qp = q.as_ptr();
        for jj in 0..n {
            let kp = k.as_ptr().add((lo + jj) * kw);
            let mut a = [[_mm256_setzero_ps(); 2]; G];
            for c in (0..d).step_by(16) {
                let (k0, k1) = (_mm256_loadu_ps(kp.add(c)), _mm256_loadu_ps(kp.add(c + 8)));
                for (g, ag) in a.iter_mut().enumerate() {
                    let qg = qp.add(g * d + c);
                    ag[0] = _mm256_fmadd_ps(_mm256_loadu_ps(qg), k0, ag[0]);
                    ag[1] = _mm256_fmadd_ps(_mm256_loadu_ps(qg.add(8)), k1, ag[1]);
                }
            }
            for (g, ag) in a.iter().enumerate() {
                out[g * n + jj] = reduce16(ag[0], ag[1]);
            }
        }
    }

    /// [`super::VCols::weighted_sum_group`] with `G` heads: per output column `d`, each block
    /// of the `Vᵀ` row loaded once and multiplied with each head's probabilities (the chains
    /// and the masked partial blocks of [`super::VCols::weighted_sum`]).
    ///
    /// # Safety
    /// AVX2/FMA available; `p` holds `G` rows of `len` with `lo + len ≤ lt`, `vt` holds
    /// `o.len() / G` rows of `lt` (a multiple of 16).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weighted_sum_group<const G: usize>(p: &[f32], vt: &[f32], lt: usize, lo: usize, o: &mut [f32]) {
        let len = p.len() / G;
        let n = o.len() / G;
        let end = lo + len;
        let row = |g: usize| &p[g * len..(g + 1) * len];
        let b0 = lo / 16 * 16;
        let has_head = lo < end && (lo != b0 || b0 + 16 > end);
        let full0 = if has_head { b0 + 16 } else { b0 };
        let full1 = (end / 16 * 16).max(full0);
        let has_tail = end > full1;
        let heads: [Option<Edge>; G] = std::array::from_fn(|g| has_head.then(|| edge(row(g), lo, b0)));
        let tails: [Option<Edge>; G] = std::array::from_fn(|g| has_tail.then(|| edge(row(g), lo, full1)));
        let pp = p.as_ptr();
        for d in 0..n {
            let x = vt.as_ptr().add(d * lt);
            let mut a = [[_mm256_setzero_ps(); 2]; G];
            let masked = |a: &mut [[__m256; 2]; G], es: &[Option<Edge>; G]| {
                for (ag, e) in a.iter_mut().zip(es) {
                    let Some(e) = e else { continue };
                    let xr = x.add(e.base);
                    let n0 = _mm256_fmadd_ps(e.p[0], _mm256_loadu_ps(xr), ag[0]);
                    let n1 = _mm256_fmadd_ps(e.p[1], _mm256_loadu_ps(xr.add(8)), ag[1]);
                    *ag = [_mm256_blendv_ps(ag[0], n0, e.m[0]), _mm256_blendv_ps(ag[1], n1, e.m[1])];
                }
            };
            masked(&mut a, &heads);
            let mut base = full0;
            while base < full1 {
                let (x0, x1) = (_mm256_loadu_ps(x.add(base)), _mm256_loadu_ps(x.add(base + 8)));
                for (g, ag) in a.iter_mut().enumerate() {
                    let pg = pp.add(g * len + base - lo);
                    ag[0] = _mm256_fmadd_ps(_mm256_loadu_ps(pg), x0, ag[0]);
                    ag[1] = _mm256_fmadd_ps(_mm256_loadu_ps(pg.add(8)), x1, ag[1]);
                }
                base += 16;
            }
            masked(&mut a, &tails);
            for (g, ag) in a.iter().enumerate() {
                o[g * n + d] = reduce16(ag[0], ag[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand_vec(seed: &mut u64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let u = (*seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                crate::quant::util::f16_round(u * 8.0)
            })
            .collect()
    }

    #[test]
    fn avx2_scores_and_weighted_sum_match_scalar_bit_for_bit() {
        if !crate::quant::simd_enabled() {
            return;
        }
        let mut seed = 7u64;
        for &(d, w) in &[(16usize, 16usize), (64, 128), (256, 256), (256, 512), (10, 30), (8, 24)] {
            let n_ctx = 90;
            let k = rand_vec(&mut seed, n_ctx * w);
            let q = rand_vec(&mut seed, d);
            for &(lo, len) in &[(0usize, 1usize), (0, 5), (3, 17), (16, 16), (5, 70), (17, 9), (31, 2), (0, 90), (33, 57)] {
                let (mut a, mut b) = (vec![0f32; len], vec![0f32; len]);
                scores_scalar(&q, &k, w, lo, &mut a);
                scores(&q, &k, w, lo, &mut b);
                assert_eq!(
                    a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    b.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    "scores d={d} lo={lo} len={len}"
                );
                let p = rand_vec(&mut seed, len);
                let (mut oa, mut ob, mut acc) = (vec![0f32; d], vec![1f32; d], Vec::new());
                weighted_sum(&p, &k, w, lo, &mut oa, &mut acc);
                let cols = VCols::new(&k, w, w / d, d, n_ctx).unwrap();
                cols.weighted_sum(w / d - 1, &p, lo, &mut ob);
                // the last kv head of V: columns (w/d − 1)·d..w
                let mut oc = vec![0f32; d];
                weighted_sum(&p, &k[w - d..], w, lo, &mut oc, &mut acc);
                assert_eq!(
                    oc.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    ob.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    "weighted_sum d={d} lo={lo} len={len}"
                );
                cols.weighted_sum(0, &p, lo, &mut ob);
                if d % 16 == 0 {
                    for group in 2..=4 {
                        // `group` heads sharing K (and V): against the scalar kernels per head.
                        let qs = rand_vec(&mut seed, group * d);
                        let mut g = vec![0f32; group * len];
                        assert!(scores_group(&qs, d, group, &k, w, lo, &mut g));
                        let ps = rand_vec(&mut seed, group * len);
                        let mut og = vec![0f32; group * d];
                        assert!(cols.weighted_sum_group(0, group, &ps, lo, &mut og));
                        for h in 0..group {
                            let mut one = vec![0f32; len];
                            scores_scalar(&qs[h * d..(h + 1) * d], &k, w, lo, &mut one);
                            assert_eq!(
                                one.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                                g[h * len..(h + 1) * len].iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                                "scores_group {group} d={d} lo={lo} len={len}"
                            );
                            let mut o1 = vec![0f32; d];
                            weighted_sum(&ps[h * len..(h + 1) * len], &k, w, lo, &mut o1, &mut acc);
                            assert_eq!(
                                o1.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                                og[h * d..(h + 1) * d].iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                                "weighted_sum_group {group} d={d} lo={lo} len={len}"
                            );
                        }
                    }
                }
                assert_eq!(
                    oa.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    ob.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    "weighted_sum d={d} lo={lo} len={len}"
                );
            }
        }
    }
}
