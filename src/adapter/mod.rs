//! Adapter files: llama.cpp's GGUF LoRA format ([`gguf_lora`]) and merging adapters into a
//! model file ([`merge`]).

pub mod gguf_lora;
pub mod merge;
pub mod peft;

pub use gguf_lora::{read_adapter, write_adapter, AdapterError, BaseInfo};
