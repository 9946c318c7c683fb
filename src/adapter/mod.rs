//! Adapter files: llama.cpp's GGUF LoRA format ([`gguf_lora`]).

pub mod gguf_lora;

pub use gguf_lora::{read_adapter, write_adapter, AdapterError, BaseInfo};
