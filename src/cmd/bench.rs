//! `finetune bench`.

use std::path::PathBuf;

use finetune::{Error, Result};

/// Measure and print a table (with llama.cpp when a python is given).
pub fn run(model: PathBuf, n_prompt: usize, n_gen: usize, reps: usize, llama_cpp: Option<PathBuf>, threads: usize) -> Result<()> {
    if n_prompt == 0 {
        return Err(Error::usage("--n-prompt must be at least 1"));
    }
    let g = super::open(&model)?;
    let mut m = g.load()?;
    m.numerics = super::numerics();
    let ours = finetune::bench::measure(&m, n_prompt, n_gen, reps)?;
    println!("model: {} ({threads} threads, median of {reps}, {:?} numerics)", model.display(), m.numerics);
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

/// `finetune bench --train`: training tokens/s and peak RSS of this engine, and of PyTorch +
/// PEFT (`benches/peft_anchor.py`) on the same file and thread count when a python is given,
/// with the ratios. `isa` (`native` or `avx2`) caps both sides' instruction sets.
#[allow(clippy::too_many_arguments)]
pub fn run_train(
    model: PathBuf,
    seq: usize,
    reps: usize,
    keep_bytes: u64,
    matmul: &str,
    isa: &str,
    peft_python: Option<PathBuf>,
    threads: usize,
) -> Result<()> {
    let isa = finetune::bench::TrainIsa::from_name(isa).ok_or_else(|| Error::usage(format!("--isa {isa}: use native or avx2")))?;
    isa.apply()?;
    if !matmul.trim().eq_ignore_ascii_case("auto") {
        super::parse_matmul(matmul)?; // a bad value fails before the model loads
    }
    let g = super::open(&model)?;
    let m = g.load()?;
    let (matmul, why) = super::resolve_matmul(matmul, &m)?;
    if let Some(why) = why {
        eprintln!("{why}");
    }
    let ours = finetune::bench::measure_train(&m, seq, reps, keep_bytes, matmul)?;
    let mib = |b: u64| format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64);
    println!(
        "model: {} ({threads} threads, seq {seq}, LoRA r16 on q,k,v,o,gate,up,down, --matmul {}, median of {reps} steps)",
        model.display(),
        matmul.name()
    );
    println!("finetune levels: {}", finetune::bench::train_levels());
    let peft = match peft_python {
        Some(py) => {
            let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/peft_anchor.py");
            let p = finetune::bench::measure_peft(&py, &script, &model, threads, seq, reps, isa)?;
            println!("PyTorch CPU capability: {}", p.cpu_capability);
            Some(p.speed)
        }
        None => None,
    };
    println!("| engine | train tok/s | peak RSS |");
    println!("|---|---|---|");
    println!("| finetune | {:.1} | {} |", ours.tok_per_s, mib(ours.peak_rss));
    if let Some(p) = peft {
        println!("| PyTorch + PEFT (grad checkpointing) | {:.1} | {} |", p.tok_per_s, mib(p.peak_rss));
        println!("| ratio | {:.2}× | {:.2}× |", ours.tok_per_s / p.tok_per_s, ours.peak_rss as f64 / p.peak_rss.max(1) as f64);
    }
    Ok(())
}
