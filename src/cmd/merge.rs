//! `finetune merge`.

use std::path::PathBuf;

use finetune::adapter::merge::{merge, MergeType};
use finetune::Result;

/// Merge the adapters into the model and write `out`.
pub fn run(model: PathBuf, lora: Vec<String>, out: PathBuf, ty: String) -> Result<()> {
    let ty = MergeType::parse(&ty)?;
    let g = super::open(&model)?;
    let m = super::load_model(&g, &lora)?;
    let t0 = std::time::Instant::now();
    let r = merge(&g, &m.adapters, &out, ty)?;
    eprintln!("merged {} weights, copied {} tensors unchanged, in {:.1} s", r.merged, r.copied, t0.elapsed().as_secs_f64());
    let kept = r.retained();
    eprintln!("the merged weights carry {:.1}% of the adapters' update", 100.0 * kept);
    if kept < 0.9 {
        eprintln!(
            "warning: requantizing lost {:.0}% of the update (it is smaller than the quantization step of the weights' type); \
             merge with --type Q8_0 or F16 to keep it",
            100.0 * (1.0 - kept)
        );
    }
    println!("{}", out.display());
    Ok(())
}
