//! `finetune export --lmstudio [DIR] --model BASE.gguf --lora A.gguf [--name N] [--publisher P] [--force]`:
//! LM Studio has no LoRA support, so the adapter is merged (`--type auto`) and the model file is
//! placed where LM Studio looks for models, `DIR/<publisher>/<name>/<name>.gguf`.

use std::path::PathBuf;

use finetune::adapter::merge::{merge_with, MergeType};
use finetune::gguf::{GgufWriter, Value};
use finetune::{Error, Result};

use super::ExportArgs;

/// LM Studio's models folder: `~/.lmstudio/models`.
fn default_root() -> Result<PathBuf> {
    match std::env::var_os("HOME") {
        Some(h) if !h.is_empty() => Ok(PathBuf::from(h).join(".lmstudio").join("models")),
        _ => Err(Error::usage("--lmstudio without DIR needs $HOME (LM Studio's models are in ~/.lmstudio/models); give DIR")),
    }
}

/// A name usable as one path component.
fn check_component(what: &str, s: &str) -> Result<()> {
    if s.is_empty() || s == "." || s == ".." || s.contains(['/', '\\']) {
        return Err(Error::usage(format!("{what} {s:?} cannot be a folder name")));
    }
    Ok(())
}

/// Merge and write the model file; print its path and the `lms import` line.
pub fn export(a: &ExportArgs, dir: Option<PathBuf>) -> Result<()> {
    let (Some(model), Some(lora)) = (a.model.as_deref(), a.lora.as_deref()) else {
        return Err(Error::usage("--lmstudio needs --model BASE.gguf and --lora ADAPTER.gguf"));
    };
    let root = match dir {
        Some(d) => d,
        None => default_root()?,
    };
    let name = match &a.name {
        Some(n) => n.clone(),
        None => lora.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
    };
    check_component("--name", &name)?;
    check_component("--publisher", &a.publisher)?;
    let folder = root.join(&a.publisher).join(&name);
    let out = folder.join(format!("{name}.gguf"));
    let inputs = [("--model", model), ("--lora", lora)];
    finetune::util::outpath::check_file_in_new_dir("--lmstudio", &out, &inputs, crate::cmd::force())?;
    // Read and check the inputs before creating anything.
    let mf = crate::cmd::open(model)?;
    let g = mf.gguf("export --lmstudio")?;
    let m = crate::cmd::load_model(&mf, &[lora.to_string_lossy().into_owned()])?;
    std::fs::create_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
    let mut w = GgufWriter::new();
    for (k, v) in &g.main().metadata {
        if !k.starts_with("split.") {
            w.set(k.clone(), v.clone());
        }
    }
    w.set("general.name", Value::String(name.clone()));
    let t0 = std::time::Instant::now();
    let r = merge_with(g, &m.adapters, &out, MergeType::Auto, w)?;
    crate::cmd::merge::print_report(&r, t0.elapsed().as_secs_f64());
    eprintln!("wrote {}", out.display());
    println!("lms import {}", out.display());
    Ok(())
}
