//! `finetune export --merge-adapters A.gguf B.gguf[:SCALE] … --out AB.gguf`.

use finetune::adapter::combine::{combine_files, Input};
use finetune::quant::GgmlType;
use finetune::{Error, Result};

use super::ExportArgs;

/// Combine the adapters into one file.
pub fn run(a: &ExportArgs) -> Result<()> {
    let out = a.out.as_deref().ok_or_else(|| Error::usage("--merge-adapters needs --out COMBINED.gguf"))?;
    let ty = GgmlType::from_name(&a.adapter_type.to_ascii_uppercase())
        .filter(|t| finetune::adapter::gguf_lora::STORAGE_TYPES.contains(t))
        .ok_or_else(|| Error::usage(format!("--adapter-type {} is not one of F32, F16, BF16, Q8_0", a.adapter_type)))?;
    for spec in &a.merge_adapters {
        crate::cmd::checks::lora_spec(spec)?;
    }
    let inputs: Vec<Input> = a.merge_adapters.iter().map(|s| Input::parse(s)).collect();
    let mut given: Vec<(&str, &std::path::Path)> = inputs.iter().map(|i| ("--merge-adapters", i.path.as_path())).collect();
    if let Some(m) = a.model.as_deref() {
        given.push(("--model", m));
    }
    finetune::util::outpath::check_file("--out", out, &given, crate::cmd::force())?;
    let r = combine_files(&inputs, a.model.as_deref(), out, ty)?;
    for (i, f) in inputs.iter().zip(&r.inputs) {
        let pairs: usize = f.set.layers.iter().map(Vec::len).sum();
        eprintln!("{} × {}: {pairs} adapted weights, alpha {}", i.path.display(), i.scale, f.set.alpha);
    }
    let ranks: std::collections::BTreeSet<usize> = r.set.layers.iter().flatten().map(|(_, p)| p.r).collect();
    eprintln!(
        "combined: {} adapted weights, rank {}, alpha {} ({ty}); load it with scale 1",
        r.weights,
        ranks.iter().map(usize::to_string).collect::<Vec<_>>().join("/"),
        r.set.alpha
    );
    println!("{}", out.display());
    Ok(())
}
