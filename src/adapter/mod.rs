//! Adapter files: llama.cpp's GGUF LoRA format ([`gguf_lora`]), merging adapters into a
//! model file ([`merge`]), combining adapters into one ([`combine`]), Ollama Modelfiles
//! ([`ollama`]) and Hugging Face PEFT directories ([`peft`]).

pub mod combine;
pub mod gguf_lora;
pub mod merge;
pub mod ollama;
pub mod peft;

pub use gguf_lora::{read_adapter, write_adapter, AdapterError, BaseInfo};
