//! Training: everything between a model file plus a dataset and a trained LoRA adapter.
//!
//! [`data`] turns a dataset file into tokenized, loss-masked samples and (packed) sequences.

pub mod data;
