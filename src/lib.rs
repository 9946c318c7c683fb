//! `finetune`: train LoRA adapters directly on quantized GGUF weights.
//!
//! The pipeline, in reading order: [`gguf`] (the container: read, validate, write) →
//! [`quant`] (block formats: decode, encode, SIMD kernels) → [`inspect`] (model summaries) →
//! the `finetune` binary (`src/main.rs`).

#![warn(missing_docs)]

pub mod adapter;
pub mod backend;
pub mod bench;
pub mod chat;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod inspect;
pub mod lora;
pub mod model;
pub mod npy;
pub mod ops;
pub mod perplexity;
pub mod prof;
pub mod quant;
pub mod tokenizer;
pub mod train;
pub mod weights;
