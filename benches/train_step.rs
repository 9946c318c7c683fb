//! One training step (forward + loss + checkpointed backward) of a 512-token sequence on
//! SmolLM2-135M Q4_1 with LoRA r16 on all seven projections, broken down by phase.
//! Run: `cargo bench --bench train_step` (env: TRAIN_BENCH_MODEL, TRAIN_BENCH_THREADS (2),
//! TRAIN_BENCH_REPS (3), TRAIN_BENCH_SEQ (512), TRAIN_BENCH_KEEP (bytes of kept block
//! intermediates; default as `finetune --keep-activations`, 0 = recompute every block),
//! TRAIN_BENCH_MATMUL (`f32` default, or `q8`: `finetune --matmul`)).
//! Peak RSS: run the binary under `/usr/bin/time -v`.
//!
//! B matrices are filled with small random values so the LoRA backward does its full work (a
//! fresh adapter has B = 0, which skips most of it). Timings are the median over reps.

use std::path::PathBuf;
use std::time::Instant;

use finetune::backend::cpu::{Cpu, Matmul};
use finetune::bench::{step_inputs, StepInputs};
use finetune::gguf::GgufModel;
use finetune::model::Model;
use finetune::prof::{self, PHASES};
use finetune::train::block::{SeqView, StepOptions, Trainable, DEFAULT_KEEP_BYTES};

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    finetune::util::alloc::keep_freed_buffers();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = std::env::var("TRAIN_BENCH_MODEL").map(PathBuf::from).unwrap_or(root.join("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    let threads: usize = env_or("TRAIN_BENCH_THREADS", 2);
    let reps: usize = env_or("TRAIN_BENCH_REPS", 3);
    let t: usize = env_or("TRAIN_BENCH_SEQ", 512);
    let keep: u64 = env_or("TRAIN_BENCH_KEEP", DEFAULT_KEEP_BYTES);
    let opts = StepOptions { dropout: None, keep_bytes: keep };
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().expect("thread pool");
    let g = GgufModel::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let model = Model::load(&g).expect("model");
    let StepInputs { lora, tokens, labels, positions } = step_inputs(&model, t);
    let mut grads = lora.zeros_like();
    let seq = SeqView { tokens: &tokens, labels: &labels, positions: &positions, segments: None };
    let mode = std::env::var("TRAIN_BENCH_MATMUL").unwrap_or_else(|_| "f32".into());
    let matmul = Matmul::from_name(&mode).unwrap_or_else(|| panic!("TRAIN_BENCH_MATMUL={mode}: use f32 or q8"));
    let tr = Trainable::on(Cpu::with_matmul(matmul), &model);

    let _ = tr.forward_backward_with(&lora, Some(&mut grads), &seq, 1.0, opts).expect("warm-up");
    prof::set_enabled(true);
    let mut per: Vec<Vec<f64>> = vec![Vec::new(); PHASES.len()];
    let mut total = Vec::new();
    for _ in 0..reps {
        prof::reset();
        let t0 = Instant::now();
        let _ = tr.forward_backward_with(&lora, Some(&mut grads), &seq, 1.0, opts).expect("step");
        total.push(t0.elapsed().as_secs_f64());
        for (i, p) in PHASES.iter().enumerate() {
            per[i].push(prof::seconds(*p));
        }
    }
    prof::set_enabled(false);
    let tot = median(total);
    println!(
        "train_step: {} seq {t}, r16 all targets, {threads} threads, keep {keep} bytes, --matmul {}, median of {reps}",
        path.display(),
        matmul.name()
    );
    let secs: Vec<f64> = per.iter().map(|v| median(v.clone())).collect();
    print!("{}", prof::table(&secs, tot, &[]));
    println!("train tok/s (one sequence fwd+bwd): {:.1}", t as f64 / tot);
}
