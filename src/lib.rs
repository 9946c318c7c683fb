//! `finetune`: train LoRA adapters directly on quantized GGUF weights.
//!
//! The pipeline, in reading order: [`gguf`] (the container: read, validate, write) →
//! [`quant`] (block formats: decode, encode, SIMD kernels) → [`inspect`] (model summaries) →
//! the `finetune` binary (`src/main.rs`).

#![warn(missing_docs)]

pub mod adapter;
pub mod bench;
pub mod chat;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod inspect;
pub mod model;
pub mod npy;
pub mod ops;
pub mod perplexity;
pub mod quant;
pub mod safetensors;
pub mod tokenizer;
pub mod train;
pub mod util;

pub use error::{Error, Result};
