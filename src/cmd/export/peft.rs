//! `finetune export --peft DIR` and `finetune import --peft DIR`.

use std::path::Path;

use super::{ExportArgs, ImportArgs};

/// Write the adapter as a PEFT directory.
pub fn export(_a: &ExportArgs, dir: &Path) -> Result<(), String> {
    Err(format!("{}: export --peft is not implemented yet", dir.display()))
}

/// Read a PEFT directory and write a GGUF adapter.
pub fn import(a: &ImportArgs) -> Result<(), String> {
    Err(format!("{}: import --peft is not implemented yet", a.peft.display()))
}
