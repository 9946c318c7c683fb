//! `finetune merge`.

use std::path::PathBuf;

use finetune::adapter::merge::{merge, MergeReport, MergeType};
use finetune::Result;

/// Merge the adapters into the model and write `out`.
pub fn run(model: PathBuf, lora: Vec<String>, out: PathBuf, ty: String) -> Result<()> {
    let ty = MergeType::parse(&ty)?;
    let mut inputs = super::model_inputs("--model", &model);
    inputs.extend(lora.iter().map(|l| ("--lora", super::lora_spec(l).0.to_path_buf())));
    let inputs: Vec<(&str, &std::path::Path)> = inputs.iter().map(|(f, p)| (*f, p.as_path())).collect();
    finetune::util::outpath::check_file("--out", &out, &inputs, super::force())?;
    let mf = super::open(&model)?;
    let g = mf.gguf("merge")?;
    let m = super::load_model(&mf, &lora)?;
    let t0 = std::time::Instant::now();
    let r = merge(g, &m.adapters, &out, ty)?;
    print_report(&r, t0.elapsed().as_secs_f64());
    println!("{}", out.display());
    Ok(())
}

/// The merge report on stderr: counts, type changes, retained update, size cost.
pub fn print_report(r: &MergeReport, secs: f64) {
    eprintln!("merged {} weights, copied {} tensors unchanged, in {secs:.1} s", r.merged, r.copied);
    if r.type_changes.is_empty() {
        eprintln!("every merged weight kept its type");
    } else {
        let changes: Vec<String> = r.type_changes.iter().map(|(f, t, n)| format!("{n} {f}→{t}")).collect();
        eprintln!("weights that changed type: {}", changes.join(", "));
    }
    let kept = r.retained();
    eprintln!("the merged weights carry {:.1}% of the adapters' update", 100.0 * kept);
    let mb = |b: u64| b as f64 / 1e6;
    eprintln!(
        "size: {:.1} MB of tensors vs {:.1} MB in the base ({:+.1}%)",
        mb(r.out_bytes),
        mb(r.base_bytes),
        100.0 * (r.out_bytes as f64 / r.base_bytes.max(1) as f64 - 1.0)
    );
    if kept < 0.9 {
        eprintln!(
            "warning: requantizing lost {:.0}% of the update (it is smaller than the quantization step of the weights' type); \
             merge with --type auto (the default), Q8_0 or F16 to keep it",
            100.0 * (1.0 - kept)
        );
    }
}
