//! The crate's one error type (placeholder until the error-type change lands).
#![allow(missing_docs)]

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Backend(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Msg(String),
}
