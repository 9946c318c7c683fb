//! One LoRA training step (forward, chunked loss, checkpointed backward, clipping, AdamW) at
//! 7B scale, on generated Qwen2-7B-shaped models (random weights, real shapes): a Q4_K_M GGUF
//! (`finetune::model::synth::write_q4_k_m_like`) and an AWQ-GEMM 4-bit g128 Hugging Face
//! directory (`finetune::model::synth_awq::write_awq_like`). LoRA r16 on all seven projections.
//! Each (format, `--matmul` mode) runs in a child process of its own, so each peak RSS (VmHWM) is
//! that run's alone; each prints its phase breakdown (`finetune::prof`); the table gives train
//! tokens/s, peak RSS (bar: ≤ 6 GiB) and the ratio to Q4_K_M in f32, and, when a python with
//! llama-cpp-python is given, llama.cpp's ppN on the GGUF at the same thread count and each
//! Q4_K_M mode's train tok/s ÷ that.
//!
//! Run: `cargo bench --bench train_7b` with env
//! - `TRAIN7B_FORMATS`: comma-separated `q4_k_m`, `awq` (default both, in that order);
//! - `TRAIN7B_MATMUL`: comma-separated `f32`, `q8` (`finetune --matmul`; default both, for every
//!   format: q8's int8 GEMM takes AWQ's 4-bit groups as well as GGUF blocks);
//! - `TRAIN7B_MODEL`: the GGUF (default `~/.cache/finetune/qwen2-7b-shape-q4_k_m.gguf`), written
//!   first (≈ 4.7 GB, streamed tensor by tensor) when missing;
//! - `TRAIN7B_AWQ`: the AWQ directory (default `~/.cache/finetune/qwen2-7b-shape-awq`), written
//!   first (≈ 5.6 GB, streamed) when missing;
//! - `TRAIN7B_TOKENIZER`: a GGUF whose `tokenizer.*` keys the generated GGUF copies (default
//!   `models/SmolLM2-135M-Instruct.Q4_1.gguf`); `TRAIN7B_HF_TOKENIZER`: a Hugging Face directory
//!   whose `tokenizer.json` / `tokenizer_config.json` the AWQ directory copies (default
//!   `~/.cache/finetune/hf/smollm2-135m/bf16`; absent: none copied, training needs none);
//! - `TRAIN7B_SEQ` (512), `TRAIN7B_THREADS` (2), `TRAIN7B_KEEP` (bytes of kept intermediates,
//!   default as `finetune --keep-activations`);
//! - `TRAIN7B_PYTHON`: python for the llama.cpp anchor (`tests/oracle/oracle.py bench-llama`);
//!   unset: no anchor.
//!
//! The step's B matrices are small random values (a fresh adapter has B = 0, which would skip
//! most of the LoRA backward).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use finetune::backend::cpu::{Cpu, Matmul};
use finetune::bench::{step_inputs, StepInputs};
use finetune::gguf::GgufFile;
use finetune::lora::Target;
use finetune::model::synth::{write_q4_k_m_like, SynthSpec};
use finetune::model::synth_awq::{qwen2_7b_awq_dir, write_awq_like};
use finetune::model_file::ModelFile;
use finetune::prof::{self, PHASES};
use finetune::train::block::{SeqView, StepOptions, Trainable, DEFAULT_KEEP_BYTES};
use finetune::train::optim::{clip_global_norm, AdamW, AdamWConfig};
use finetune::train::plan::{human, plan};

const N_VOCAB: usize = 152_064;

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

/// Peak resident set size of this process (VmHWM), bytes (0 when unknown).
fn peak_rss() -> u64 {
    finetune::util::proc::peak_rss_bytes().unwrap_or(0)
}

fn cache() -> PathBuf {
    PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/finetune")
}

fn model_path(format: &str) -> PathBuf {
    match format {
        "q4_k_m" => std::env::var("TRAIN7B_MODEL").map(PathBuf::from).unwrap_or_else(|_| cache().join("qwen2-7b-shape-q4_k_m.gguf")),
        "awq" => std::env::var("TRAIN7B_AWQ").map(PathBuf::from).unwrap_or_else(|_| qwen2_7b_awq_dir(&cache())),
        other => panic!("TRAIN7B_FORMATS: unknown format '{other}' (q4_k_m, awq)"),
    }
}

