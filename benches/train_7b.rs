//! One LoRA training step (forward, chunked loss, checkpointed backward, clipping, AdamW) at
//! 7B scale: a generated Qwen2-7B-shaped Q4_K_M file (random weights, real shapes and types,
//! see `finetune::model::synth::write_q4_k_m_like`), LoRA r16 on all seven projections. Reports
//! train tokens/s, its phase breakdown (`finetune::prof`), the peak RSS of this process (bar: ≤ 6 GiB) beside the planner's estimate,
//! and llama.cpp's ppN on the same file and thread count when a python with llama-cpp-python is
//! given.
//!
//! Run: `cargo bench --bench train_7b` with env
//! - `TRAIN7B_MODEL`: the file (default `~/.cache/finetune/qwen2-7b-shape-q4_k_m.gguf`); written
//!   first (≈ 4.5 GB, streamed tensor by tensor) when missing;
//! - `TRAIN7B_TOKENIZER`: a GGUF whose `tokenizer.*` keys the generated file copies (default
//!   `models/SmolLM2-135M-Instruct.Q4_1.gguf`);
//! - `TRAIN7B_SEQ` (512), `TRAIN7B_THREADS` (2), `TRAIN7B_KEEP` (bytes of kept intermediates,
//!   default as `finetune --keep-activations`);
//! - `TRAIN7B_PYTHON`: python for the llama.cpp anchor (`tests/oracle/oracle.py bench-llama`);
//!   unset: no anchor.
//!
//! The step's B matrices are small random values (a fresh adapter has B = 0, which would skip
//! most of the LoRA backward).

use std::path::PathBuf;
use std::time::Instant;

use finetune::bench::{step_inputs, StepInputs};
use finetune::gguf::{GgufFile, GgufModel};
use finetune::lora::Target;
use finetune::model::synth::{write_q4_k_m_like, SynthSpec};
use finetune::model::Model;
use finetune::prof::{self, PHASES};
use finetune::train::block::{SeqView, StepOptions, Trainable, DEFAULT_KEEP_BYTES};
use finetune::train::optim::{clip_global_norm, AdamW, AdamWConfig};
use finetune::train::plan::{human, plan};

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

/// Peak resident set size of this process (VmHWM), bytes (0 when unknown).
fn peak_rss() -> u64 {
    finetune::util::proc::peak_rss_bytes().unwrap_or(0)
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let home = PathBuf::from(std::env::var("HOME").expect("HOME"));
    let path =
        std::env::var("TRAIN7B_MODEL").map(PathBuf::from).unwrap_or_else(|_| home.join(".cache/finetune/qwen2-7b-shape-q4_k_m.gguf"));
    let t: usize = env_or("TRAIN7B_SEQ", 512);
    let threads: usize = env_or("TRAIN7B_THREADS", 2);
    let keep: u64 = env_or("TRAIN7B_KEEP", DEFAULT_KEEP_BYTES);
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().expect("thread pool");

    if !path.exists() {
        let tok_path =
            std::env::var("TRAIN7B_TOKENIZER").map(PathBuf::from).unwrap_or_else(|_| root.join("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
        let tok = GgufFile::open(&tok_path).unwrap_or_else(|e| panic!("{}: {e}", tok_path.display()));
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).expect("model directory");
        }
        let t0 = Instant::now();
        let n = write_q4_k_m_like(&SynthSpec::qwen2_7b(), 152_064, &tok, &path).expect("writing the 7B-shaped model");
        println!("wrote {} ({}) in {:.0} s", path.display(), human(n), t0.elapsed().as_secs_f64());
    }
    let rss_before = peak_rss();
    let g = GgufModel::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let model = Model::load(&g).expect("model");
    let c = &model.cfg;
    println!(
        "model: {} ({} layers, n_embd {}, n_ff {}, {} heads / {} kv, vocab {})",
        path.display(),
        c.n_layer,
        c.n_embd,
        c.n_ff,
        c.n_head,
        c.n_head_kv,
        c.n_vocab
    );
    let estimate = plan(&model, &Target::ALL, 16, t, t, keep);
    println!("memory plan: {estimate}");

    let StepInputs { mut lora, tokens, labels, positions } = step_inputs(&model, t);
    let mut grads = lora.zeros_like();
    let mut adam = AdamW::new(AdamWConfig::default(), &lora);
    let seq = SeqView { tokens: &tokens, labels: &labels, positions: &positions, segments: None };
    let tr = Trainable::new(&model);

    prof::set_enabled(true);
    prof::reset();
    let t0 = Instant::now();
    let opts = StepOptions { dropout: None, keep_bytes: keep };
    let (loss, n) = tr.forward_backward_with(&lora, Some(&mut grads), &seq, 1.0 / (t - 1) as f32, opts).expect("training step");
    let t_clip = Instant::now();
    let norm = clip_global_norm(&tr.backend, &mut grads, 1.0);
    let clip = t_clip.elapsed().as_secs_f64();
    let t_adam = Instant::now();
    adam.update(&mut lora, &grads, 2e-4);
    let adamw = t_adam.elapsed().as_secs_f64();
    let secs = t0.elapsed().as_secs_f64();
    prof::set_enabled(false);
    let phases: Vec<f64> = PHASES.iter().map(|&p| prof::seconds(p)).collect();
    let peak = peak_rss();
    assert!(loss.is_finite() && norm.is_finite(), "loss {loss}, grad norm {norm}");
    println!("one step, seq {t}, r16 all targets, {threads} threads: {secs:.1} s, loss {:.4}, grad norm {norm:.3e}", loss / n as f64);
    print!("{}", prof::table(&phases, secs, &[("clip grad norm", clip), ("AdamW", adamw)]));
    println!("| engine | train tok/s (seq {t}) | pp{t} tok/s | peak RSS |");
    println!("|---|---:|---:|---:|");
    println!("| finetune | {:.2} | | {} (before loading: {}) |", t as f64 / secs, human(peak), human(rss_before));
    if let Ok(py) = std::env::var("TRAIN7B_PYTHON") {
        let oracle = root.join("tests/oracle/oracle.py");
        match finetune::bench::measure_llama_cpp(py.as_ref(), &oracle, &path, t, 0, threads, 1) {
            Ok(s) => {
                println!("| llama.cpp (inference) | | {:.2} | |", s.pp);
                println!("train tok/s / llama.cpp pp{t}: {:.3}", t as f64 / secs / s.pp);
            }
            Err(e) => println!("llama.cpp anchor failed: {e}"),
        }
    }
    let limit = 6u64 << 30;
    println!("peak RSS {} the 6 GiB bar", if peak <= limit { "is within" } else { "EXCEEDS" });
}
