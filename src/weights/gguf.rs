//! GGUF weights: [`QMatrix`], a view of ggml blocks in the memory map (row-major, `n_in /
//! block_size` blocks per row), and [`GgufSource`], a model's tensors from an opened GGUF file.

use super::{QuantWeight, Weight, WeightFormat, WeightSource};
use crate::gguf::{GgufModel, TensorView};
use crate::model::{Config, ModelError};
use crate::quant::{self, GgmlType};

/// A quantized (or float) matrix view: `n_out` rows of `n_in` elements of ggml type `ty`.
#[derive(Clone, Copy, Debug)]
pub struct QMatrix<'a> {
    /// Element type of the blocks.
    pub ty: GgmlType,
    /// Row length (ne0).
    pub n_in: usize,
    /// Number of rows (ne1).
    pub n_out: usize,
    /// Raw blocks, row-major.
    pub data: &'a [u8],
}

impl QMatrix<'_> {
    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.n_in / self.ty.block_size() * self.ty.type_size()
    }
    /// Raw bytes of rows `r0..r1`.
    pub fn rows(&self, r0: usize, r1: usize) -> &[u8] {
        let rb = self.row_bytes();
        &self.data[r0 * rb..r1 * rb]
    }
    /// Decode rows `r0..r1` into `out` (`(r1−r0)·n_in` values).
    pub fn decode_rows(&self, r0: usize, r1: usize, out: &mut [f32]) {
        quant::decode(self.ty, self.rows(r0, r1), out).expect("matrix sizes validated at load");
    }
}

impl QuantWeight for QMatrix<'_> {
    fn n_in(&self) -> usize {
        self.n_in
    }
    fn n_out(&self) -> usize {
        self.n_out
    }
    fn format(&self) -> WeightFormat {
        WeightFormat::Ggml(self.ty)
    }
    fn byte_size(&self) -> usize {
        self.data.len()
    }
    fn decode_rows(&self, r0: usize, r1: usize, out: &mut [f32]) {
        QMatrix::decode_rows(self, r0, r1, out)
    }
    fn col_block(&self) -> usize {
        self.ty.block_size()
    }
    fn decode_cols(&self, r: usize, c0: usize, c1: usize, out: &mut [f32]) {
        let (bs, ts, rb) = (self.ty.block_size(), self.ty.type_size(), self.row_bytes());
        let row = &self.data[r * rb..(r + 1) * rb];
        quant::decode(self.ty, &row[c0 / bs * ts..c1 / bs * ts], out).expect("matrix sizes validated at load");
    }
    fn dot_activation(&self) -> Option<GgmlType> {
        crate::quant::kernels(self.ty).vec_dot_type
    }
    fn as_ggml(&self) -> Option<QMatrix<'_>> {
        Some(*self)
    }
}

/// A model's tensors from an opened GGUF file (weights borrowed from its memory map).
pub struct GgufSource<'a> {
    m: &'a GgufModel,
    file: String,
}

impl<'a> GgufSource<'a> {
    /// The tensors of `m`.
    pub fn new(m: &'a GgufModel) -> Self {
        GgufSource { m, file: m.main().path().display().to_string() }
    }

    fn err(&self, name: &str, problem: impl Into<String>) -> ModelError {
        ModelError::Tensor { file: self.file.clone(), name: name.into(), problem: problem.into() }
    }

    fn view(&self, name: &str) -> Result<TensorView<'a>, ModelError> {
        self.m.tensor(name).ok_or_else(|| self.err(name, "missing"))
    }

    /// The GGUF view of a matrix, shape- and type-checked.
    pub fn qmatrix(&self, name: &str, n_in: usize, n_out: usize) -> Result<QMatrix<'a>, ModelError> {
        let v = self.view(name)?;
        let dims = &v.info.dims;
        if dims.len() != 2 || dims[0] as usize != n_in || dims[1] as usize != n_out {
            return Err(self.err(name, format!("shape {dims:?}, expected [{n_in}, {n_out}]")));
        }
        if !v.info.ty.can_decode() {
            return Err(self.err(name, format!("type {} is not supported", v.info.ty)));
        }
        Ok(QMatrix { ty: v.info.ty, n_in, n_out, data: v.data })
    }
}

impl<'a> WeightSource<'a> for GgufSource<'a> {
    fn path(&self) -> String {
        self.file.clone()
    }
    fn config(&self) -> Result<Config, ModelError> {
        Config::from_gguf(self.m.main(), &self.file)
    }
    fn has(&self, name: &str) -> bool {
        self.m.tensor(name).is_some()
    }
    fn matrix(&self, name: &str, n_in: usize, n_out: usize) -> Result<Weight<'a>, ModelError> {
        Ok(std::sync::Arc::new(self.qmatrix(name, n_in, n_out)?))
    }
    fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>, ModelError> {
        let v = self.view(name)?;
        if v.info.n_elements() as usize != n {
            return Err(self.err(name, format!("shape {:?}, expected [{n}]", v.info.dims)));
        }
        let mut out = vec![0f32; n];
        quant::decode(v.info.ty, v.data, &mut out).map_err(|e| self.err(name, e.to_string()))?;
        Ok(out)
    }
}
