//! Training: LoRA parameters ([`lora`]), the training forward/backward of a block ([`block`]),
//! the optimizer ([`optim`]) and the training loop ([`trainer`]).

pub mod lora;
pub mod optim;
pub mod block;
// pub mod checkpoint;
// pub mod trainer;
pub mod plan;
// pub mod plot;
