//! `finetune`: train LoRA adapters directly on quantized GGUF weights.
//!
//! Modules, in reading order:
//!
//! * Files: [`gguf`] (the container: read memory-mapped and validated, write atomically, split
//!   files), [`quant`] (block formats: decode, encode, SIMD kernels), [`safetensors`] (Hugging
//!   Face tensors, single and sharded), [`npy`] (tensor export), [`inspect`] (model summaries).
//! * Compute: [`weights`] (frozen weights behind one trait, whatever their storage), [`ops`]
//!   (matmul, attention, norms, rope, activations, loss), [`backend`] (the seam: every op the
//!   model and the trainer run, behind the `Backend`/`TrainBackend` traits; CPU now, GPU
//!   arriving), [`lora`] (adapter pairs and dropout) and [`model`] (the supported
//!   architectures, their configuration, KV cache, block and forward pass).
//! * Text: [`tokenizer`] (llama.cpp-identical BPE and SentencePiece) and [`chat`] (Jinja chat
//!   templates).
//! * Inference: [`generate`] (sampling, sessions), [`perplexity`], [`bench`] (speed beside
//!   llama.cpp and PyTorch + PEFT).
//! * Training: [`train`] (data, block backward, AdamW, memory plan, the loop, checkpoints, loss
//!   plot), [`prof`] (phase timing) and [`adapter`] (llama.cpp GGUF LoRA files, merging into a
//!   model, combining adapters, Ollama Modelfiles, PEFT directories).
//! * Shared: [`error`] (the one [`Error`] type) and [`util`] (the random generator, process
//!   memory).
//!
//! The `finetune` binary (`src/main.rs`, with the subcommand bodies in `src/cmd/`) ties them
//! together.

#![warn(missing_docs)]

pub mod adapter;
pub mod backend;
pub mod bench;
pub mod chat;
pub mod error;
pub mod eval;
pub mod generate;
pub mod gguf;
pub mod inspect;
pub mod lora;
pub mod model;
pub mod model_file;
pub mod normalize;
pub mod npy;
pub mod ops;
pub mod perplexity;
pub mod prof;
pub mod quant;
pub mod safetensors;
pub mod tokenizer;
pub mod train;
pub mod util;
pub mod weights;

pub use error::{Error, Result};
