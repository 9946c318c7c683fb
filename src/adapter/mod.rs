//! Adapter files: llama.cpp's GGUF LoRA format ([`gguf_lora`]), merging adapters into a
//! model file ([`merge`]), combining adapters into one ([`combine`]) and Ollama Modelfiles
//! ([`ollama`]).

pub mod combine;
pub mod gguf_lora;
pub mod merge;
pub mod ollama;

pub use gguf_lora::{read_adapter, write_adapter, AdapterError, BaseInfo};
