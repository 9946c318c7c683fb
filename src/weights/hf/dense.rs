//! A plain F32 / F16 / BF16 matrix of a Hugging Face checkpoint (`nn.Linear.weight`, `[n_out,
//! n_in]` row-major in torch order), read in place from the safetensors memory map. The bytes
//! are exactly ggml's F32/F16/BF16 rows, so the matrix is also a [`QMatrix`] and llama.cpp's
//! float kernels run on it as on an F16 GGUF.

use crate::model::ModelError;
use crate::quant::GgmlType;
use crate::safetensors::{Dtype, TensorView};
use crate::weights::{QMatrix, QuantWeight, WeightFormat};

/// A dense float matrix borrowed from a safetensors file.
#[derive(Clone, Copy, Debug)]
pub struct DenseMatrix<'a> {
    dtype: Dtype,
    m: QMatrix<'a>,
}

impl<'a> DenseMatrix<'a> {
    /// The tensor `v` as an `n_out × n_in` matrix: a float dtype and the shape `[n_out, n_in]`
    /// are checked (the error names the file and tensor).
    pub fn new(v: &TensorView<'a>, n_in: usize, n_out: usize) -> Result<Self, ModelError> {
        let err = |p: String| ModelError::Tensor { file: v.file.display().to_string(), name: v.name.to_string(), problem: p };
        let ty = v.dtype.ggml().ok_or_else(|| err(format!("dtype {} is not a float type (F32, F16, BF16)", v.dtype)))?;
        if v.shape != [n_out, n_in] {
            return Err(err(format!("shape {:?}, expected [{n_out}, {n_in}] from config.json", v.shape)));
        }
        debug_assert!(matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16));
        Ok(DenseMatrix { dtype: v.dtype, m: QMatrix { ty, n_in, n_out, data: v.data } })
    }
}

impl QuantWeight for DenseMatrix<'_> {
    fn n_in(&self) -> usize {
        self.m.n_in
    }
    fn n_out(&self) -> usize {
        self.m.n_out
    }
    fn format(&self) -> WeightFormat {
        WeightFormat::Dense(self.dtype)
    }
    fn byte_size(&self) -> usize {
        self.m.data.len()
    }
    fn decode_rows(&self, r0: usize, r1: usize, out: &mut [f32]) {
        self.m.decode_rows(r0, r1, out)
    }
    fn col_block(&self) -> usize {
        1
    }
    fn decode_cols(&self, r: usize, c0: usize, c1: usize, out: &mut [f32]) {
        QuantWeight::decode_cols(&self.m, r, c0, c1, out)
    }
    fn dot_activation(&self) -> Option<GgmlType> {
        self.m.dot_activation()
    }
    fn as_ggml(&self) -> Option<QMatrix<'_>> {
        Some(self.m)
    }
}
