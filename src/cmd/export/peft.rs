//! `finetune export --peft DIR` and `finetune import --peft DIR` (the conversion itself is
//! [`finetune::adapter::peft`]).

use std::path::Path;

use finetune::adapter::gguf_lora::STORAGE_TYPES;
use finetune::adapter::peft;
use finetune::adapter::write_adapter;
use finetune::quant::GgmlType;
use finetune::util::outpath;
use finetune::{Error, Result};

use super::{ExportArgs, ImportArgs};

/// Write the adapter as a PEFT directory.
pub fn export(a: &ExportArgs, dir: &Path) -> Result<()> {
    let (Some(model_path), Some(lora)) = (&a.model, &a.lora) else {
        return Err(Error::usage("export --peft needs --model and --lora"));
    };
    let mut inputs = crate::cmd::model_inputs("--model", model_path);
    inputs.push(("--lora", lora.clone()));
    let inputs: Vec<(&str, &Path)> = inputs.iter().map(|(f, p)| (*f, p.as_path())).collect();
    for file in [peft::WEIGHTS_FILE, peft::CONFIG_FILE] {
        outpath::check_file_in_new_dir("--peft", &dir.join(file), &inputs, crate::cmd::force())?;
    }
    let g = crate::cmd::open(model_path)?;
    let model = g.load()?;
    let info = g.base_info();
    let base_name = a.base_name.clone().or(info.name).or(info.file_name).unwrap_or_else(|| "base".into());
    let s = peft::export(dir, lora, &model, &base_name)?;
    println!(
        "wrote {} and {} ({} modules, r {}, lora_alpha {}, {}; base_model_name_or_path \"{base_name}\")",
        dir.join(peft::WEIGHTS_FILE).display(),
        dir.join(peft::CONFIG_FILE).display(),
        s.modules,
        s.r,
        s.lora_alpha,
        s.dtype.name()
    );
    Ok(())
}

/// Read a PEFT directory and write a GGUF adapter.
pub fn import(a: &ImportArgs) -> Result<()> {
    let ty = GgmlType::from_name(&a.adapter_type.to_ascii_uppercase())
        .filter(|t| STORAGE_TYPES.contains(t))
        .ok_or_else(|| Error::usage(format!("--adapter-type {} is not one of F32, F16, BF16, Q8_0", a.adapter_type)))?;
    let mut inputs = crate::cmd::model_inputs("--model", &a.model);
    inputs.push(("--peft", a.peft.clone()));
    let inputs: Vec<(&str, &Path)> = inputs.iter().map(|(f, p)| (*f, p.as_path())).collect();
    outpath::check_file("--out", &a.out, &inputs, crate::cmd::force())?;
    let g = crate::cmd::open(&a.model)?;
    let model = g.load()?;
    let imp = peft::import(&a.peft, &model, g.base_info())?;
    write_adapter(&a.out, &imp.base, &imp.lora, ty)?;
    let n: usize = imp.lora.layers.iter().map(Vec::len).sum();
    let folded = if imp.folded > 0 { format!(", {} modules' scale folded into lora_b", imp.folded) } else { String::new() };
    println!("wrote {} ({n} modules, alpha {}, ranks {:?}, {ty}{folded})", a.out.display(), imp.lora.alpha, imp.lora.ranks());
    Ok(())
}
