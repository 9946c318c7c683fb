//! Training: everything between a model file plus a dataset and a trained LoRA adapter, in
//! reading order: [`data`] (dataset file → loss-masked samples → packed sequences), [`block`]
//! (the backward of the model's block and the step driver with per-layer checkpointing; the
//! forward is the model's own, [`crate::model::block`]), [`optim`] (AdamW, schedules,
//! clipping), [`plan`] (peak-memory estimate), [`trainer`] (the loop), [`checkpoint`]
//! (save/resume) and [`plot`] (loss curve). The LoRA types are [`crate::lora`]; every op runs
//! on a [`crate::backend::TrainBackend`].

pub mod block;
pub mod checkpoint;
pub mod data;
pub mod optim;
pub mod plan;
pub mod plot;
pub mod trainer;
