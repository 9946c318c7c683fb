//! The CPU kernels of the transformer's ops, each a small module with its forward pass and its
//! backward pass beside it, with the same shapes (f32, row-major `[tokens, features]`). The
//! model and the trainer do not call these directly: they reach them through the CPU backend
//! ([`crate::backend::cpu`]), which picks the f32 or the llama.cpp-numerics variant of each.
//! Attention has two kernels by use: [`attention`] decodes over a KV cache (inference, with
//! llama.cpp's rounding in ggml numerics) and [`attention_train`] runs a whole packed sequence
//! and keeps the log-sum-exp its backward needs.

pub mod activation;
pub mod attention;
#[cfg(target_arch = "x86_64")]
mod attention_one;
mod attention_seq;
pub mod attention_train;
pub mod f16;
pub mod loss;
pub mod matmul;
pub mod matmul_q8;
pub mod matmul_q8_bwd;
pub mod matmul_q8_fwd;
pub mod norm;
pub mod rope;
pub(crate) mod send_ptr;
pub mod vexp;
