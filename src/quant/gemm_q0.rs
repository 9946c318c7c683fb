//! A register-tiled GEMM of the symmetric 32-element weight formats (Q4_0, Q5_0, Q8_0) against
//! Q8_0 activations, for batches of activation rows (prompt processing): llama.cpp runs these
//! through llamafile's tinyBLAS (`tinyBLAS_Q0_AVX`); our batched path used to unpack every weight
//! block again for every eight activation rows ([`super::kernels::TypeKernels::vec_dot8`]).
//!
//! A call decodes its weight rows ONCE into a panel (the block's integer codes as bytes, and its
//! scale as f32) in per-thread scratch, then walks tiles of weight rows × activation rows over
//! it. Every output is the bits of the one-row kernel ([`super::vecdot`], llama.cpp's
//! `ggml_vec_dot_<w>_q8_0`): eight i32 lanes per block (lane `l` = the exact integer sum over
//! elements `4l..4l+4`), `acc[l] = fma(d_w·d_a, lane, acc[l])` block by block,
//! [`super::vecdot::hsum8`], then `+ 0.0` (the absent `Σ m·s` term).
//!
//! This file holds the scalar reference and the dispatch (which level's tile kernels run);
//! `quant/x86/gemm_q0.rs` holds the AVX2 and AVX-512-VNNI tiles (`tests/gemm_q0.rs` checks every
//! level against the one-row kernels).

use std::cell::RefCell;

use super::kernels::Isa;
use super::q8::BlockQ8;
use super::types::GgmlType;
use super::util::f16_at;
use super::vecdot::hsum8;

/// Decoded weight rows: `q[(r·bpr + b)·32 + e]` is code `e` of block `b` of row `r` (a signed
/// byte, or that byte + 128 when the level's tiles want unsigned weights); the scales of four
/// rows sit side by side, `d[((r/4)·bpr + b)·4 + r%4]` (the last group padded with zeros).
#[derive(Default)]
pub struct Panel {
    /// The codes, 32 per block.
    pub q: Vec<u8>,
    /// The scales (the block's f16, widened), in groups of four rows.
    pub d: Vec<f32>,
    /// Scratch of the tiles (per activation block; the VNNI tiles' `−128·Σ` lane sums).
    pub c: Vec<[i32; 8]>,
    /// Rows held.
    pub rows: usize,
    /// Blocks per row.
    pub bpr: usize,
}

/// Writes `y[tt·ldy + i]` = dot(panel row `i`, activation row `tt`) for every panel row and
/// `tt < t`; `a` holds `t` rows of `panel.bpr` blocks.
///
/// # Safety
/// `y` is valid for those writes; the CPU has the level's features.
pub type TilesFn = unsafe fn(p: &mut Panel, a: &[BlockQ8], t: usize, y: *mut f32, ldy: usize);

/// One level's GEMM for one weight type.
#[derive(Clone, Copy, Debug)]
pub struct GemmQ0 {
    ty: GgmlType,
    /// The panel holds code + 128 (unsigned weights, for `vpdpbusd`).
    unsigned: bool,
    tiles: TilesFn,
}

/// The GEMM of `ty` at the level in use ([`super::kernels::isa`]); `None` for other types and
/// for the levels without SIMD tiles (scalar, and the NEON levels, whose `vec_dot8` kernels
/// beat the scalar tiles: those keep their batched path, with the same bits).
pub fn gemm_q0(ty: GgmlType) -> Option<GemmQ0> {
    match super::kernels::isa() {
        isa @ (Isa::Avx2 | Isa::Avx2Vnni) => gemm_q0_for(isa, ty),
        _ => None,
    }
}

/// The GEMM of `ty` at level `isa` (`None` where this CPU lacks the level or the type has none).
pub fn gemm_q0_for(isa: Isa, ty: GgmlType) -> Option<GemmQ0> {
    if !matches!(ty, GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0) || !isa.supported() {
        return None;
    }
    let (unsigned, tiles): (bool, TilesFn) = match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => (false, super::x86::gemm_q0::tiles_avx2),
        #[cfg(all(target_arch = "x86_64", finetune_avx512))]
        Isa::Avx2Vnni => (true, super::x86::gemm_q0::tiles_vnni),
        #[cfg(all(target_arch = "x86_64", not(finetune_avx512)))]
        Isa::Avx2Vnni => (false, super::x86::gemm_q0::tiles_avx2),
        _ => (false, tiles_scalar),
    };
    Some(GemmQ0 { ty, unsigned, tiles })
}

thread_local! {
    /// Each thread's panel, reused across calls (grown, never shrunk).
    static PANEL: RefCell<Panel> = RefCell::new(Panel::default());
}

impl GemmQ0 {
    /// The weight type.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Weight rows per parallel task for an `n × k` matrix on `threads` threads: enough tasks
    /// to balance, a panel of at most ≈ 64 KiB.
    pub fn chunk(&self, n: usize, k: usize, threads: usize) -> usize {
        let by_cache = (65536 / k.max(1)).max(4);
        n.div_ceil(4 * threads.max(1)).clamp(4, 64).min(by_cache).next_multiple_of(4)
    }

