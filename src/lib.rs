//! `finetune`: train LoRA adapters directly on quantized GGUF weights.
//!
//! Modules, in reading order:
//!
//! * Files: [`gguf`] (the container: read memory-mapped and validated, write atomically, split
//!   files), [`quant`] (block formats: decode, encode, SIMD kernels), [`safetensors`] (Hugging
//!   Face tensors, single and sharded), [`npy`] (tensor export), [`inspect`] (model summaries).
//! * Compute: [`ops`] (matmul, attention, norms, rope, activations, loss, each forward with its
//!   backward) and [`model`] (the supported architectures, their configuration, KV cache and
//!   forward pass over weights that stay quantized). A `backend` module (the seam between the
//!   model code and CPU or GPU kernels) is arriving.
//! * Text: [`tokenizer`] (llama.cpp-identical BPE and SentencePiece) and [`chat`] (Jinja chat
//!   templates).
//! * Inference: [`generate`] (sampling, sessions), [`perplexity`], [`bench`] (speed beside
//!   llama.cpp and PyTorch + PEFT).
//! * Training: [`train`] (data, LoRA pairs, per-block forward/backward, AdamW, memory plan, the
//!   loop, checkpoints, loss plot) and [`adapter`] (llama.cpp GGUF LoRA files, merging into a
//!   model, combining adapters, Ollama Modelfiles, PEFT directories).
//! * Shared: [`error`] (the one [`Error`] type) and [`util`] (the random generator, process
//!   memory).
//!
//! The `finetune` binary (`src/main.rs`, with the subcommand bodies in `src/cmd/`) ties them
//! together.

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
