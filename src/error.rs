//! The crate's error type. Every message names the file (and, where the inner error knows it,
//! the place in the file) it is about; the CLI prints it as `error: {message}`.

use std::path::{Path, PathBuf};

use crate::adapter::ollama::OllamaError;
use crate::adapter::AdapterError;
use crate::chat::ChatError;
use crate::gguf::GgufError;
use crate::model::ModelError;
use crate::quant::QuantError;
use crate::train::data::DataError;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error of any part of the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed (`{path}: {source}`).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A GGUF container is broken or cannot be written.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A GGUF file is a valid container but not a model this engine runs.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A LoRA adapter file is broken or does not fit the model.
    #[error(transparent)]
    Adapter(#[from] AdapterError),
    /// Tensor data does not fit its block format.
    #[error(transparent)]
    Quant(#[from] QuantError),
    /// An Ollama Modelfile cannot be built.
    #[error(transparent)]
    Ollama(#[from] OllamaError),
    /// A chat template does not parse or render.
    #[error(transparent)]
    Template(#[from] ChatError),
    /// Any other file whose content is unusable (safetensors, PEFT configs, checkpoints,
    /// templates): `{file}: {problem}`.
    #[error("{}: {problem}", file.display())]
    Format {
        /// The file (or directory).
        file: PathBuf,
        /// What is wrong, and where in the file.
        problem: String,
    },
    /// A tensor cannot be used or produced (`{name}: {problem}`; the file is the command's
    /// model or output).
    #[error("{}: {problem}", crate::util::text::shown(name))]
    Tensor {
        /// The tensor.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// A training dataset is unusable.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Training stopped (a non-finite loss or gradient, overflowing activations).
    #[error("{0}")]
    Train(String),
    /// The compute backend failed.
    #[error("{0}")]
    Backend(String),
    /// An invalid command-line argument or option value.
    #[error("{0}")]
    Usage(String),
    /// A message from code that still reports errors as strings.
    #[error("{0}")]
    Msg(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), source }
    }

    /// A problem with the content of `file`.
    pub fn format(file: impl AsRef<Path>, problem: impl std::fmt::Display) -> Self {
        Error::Format { file: file.as_ref().to_path_buf(), problem: problem.to_string() }
    }

    /// A problem with the tensor `name`.
    pub fn tensor(name: impl Into<String>, problem: impl std::fmt::Display) -> Self {
        Error::Tensor { name: name.into(), problem: problem.to_string() }
    }

    /// An invalid argument.
    pub fn usage(message: impl Into<String>) -> Self {
        Error::Usage(message.into())
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::Msg(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_the_inner_texts() {
        let e = Error::io("a/b.gguf", std::io::Error::new(std::io::ErrorKind::NotFound, "gone"));
        assert_eq!(e.to_string(), "a/b.gguf: gone");
        assert_eq!(Error::format("x.json", "not valid JSON").to_string(), "x.json: not valid JSON");
        assert_eq!(Error::usage("--threads must be at least 1").to_string(), "--threads must be at least 1");
        assert_eq!(Error::from("plain".to_string()).to_string(), "plain");
        assert_eq!(Error::Backend("device lost".into()).to_string(), "device lost");
    }
}
