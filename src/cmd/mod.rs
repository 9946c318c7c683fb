//! Bodies of the CLI subcommands (the clap definitions are in `main.rs`).

pub mod bench;
pub mod generate;
pub mod inspect;
pub mod perplexity;
pub mod tokenize;
pub mod train;

use std::path::Path;

use finetune::gguf::GgufModel;
use finetune::tokenizer::Tokenizer;

/// Open a model file with a readable error.
pub fn open(path: &Path) -> Result<GgufModel, String> {
    GgufModel::open(path).map_err(|e| e.to_string())
}

/// The tokenizer of an opened model.
pub fn tokenizer(g: &GgufModel) -> Result<Tokenizer, String> {
    Tokenizer::from_gguf(g.main()).map_err(|e| format!("{}: {e}", g.main().path().display()))
}

/// Read `--text` or `--file` input.
pub fn text_arg(text: Option<String>, file: Option<&Path>) -> Result<String, String> {
    match (text, file) {
        (Some(t), None) => Ok(t),
        (None, Some(f)) => std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display())),
        _ => Err("give exactly one of --text / --prompt or --file".into()),
    }
}
