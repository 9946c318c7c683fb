//! Training: everything between a model file plus a dataset and a trained LoRA adapter, in
//! reading order: [`data`] (dataset file → loss-masked samples → packed sequences), [`lora`]
//! (the trainable low-rank pairs), [`block`] (the model's training forward/backward with
//! per-layer checkpointing), [`optim`] (AdamW, schedules, clipping), [`plan`] (peak-memory
//! estimate), [`trainer`] (the loop), [`checkpoint`] (save/resume) and [`plot`] (loss curve).

pub mod block;
pub mod checkpoint;
pub mod data;
pub mod dropout;
pub mod lora;
pub mod optim;
pub mod plan;
pub mod plot;
pub mod prof;
pub mod trainer;
