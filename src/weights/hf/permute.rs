//! Hugging Face → GGUF row order of the q/k projections of llama-family models.
//!
//! Hugging Face's Llama rotates the two halves of each head (`rotate_half`); llama.cpp's NORM
//! rope rotates adjacent pairs, so `convert_hf_to_gguf.py` (`LlamaModel.permute`) reorders the
//! rows of `q_proj`/`k_proj` within each head: GGUF row `h·hd + 2i + s` is HF row
//! `h·hd + s·hd/2 + i` (`i < hd/2`, `s ∈ {0, 1}`). [`QkPermuted`] presents any [`QuantWeight`] in
//! HF order as the GGUF-ordered matrix without copying it: rows are decoded one by one from
//! their source rows. NEOX-rope architectures (qwen2, qwen3, gemma3) need no permutation.

use crate::weights::{QuantWeight, Weight, WeightFormat};

/// The HF row that GGUF row `r` comes from, for heads of `head_dim` rows.
pub fn hf_row(r: usize, head_dim: usize) -> usize {
    let (h, j) = (r / head_dim, r % head_dim);
    let (i, s) = (j / 2, j % 2);
    h * head_dim + s * (head_dim / 2) + i
}

/// The GGUF row that HF row `r` goes to (inverse of [`hf_row`]).
pub fn gguf_row(r: usize, head_dim: usize) -> usize {
    let (h, j) = (r / head_dim, r % head_dim);
    let half = head_dim / 2;
    let (s, i) = (j / half, j % half);
    h * head_dim + 2 * i + s
}

/// A weight in HF q/k row order seen in GGUF row order.
#[derive(Debug)]
pub struct QkPermuted<'a> {
    inner: Weight<'a>,
    head_dim: usize,
}

impl<'a> QkPermuted<'a> {
    /// Wrap `inner` (rows in HF order, `n_out` a multiple of the even `head_dim`).
    pub fn new(inner: Weight<'a>, head_dim: usize) -> Self {
        assert!(head_dim >= 2 && head_dim % 2 == 0 && inner.n_out() % head_dim == 0, "q/k rows must be whole heads of even width");
        QkPermuted { inner, head_dim }
    }
}

impl QuantWeight for QkPermuted<'_> {
    fn n_in(&self) -> usize {
        self.inner.n_in()
    }
    fn n_out(&self) -> usize {
        self.inner.n_out()
    }
    fn format(&self) -> WeightFormat {
        self.inner.format()
    }
    fn byte_size(&self) -> usize {
        self.inner.byte_size()
    }
    fn decode_rows(&self, r0: usize, r1: usize, out: &mut [f32]) {
        let n = self.inner.n_in();
        for (r, o) in (r0..r1).zip(out.chunks_exact_mut(n)) {
            let s = hf_row(r, self.head_dim);
            self.inner.decode_rows(s, s + 1, o);
        }
    }
    fn col_block(&self) -> usize {
        self.inner.col_block()
    }
    fn decode_cols(&self, r: usize, c0: usize, c1: usize, out: &mut [f32]) {
        self.inner.decode_cols(hf_row(r, self.head_dim), c0, c1, out)
    }
    // No integer dot and no GGUF view: the rows are not contiguous in GGUF order.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_match_the_converter() {
        // convert_hf_to_gguf.py: w.reshape(n_head, 2, hd/2, …).swapaxes(1, 2): GGUF row
        // (h, i, s) = HF row (h, s, i).
        let hd = 8;
        for r in 0..3 * hd {
            assert_eq!(gguf_row(hf_row(r, hd), hd), r);
        }
        assert_eq!((0..hd).map(|r| hf_row(r, hd)).collect::<Vec<_>>(), vec![0, 4, 1, 5, 2, 6, 3, 7]);
    }
}
