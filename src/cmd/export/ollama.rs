//! `finetune export --ollama DIR --model BASE.gguf --lora A.gguf [--merge] [--ollama-version V]
//! [--system S]`: `DIR/Modelfile` (FROM the base + ADAPTER, Ollama < 0.34.1) and/or
//! `DIR/Modelfile.merged` with the merged model `DIR/<name>.gguf` (any version); which ones is
//! [`finetune::adapter::ollama::plan`].

use std::path::Path;

use finetune::adapter::merge::{merge, MergeType};
use finetune::adapter::ollama::{model_name, modelfile, plan, prepare, write_modelfile, ModelfileSpec, OllamaVersion};
use finetune::util::outpath;
use finetune::{Error, Result};

use super::ExportArgs;

/// Write the Modelfile(s) (and the merged model) and print one `ollama create` line per Modelfile.
pub fn export(a: &ExportArgs, dir: &Path) -> Result<()> {
    let (Some(model), Some(lora)) = (a.model.as_deref(), a.lora.as_deref()) else {
        return Err(Error::usage("--ollama needs --model BASE.gguf and --lora ADAPTER.gguf"));
    };
    let version = a.ollama_version.as_deref().map(OllamaVersion::parse).transpose()?;
    let p = prepare(model, lora)?;
    let plan = plan(&p.architecture, version, a.merge);
    let stem = lora.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = model_name(&stem);
    // Every Modelfile is built (and its inputs checked) before anything is written.
    let adapter_text = if plan.adapter {
        Some(modelfile(&ModelfileSpec { base: model, adapter: Some(lora), family: &p.family, system: a.system.as_deref() })?)
    } else {
        None
    };
    if let Some(sys) = a.system.as_deref() {
        // The merged Modelfile carries the same SYSTEM: check it now, not after merging.
        modelfile(&ModelfileSpec { base: model, adapter: None, family: &p.family, system: Some(sys) })?;
    }
    let out = dir.join(format!("{name}.gguf"));
    let inputs = [("--model", model), ("--lora", lora)];
    let force = crate::cmd::force();
    if plan.adapter {
        outpath::check_file_in_new_dir("--ollama", &dir.join("Modelfile"), &inputs, force)?;
    }
    if plan.merged {
        outpath::check_file_in_new_dir("--ollama", &out, &inputs, force)?;
        outpath::check_file_in_new_dir("--ollama", &dir.join("Modelfile.merged"), &inputs, force)?;
    }
    let mf = crate::cmd::open(model)?;
    let g = mf.gguf("export --ollama")?;
    let m = if plan.merged { Some(crate::cmd::load_model(&mf, &[lora.to_string_lossy().into_owned()])?) } else { None };
    eprintln!("prompt format: {}", p.family.name());
    let mut lines = Vec::new();
    if let Some(text) = adapter_text {
        let mf = write_modelfile(dir, "Modelfile", &text)?;
        eprintln!("wrote {} (FROM the base + ADAPTER: Ollama < 0.34.1, nothing copied)", mf.display());
        lines.push(format!("ollama create {name} -f {}", mf.display()));
    }
    if let Some(m) = m {
        eprintln!("merging the adapter ({})", plan.why);
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let t0 = std::time::Instant::now();
        let r = merge(g, &m.adapters, &out, MergeType::Auto)?;
        crate::cmd::merge::print_report(&r, t0.elapsed().as_secs_f64());
        let text = modelfile(&ModelfileSpec { base: &out, adapter: None, family: &p.family, system: a.system.as_deref() })?;
        let mf = write_modelfile(dir, "Modelfile.merged", &text)?;
        eprintln!("wrote {} and {} (FROM the merged model: any Ollama version)", out.display(), mf.display());
        lines.push(format!("ollama create {name} -f {}", mf.display()));
    } else {
        eprintln!("Ollama 0.34.1 and later reject ADAPTER: for them add --merge (or --ollama-version)");
    }
    for l in lines {
        println!("{l}");
    }
    Ok(())
}
