//! `finetune export --ollama DIR`.

use std::path::Path;

use super::ExportArgs;

/// Write DIR/Modelfile.
pub fn export(_a: &ExportArgs, dir: &Path) -> Result<(), String> {
    Err(format!("{}: export --ollama is not implemented yet", dir.display()))
}
