//! Frozen weights behind one trait, whatever their storage.
//!
//! [`QuantWeight`] is "a frozen `n_out × n_in` matrix stored somehow": it says its shape and
//! byte size, decodes rows (or a column range of one row) to f32 for the float kernels, and
//! names the activation quantization its integer dot product expects where the format has one.
//! Backends reach weights only through it. [`WeightSource`] is where a model's tensors come
//! from (a GGUF file today; a safetensors directory next), by GGUF tensor name.
//!
//! Implementations: [`gguf::QMatrix`] (GGUF/ggml blocks, row-major, read in place from the
//! memory map); over safetensors views of a Hugging Face checkpoint, read in place:
//! [`awq::AwqMatrix`] (AWQ GEMM), [`gptq::GptqMatrix`] (GPTQ v1/v2; `packed.rs`: what those two
//! share), [`ctensors::PackQuantizedMatrix`] (compressed-tensors `pack-quantized`) and
//! [`exl2::Exl2Matrix`] (EXL2; `bitstream.rs`: the b-bit streams). [`hf`]: Hugging Face directories
//! ([`hf::HfSource`], dense F32/F16/BF16 matrices, the q/k row permutation over any weight, and
//! `hf/quant.rs`, the dispatch to each format's `open`); the CPU backend's float
//! path then works on it unchanged.

pub mod awq;
pub mod bitstream;
pub mod ctensors;
pub mod exl2;
pub mod gguf;
pub mod gptq;
pub mod hf;
pub mod packed;
#[cfg(target_arch = "aarch64")]
pub mod packed_arm;
#[cfg(target_arch = "x86_64")]
pub mod packed_x86;

pub use awq::AwqMatrix;
pub use ctensors::PackQuantizedMatrix;
pub use exl2::Exl2Matrix;
pub use gguf::{GgufSource, QMatrix};
pub use gptq::GptqMatrix;

use crate::model::{Config, ModelError};
use crate::quant::GgmlType;

/// How a weight is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightFormat {
    /// ggml blocks of this type (GGUF).
    Ggml(GgmlType),
    /// compressed-tensors `pack-quantized` integers of this many bits.
    PackQuantized(u8),
    /// EXL2 mixed-bit groups (exllamav2).
    Exl2,
    /// AWQ GEMM: `bits`-bit codes with zero points, one scale per `group` inputs.
    Awq {
        /// Bits per code (4).
        bits: u8,
        /// Inputs per scale (the row length for one group).
        group: usize,
    },
    /// GPTQ (v1 or v2): `bits`-bit codes with zero points, one scale per `group` inputs.
    Gptq {
        /// Bits per code (2, 3, 4 or 8).
        bits: u8,
        /// Inputs per scale (the row length for one group).
        group: usize,
    },
    /// Plain floats of a safetensors checkpoint (F32, F16, BF16).
    Dense(crate::safetensors::Dtype),
}

impl std::fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WeightFormat::Ggml(t) => write!(f, "{t}"),
            WeightFormat::PackQuantized(b) => write!(f, "pack-quantized int{b}"),
            WeightFormat::Exl2 => f.write_str("EXL2"),
            WeightFormat::Awq { bits, group } => write!(f, "AWQ-GEMM {bits}-bit g{group}"),
            WeightFormat::Gptq { bits, group } => write!(f, "GPTQ {bits}-bit g{group}"),
            WeightFormat::Dense(d) => write!(f, "{d}"),
        }
    }
}

/// A frozen `n_out × n_in` matrix (`y = x·Wᵀ` maps `n_in` to `n_out`), stored in any format.
pub trait QuantWeight: Send + Sync + std::fmt::Debug {
    /// Row length (input features).
    fn n_in(&self) -> usize;
    /// Number of rows (output features).
    fn n_out(&self) -> usize;
    /// The storage format.
    fn format(&self) -> WeightFormat;
    /// Bytes the stored matrix occupies.
    fn byte_size(&self) -> usize;
    /// Decode rows `r0..r1` into `out` (`(r1 − r0)·n_in` values, row-major).
    /// The default decodes each row through [`decode_cols`](Self::decode_cols); formats that
    /// share data between rows (packed along the output axis) override it.
    fn decode_rows(&self, r0: usize, r1: usize, out: &mut [f32]) {
        let n = self.n_in();
        for (r, row) in (r0..r1).zip(out.chunks_exact_mut(n)) {
            self.decode_cols(r, 0, n, row);
        }
    }
    /// Column granularity of [`decode_cols`](Self::decode_cols) (the block width).
    fn col_block(&self) -> usize;
    /// Decode columns `c0..c1` of row `r` into `out` (`c1 − c0` values); `c0` and `c1` are
    /// multiples of [`col_block`](Self::col_block) (or `c1 = n_in`).
    fn decode_cols(&self, r: usize, c0: usize, c1: usize, out: &mut [f32]);
    /// Decode rows `r0..r1` restricted to columns `c0..c1` (bounds as for
    /// [`decode_cols`](Self::decode_cols)) into `out`, row-major with stride `c1 − c0`. The
    /// default decodes row by row; formats that share data between rows override it.
    fn decode_block(&self, r0: usize, r1: usize, c0: usize, c1: usize, out: &mut [f32]) {
        if c1 > c0 {
            for (r, row) in (r0..r1).zip(out.chunks_exact_mut(c1 - c0)) {
                self.decode_cols(r, c0, c1, row);
            }
        }
    }
    /// The activation format an integer dot product on this weight expects (ggml's
    /// `vec_dot_type`: Q8_0, Q8_1 or Q8_K), if the format has such a path.
    fn dot_activation(&self) -> Option<GgmlType> {
        None
    }
    /// The GGUF block view, when the weight is ggml blocks (the CPU integer kernels and the
    /// merge tool read those bytes in place).
    fn as_ggml(&self) -> Option<QMatrix<'_>> {
        None
    }
}

/// A frozen weight borrowed from its source (a memory map) for `'a`, shared by the model's
/// views (a tied output projection is the embedding).
pub type Weight<'a> = std::sync::Arc<dyn QuantWeight + 'a>;

/// Where a model's tensors come from, addressed by GGUF tensor name (`blk.3.attn_q.weight`).
pub trait WeightSource<'a> {
    /// The file (or directory) for error messages.
    fn path(&self) -> String;
    /// The model's hyper-parameters.
    fn config(&self) -> Result<Config, ModelError>;
    /// Whether the tensor exists.
    fn has(&self, name: &str) -> bool;
    /// A matrix of `n_out` rows of `n_in` (checked against the stored shape).
    fn matrix(&self, name: &str, n_in: usize, n_out: usize) -> Result<Weight<'a>, ModelError>;
    /// A vector of `n` values decoded to f32 (norm weights, biases: tiny).
    fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>, ModelError>;
}
