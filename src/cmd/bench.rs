//! `finetune bench`.

use std::path::PathBuf;

use finetune::model::Model;

/// Measure and print a table (with llama.cpp when a python is given).
pub fn run(model: PathBuf, n_prompt: usize, n_gen: usize, reps: usize, llama_cpp: Option<PathBuf>, threads: usize) -> Result<(), String> {
    if n_prompt == 0 {
        return Err("--n-prompt must be at least 1".into());
    }
    let g = super::open(&model)?;
    let mut m = Model::load(&g).map_err(|e| e.to_string())?;
    m.numerics = finetune::model::Numerics::inference_default();
    let ours = finetune::bench::measure(&m, n_prompt, n_gen, reps)?;
    println!("model: {} ({threads} threads, median of {reps})", model.display());
    println!("| engine | pp{n_prompt} t/s | tg{n_gen} t/s |");
    println!("|---|---|---|");
    println!("| finetune | {:.1} | {:.1} |", ours.pp, ours.tg);
    if let Some(py) = llama_cpp {
        let oracle = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/oracle.py");
        let l = finetune::bench::measure_llama_cpp(&py, &oracle, &model, n_prompt, n_gen, threads, reps)?;
        println!("| llama.cpp | {:.1} | {:.1} |", l.pp, l.tg);
        println!("| ratio | {:.2}× | {:.2}× |", ours.pp / l.pp, ours.tg / l.tg);
    }
    Ok(())
}
