//! Tensor operations of the transformer, each a small module with its forward pass (and, as
//! training arrives, its backward pass beside it with the same shapes). Activations are f32,
//! row-major `[tokens, features]`.

pub mod activation;
pub mod attention;
mod attention_seq;
pub mod f16;
pub mod attention_train;
pub mod loss;
pub mod matmul;
pub mod matmul_q8;
pub mod norm;
pub mod rope;
mod send_ptr;
pub mod vexp;