    /// `y[tt·ldy + i]` = the one-row kernel's dot of weight row `i` of `w` (whole rows of this
    /// type, `a.len() / t` blocks each) with activation row `tt < t` of `a`.
    ///
    /// # Safety
    /// `y` is valid for writes at `tt·ldy + i` for every `tt < t`, `i <` the rows of `w`, and
    /// nothing else accesses those elements during the call.
    pub unsafe fn rows_raw(&self, w: &[u8], a: &[BlockQ8], t: usize, y: *mut f32, ldy: usize) {
        if t == 0 {
            return;
        }
        assert_eq!(a.len() % t, 0, "activations are not whole rows");
        let bpr = a.len() / t;
        let rb = bpr * self.ty.type_size();
        assert_eq!(w.len() % rb.max(1), 0, "weight rows and activation rows differ in length");
        let rows = w.len().checked_div(rb).unwrap_or(0);
        PANEL.with(|p| {
            let mut p = p.borrow_mut();
            decode_panel(self.ty, w, rows, bpr, self.unsigned, &mut p);
            // SAFETY: the caller guarantees `y`; `tiles` is listed only for a level this CPU has.
            unsafe { (self.tiles)(&mut p, a, t, y, ldy) }
        });
    }

    /// [`rows_raw`](Self::rows_raw) into a new `t × rows` matrix (tests, small calls).
    pub fn rows(&self, w: &[u8], a: &[BlockQ8], t: usize) -> Vec<f32> {
        let bpr = a.len().checked_div(t).unwrap_or(0);
        let rows = w.len().checked_div(bpr * self.ty.type_size()).unwrap_or(0);
        let mut y = vec![0f32; t * rows];
        // SAFETY: `y` holds `t × rows` elements and is exclusively borrowed.
        unsafe { self.rows_raw(w, a, t, y.as_mut_ptr(), rows) };
        y
    }
}

/// Decodes `rows` rows of `bpr` blocks of `ty` into `p` (reusing its buffers).
fn decode_panel(ty: GgmlType, w: &[u8], rows: usize, bpr: usize, unsigned: bool, p: &mut Panel) {
    let ts = ty.type_size();
    let nb = rows * bpr;
    p.q.resize(nb * 32, 0);
    p.d.clear();
    p.d.resize(rows.div_ceil(4) * bpr * 4, 0.0);
    (p.rows, p.bpr) = (rows, bpr);
    let flip = if unsigned { 0x80 } else { 0 };
    for (n, (blk, q)) in w[..nb * ts].chunks_exact(ts).zip(p.q.chunks_exact_mut(32)).enumerate() {
        let (r, b) = (n / bpr, n % bpr);
        p.d[((r / 4) * bpr + b) * 4 + r % 4] = f16_at(blk, 0);
        match ty {
            GgmlType::Q8_0 => q.iter_mut().zip(&blk[2..34]).for_each(|(o, &c)| *o = c ^ flip),
            GgmlType::Q4_0 => {
                for j in 0..16 {
                    q[j] = ((blk[2 + j] & 15).wrapping_sub(8)) ^ flip;
                    q[j + 16] = ((blk[2 + j] >> 4).wrapping_sub(8)) ^ flip;
                }
            }
            GgmlType::Q5_0 => {
                let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
                for j in 0..16 {
                    let hi = |s: usize| (((qh >> s) & 1) << 4) as u8;
                    q[j] = ((blk[6 + j] & 15) | hi(j)).wrapping_sub(16) ^ flip;
                    q[j + 16] = ((blk[6 + j] >> 4) | hi(j + 16)).wrapping_sub(16) ^ flip;
                }
            }
            _ => unreachable!("gemm_q0_for lists Q4_0, Q5_0 and Q8_0 only"),
        }
    }
}

/// The scalar reference tiles (one pair at a time; the panel holds signed codes).
///
/// # Safety
/// As [`TilesFn`].
unsafe fn tiles_scalar(p: &mut Panel, a: &[BlockQ8], t: usize, y: *mut f32, ldy: usize) {
    let bpr = p.bpr;
    assert!(a.len() >= t * bpr, "too few activation blocks");
    for tt in 0..t {
        let ar = &a[tt * bpr..(tt + 1) * bpr];
        for r in 0..p.rows {
            let mut acc = [0f32; 8];
            for (b, ab) in ar.iter().enumerate() {
                let q = &p.q[(r * bpr + b) * 32..(r * bpr + b + 1) * 32];
                let dd = p.d[((r / 4) * bpr + b) * 4 + r % 4] * ab.d;
                for (l, acc_l) in acc.iter_mut().enumerate() {
                    let lane: i32 = (4 * l..4 * l + 4).map(|e| q[e] as i8 as i32 * ab.qs[e] as i32).sum();
                    *acc_l = dd.mul_add(lane as f32, *acc_l);
                }
            }
            // SAFETY: the caller guarantees `y` for tt < t, r < rows.
            unsafe { *y.add(tt * ldy + r) = hsum8(acc) + 0.0 };
        }
    }
}