/// Write the model of `format` at `path` unless it is there.
fn ensure(format: &str, path: &Path) {
    if path.exists() {
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).expect("model folder");
    }
    let t0 = Instant::now();
    let n = if format == "q4_k_m" {
        let tok_path =
            std::env::var("TRAIN7B_TOKENIZER").map(PathBuf::from).unwrap_or_else(|_| root.join("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
        let tok = GgufFile::open(&tok_path).unwrap_or_else(|e| panic!("{}: {e}", tok_path.display()));
        write_q4_k_m_like(&SynthSpec::qwen2_7b(), N_VOCAB, &tok, path).expect("writing the 7B-shaped GGUF")
    } else {
        let tok = std::env::var("TRAIN7B_HF_TOKENIZER").map(PathBuf::from).unwrap_or_else(|_| cache().join("hf/smollm2-135m/bf16"));
        let tok = tok.join("tokenizer.json").is_file().then_some(tok);
        if tok.is_none() {
            println!("note: no Hugging Face tokenizer found; the AWQ directory gets none (training does not need one)");
        }
        write_awq_like(&SynthSpec::qwen2_7b(), N_VOCAB, 128, tok.as_deref(), path).expect("writing the 7B-shaped AWQ directory")
    };
    println!("wrote {} ({}) in {:.0} s", path.display(), human(n), t0.elapsed().as_secs_f64());
}

/// One measured step on `format`'s model; prints `RESULT <tok/s> <peak bytes>` last.
fn child(format: &str, matmul: Matmul, t: usize, threads: usize, keep: u64) {
    let path = model_path(format);
    // Lines are tagged with the run: `[q4_k_m/q8]`.
    let tag = format!("{format}/{}", matmul.name());
    let format = tag.as_str();
    let rss_before = peak_rss();
    let mf = ModelFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let model = mf.load().expect("model");
    let c = &model.cfg;
    println!(
        "[{format}] model: {} ({} layers, n_embd {}, n_ff {}, {} heads / {} kv, vocab {})",
        path.display(),
        c.n_layer,
        c.n_embd,
        c.n_ff,
        c.n_head,
        c.n_head_kv,
        c.n_vocab
    );
    println!("[{format}] memory plan: {}", plan(&model, &Target::ALL, 16, t, t, keep));
    let StepInputs { mut lora, tokens, labels, positions } = step_inputs(&model, t);
    let mut grads = lora.zeros_like();
    let mut adam = AdamW::new(AdamWConfig::default(), &lora);
    let seq = SeqView { tokens: &tokens, labels: &labels, positions: &positions, segments: None };
    let tr = Trainable::on(Cpu::with_matmul(matmul), &model);
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
    println!(
        "[{format}] one step, seq {t}, r16 all targets, {threads} threads: {secs:.1} s, loss {:.4}, grad norm {norm:.3e}, RSS before loading {}",
        loss / n as f64,
        human(rss_before)
    );
    print!("{}", prof::table(&phases, secs, &[("clip grad norm", clip), ("AdamW", adamw)]));
    println!("RESULT {} {peak}", t as f64 / secs);
}

fn main() {
    finetune::util::alloc::keep_freed_buffers();
    let t: usize = env_or("TRAIN7B_SEQ", 512);
    let threads: usize = env_or("TRAIN7B_THREADS", 2);
    let keep: u64 = env_or("TRAIN7B_KEEP", DEFAULT_KEEP_BYTES);
    if let Ok(format) = std::env::var("TRAIN7B_CHILD") {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().expect("thread pool");
        let matmul = std::env::var("TRAIN7B_CHILD_MATMUL").ok().and_then(|m| Matmul::from_name(&m)).unwrap_or_default();
        return child(&format, matmul, t, threads, keep);
    }
    let modes: Vec<Matmul> = std::env::var("TRAIN7B_MATMUL")
        .unwrap_or_else(|_| "f32,q8".into())
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| Matmul::from_name(s).unwrap_or_else(|| panic!("TRAIN7B_MATMUL: unknown mode '{s}' (f32, q8)")))
        .collect();
    let formats: Vec<String> = std::env::var("TRAIN7B_FORMATS")
        .unwrap_or_else(|_| "q4_k_m,awq".into())
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    for f in &formats {
        ensure(f, &model_path(f));
    }
    let exe = std::env::current_exe().expect("own executable");
    let mut rows: Vec<(String, Matmul, f64, u64)> = Vec::new();
    let runs = formats.iter().flat_map(|f| modes.iter().map(move |&m| (f, m)));
    for (f, m) in runs {
        let out = Command::new(&exe)
            .env("TRAIN7B_CHILD", f)
            .env("TRAIN7B_CHILD_MATMUL", m.name())
            .stderr(Stdio::inherit())
            .output()
            .expect("start the child step");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut result = None;
        for line in text.lines() {
            match line.strip_prefix("RESULT ") {
                Some(r) => result = r.split_once(' ').and_then(|(a, b)| Some((a.parse::<f64>().ok()?, b.parse::<u64>().ok()?))),
                None => println!("{line}"),
            }
        }
        let (tps, peak) = result.unwrap_or_else(|| panic!("[{f}/{}] the step failed ({})", m.name(), out.status));
        rows.push((f.clone(), m, tps, peak));
    }
    let base = rows.iter().find(|r| r.0 == "q4_k_m" && r.1 == Matmul::F32).map(|r| r.2);
    println!("one training step, Qwen2-7B shapes, seq {t}, r16 on all seven projections, {threads} threads, one process per run");
    println!("| format | --matmul | train tok/s | peak RSS | ≤ 6 GiB | tok/s ÷ Q4_K_M f32 |");
    println!("|---|---|---:|---:|---|---:|");
    for (f, m, tps, peak) in &rows {
        let ratio = base.map_or("–".into(), |b| format!("{:.2}×", tps / b));
        let ok = if *peak <= 6u64 << 30 { "yes" } else { "EXCEEDS" };
        println!("| {f} | {} | {tps:.2} | {} | {ok} | {ratio} |", m.name(), human(*peak));
    }
    let ggml: Vec<_> = rows.iter().filter(|r| r.0 == "q4_k_m").collect();
    if let (Ok(py), false) = (std::env::var("TRAIN7B_PYTHON"), ggml.is_empty()) {
        let oracle = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/oracle.py");
        match finetune::bench::measure_llama_cpp(py.as_ref(), &oracle, &model_path("q4_k_m"), t, 0, threads, 1) {
            Ok(s) => {
                println!("llama.cpp pp{t} on the GGUF (inference): {:.2} tok/s", s.pp);
                for (_, m, tps, _) in ggml {
                    println!("Q4_K_M --matmul {} train tok/s ÷ llama.cpp pp{t}: {:.3} (bar 0.33)", m.name(), tps / s.pp);
                }
            }
            Err(e) => println!("llama.cpp anchor failed: {e}"),
        }
    }
}
