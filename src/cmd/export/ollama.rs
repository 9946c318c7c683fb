//! `finetune export --ollama DIR --model BASE.gguf --lora A.gguf [--system S]`.

use std::path::Path;

use finetune::adapter::ollama::{export as write_modelfile, model_name, ollama_engine_arch};
use finetune::{Error, Result};

use super::ExportArgs;

/// Write DIR/Modelfile and print the `ollama create` command line.
pub fn export(a: &ExportArgs, dir: &Path) -> Result<()> {
    let (Some(model), Some(lora)) = (a.model.as_deref(), a.lora.as_deref()) else {
        return Err(Error::usage("--ollama needs --model BASE.gguf and --lora ADAPTER.gguf"));
    };
    let inputs = [("--model", model), ("--lora", lora)];
    finetune::util::outpath::check_file_in_new_dir("--ollama", &dir.join("Modelfile"), &inputs, crate::cmd::force())?;
    let r = write_modelfile(dir, model, lora, a.system.as_deref())?;
    eprintln!("prompt format: {}", r.family.name());
    if ollama_engine_arch(&r.architecture) {
        eprintln!(
            "warning: Ollama runs '{}' models on its own engine, which does not apply LoRA adapters yet \
             (`ollama create` works, loading fails with \"loras are not yet implemented\"); \
             merge the adapter instead: finetune merge --model {} --lora {} --out merged.gguf",
            r.architecture,
            model.display(),
            lora.display()
        );
    }
    let stem = lora.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    println!("ollama create {} -f {}", model_name(&stem), r.modelfile.display());
    Ok(())
}
