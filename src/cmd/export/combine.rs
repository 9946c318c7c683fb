//! `finetune export --merge-adapters A.gguf B.gguf --out AB.gguf`.

use super::ExportArgs;

/// Combine the adapters into one file.
pub fn run(_a: &ExportArgs) -> Result<(), String> {
    Err("export --merge-adapters is not implemented yet".into())
}
