//! `finetune inspect`.

use std::path::PathBuf;

use finetune::{inspect, Error, Result};

/// Print the summary (text or JSON), or export one tensor to .npy.
pub fn run(model: PathBuf, json: bool, tensors: bool, tensor: Option<String>, out: Option<PathBuf>) -> Result<()> {
    if let Some(out) = &out {
        let inputs = super::model_inputs("model", &model);
        let inputs: Vec<(&str, &std::path::Path)> = inputs.iter().map(|(f, p)| (*f, p.as_path())).collect();
        finetune::util::outpath::check_file("--out", out, &inputs, super::force())?;
    }
    let m = match super::open(&model)? {
        super::ModelFile::Gguf(g) => g,
        super::ModelFile::Hf(h) => {
            if tensor.is_some() || out.is_some() {
                return Err(Error::usage("inspect --tensor/--out export GGUF tensors only; this is a Hugging Face directory"));
            }
            let mut j = inspect::summarize_hf(&h)?;
            let st = h.tensors();
            let list = || st.names().filter_map(|n| st.get(n));
            if json {
                if tensors {
                    j["tensors"] = list().map(|t| serde_json::json!({"name": t.name, "dtype": t.dtype.name(), "shape": t.shape})).collect();
                }
                println!("{}", serde_json::to_string_pretty(&j).map_err(|e| Error::Msg(format!("JSON: {e}")))?);
            } else {
                print!("{}", inspect::hf_text(&j));
                if tensors {
                    println!("tensors:");
                    for t in list() {
                        println!("  {:<56} {:<5} {:?}", t.name, t.dtype.name(), t.shape);
                    }
                }
            }
            return Ok(());
        }
    };
    if let (Some(name), Some(out)) = (tensor, out) {
        inspect::export_tensor_npy(&m, &name, &out)?;
        let info = m.require(&name)?.info;
        eprintln!("wrote {} ({} {:?} -> f32 {:?})", out.display(), info.ty, info.dims, info.torch_shape());
        return Ok(());
    }
    let s = inspect::summarize(&model, &m);
    if json {
        let mut j = s.to_json();
        if tensors {
            j["tensors"] = m
                .tensor_infos()
                .map(|t| serde_json::json!({"name": t.name, "type": t.ty.name(), "ne": t.dims, "offset": t.offset}))
                .collect();
        }
        println!("{}", serde_json::to_string_pretty(&j).map_err(|e| Error::Msg(format!("JSON: {e}")))?);
    } else {
        print!("{}", s.to_text());
        if tensors {
            println!("tensors:");
            for t in m.tensor_infos() {
                println!("  {:<40} {:<7} {:?} @ {}", t.name, t.ty.name(), t.dims, t.offset);
            }
        }
    }
    Ok(())
}
