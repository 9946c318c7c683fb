//! `finetune bench`: prompt-processing (ppN: one batch of N tokens, logits of the last) and
//! generation (tgN: N single-token steps, full logits each) speed of this engine, and of
//! llama.cpp on the same file and thread count in the same run when an anchor python is given.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::model::Model;

/// Tokens per second of one engine.
#[derive(Clone, Copy, Debug)]
pub struct Speed {
    /// Prompt processing.
    pub pp: f64,
    /// Generation.
    pub tg: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Measure this engine: median of `reps` runs.
pub fn measure(m: &Model, n_prompt: usize, n_gen: usize, reps: usize) -> Result<Speed> {
    let nv = m.cfg.n_vocab as u32;
    let toks: Vec<u32> = (0..n_prompt as u32).map(|i| (i.wrapping_mul(7919) + 13) % nv.clamp(1, 20000)).collect();
    let (mut pp, mut tg) = (Vec::new(), Vec::new());
    let mut warm = m.new_cache(32);
    m.forward(&toks[..16.min(n_prompt)], &mut warm)?;
    for _ in 0..reps.max(1) {
        let mut cache = m.new_cache(n_prompt + n_gen + 1);
        let t0 = Instant::now();
        let h = m.forward(&toks, &mut cache)?;
        let _ = m.logits(&h[(n_prompt - 1) * m.cfg.n_embd..]);
        pp.push(n_prompt as f64 / t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        for i in 0..n_gen {
            let h = m.forward(&[toks[i % n_prompt]], &mut cache)?;
            let _ = m.logits(&h);
        }
        tg.push(n_gen as f64 / t0.elapsed().as_secs_f64());
    }
    Ok(Speed { pp: median(pp), tg: median(tg) })
}

/// Measure llama.cpp through the oracle script (`tests/oracle/oracle.py bench-llama`).
pub fn measure_llama_cpp(
    python: &Path,
    oracle: &Path,
    model: &Path,
    n_prompt: usize,
    n_gen: usize,
    threads: usize,
    reps: usize,
) -> Result<Speed> {
    let out = Command::new(python)
        .arg(oracle)
        .args([
            "bench-llama",
            &model.display().to_string(),
            &n_prompt.to_string(),
            &n_gen.to_string(),
            &threads.to_string(),
            &reps.to_string(),
        ])
        .output()
        .map_err(|e| Error::Msg(format!("running {}: {e}", python.display())))?;
    if !out.status.success() {
        return Err(Error::Msg(format!("llama.cpp anchor failed: {}", String::from_utf8_lossy(&out.stderr))));
    }
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| Error::Msg(format!("anchor output: {e}")))?;
    Ok(Speed { pp: j["pp_tps"].as_f64().unwrap_or(0.0), tg: j["tg_tps"].as_f64().unwrap_or(0.0) })
}

/// Training speed and memory of one engine.
#[derive(Clone, Copy, Debug)]
pub struct TrainSpeed {
    /// Train tokens per second (median over the timed steps).
    pub tok_per_s: f64,
    /// Peak resident memory of the process, bytes.
    pub peak_rss: u64,
}

/// What a benchmark training step runs on: LoRA r16 (alpha 32) on all seven projections with a
/// small random B (so the LoRA backward does its full work), and one sequence of `seq` random
/// tokens trained on every next token.
pub struct StepInputs {
    /// The adapter being trained.
    pub lora: crate::lora::LoraSet,
    /// Token ids.
    pub tokens: Vec<u32>,
    /// Next-token labels (`-1` at the end).
    pub labels: Vec<i32>,
    /// Positions `0..seq`.
    pub positions: Vec<u32>,
}

/// The fixed-seed [`StepInputs`] that `finetune bench --train` and the training benches use.
pub fn step_inputs(m: &Model, seq: usize) -> StepInputs {
    use crate::lora::{SplitMix64, Target};
    let mut lora = crate::train::trainer::init_lora(m, &Target::ALL, 16, 32.0, 7);
    let mut rng = SplitMix64(11);
    for l in &mut lora.layers {
        for (_, p) in l.iter_mut() {
            p.b.iter_mut().for_each(|b| *b = ((rng.next_f64() * 2.0 - 1.0) * 0.01) as f32);
        }
    }
    let nv = m.cfg.n_vocab as u64;
    let tokens: Vec<u32> = (0..seq).map(|_| (100 + rng.next_u64() % (nv.clamp(101, 20_000) - 100)) as u32).collect();
    let labels: Vec<i32> = (0..seq).map(|i| if i + 1 < seq { tokens[i + 1] as i32 } else { -1 }).collect();
    let positions: Vec<u32> = (0..seq as u32).collect();
    StepInputs { lora, tokens, labels, positions }
}

/// Time training steps as `benches/peft_anchor.py` does: one `seq`-token sequence per step,
/// LoRA r16 (alpha 32) on all seven projections, forward + loss + backward + AdamW, `keep_bytes`
/// of kept intermediates; one warm-up step, then the median of `steps`. B starts small and
/// random so the LoRA backward does its full work.
/// `matmul`: how the frozen-weight products run (`--matmul`).
pub fn measure_train(m: &Model, seq: usize, steps: usize, keep_bytes: u64, matmul: crate::backend::cpu::Matmul) -> Result<TrainSpeed> {
    use crate::train::block::{SeqView, StepOptions, Trainable};
    use crate::train::optim::{clip_global_norm, AdamW, AdamWConfig};
    if seq < 2 {
        return Err(Error::usage("a training step needs at least 2 tokens"));
    }
    let StepInputs { mut lora, tokens, labels, positions } = step_inputs(m, seq);
    let mut grads = lora.zeros_like();
    let mut adam = AdamW::new(AdamWConfig::default(), &lora);
    let view = SeqView { tokens: &tokens, labels: &labels, positions: &positions, segments: None };
    let tr = Trainable::on(crate::backend::cpu::Cpu::with_matmul(matmul), m);
    let opts = StepOptions { dropout: None, keep_bytes };
    let mut times = Vec::new();
    for i in 0..=steps.max(1) {
        let t0 = Instant::now();
        grads.clear();
        tr.forward_backward_with(&lora, Some(&mut grads), &view, 1.0 / (seq - 1) as f32, opts)?;
        clip_global_norm(&tr.backend, &mut grads, 1.0);
        adam.update(&mut lora, &grads, 1e-4);
        if i > 0 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    Ok(TrainSpeed { tok_per_s: seq as f64 / median(times), peak_rss: crate::util::proc::peak_rss_bytes().unwrap_or(0) })
}

/// The instruction sets a training benchmark may use (`finetune bench --train --isa`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrainIsa {
    /// Whatever the CPU has (AVX-512 where present), on both sides.
    Native,
    /// AVX2 at most, on both sides: `FINETUNE_SIMD=avx2` for this engine, and PyTorch
    /// restricted the documented way ([`TrainIsa::torch_env`]), as on an AVX2-only CPU.
    Avx2,
}

impl TrainIsa {
    /// `native` or `avx2`.
    pub fn from_name(s: &str) -> Option<TrainIsa> {
        match s {
            "native" => Some(TrainIsa::Native),
            "avx2" => Some(TrainIsa::Avx2),
            _ => None,
        }
    }

    /// The environment that caps PyTorch (ATen's kernels, oneDNN, MKL) at this level.
    pub fn torch_env(self) -> &'static [(&'static str, &'static str)] {
        match self {
            TrainIsa::Native => &[],
            TrainIsa::Avx2 => &[("ATEN_CPU_CAPABILITY", "avx2"), ("DNNL_MAX_CPU_ISA", "AVX2"), ("MKL_ENABLE_INSTRUCTIONS", "AVX2")],
        }
    }

    /// Cap this engine's kernels: sets `FINETUNE_SIMD=avx2` for [`TrainIsa::Avx2`] (unless it
    /// is `scalar`). Call before any kernel runs (the levels are chosen once); errors if a
    /// level above AVX2 was already chosen.
    pub fn apply(self) -> Result<()> {
        if self == TrainIsa::Avx2 {
            if !crate::quant::Isa::Avx2.supported() {
                return Err(Error::usage("--isa avx2 needs an x86-64 CPU with AVX2, FMA and F16C"));
            }
            if std::env::var("FINETUNE_SIMD").as_deref() != Ok("scalar") {
                std::env::set_var("FINETUNE_SIMD", "avx2");
            }
            // Every AVX-512 path asks `avx512_allowed` (cached at first use): still on means
            // some kernel chose its level before the cap.
            if crate::quant::kernels::avx512_allowed() {
                return Err(Error::Msg("--isa avx2: the kernel level was chosen before the cap was set".into()));
            }
        }
        Ok(())
    }
}

/// The levels this engine's training step runs at, for the bench output: the kernel table's,
/// the int8 dots' (`--matmul q8`) and the f32 GEMMs'.
pub fn train_levels() -> String {
    let dots = match crate::quant::dot_i8::level() {
        crate::quant::dot_i8::Level::Scalar => "scalar",
        crate::quant::dot_i8::Level::Avx2 => "avx2",
        crate::quant::dot_i8::Level::Vnni => "avx512-vnni",
        crate::quant::dot_i8::Level::Neon => "neon",
        crate::quant::dot_i8::Level::NeonDot => "neon+dotprod",
    };
    #[cfg(all(target_arch = "x86_64", finetune_avx512))]
    let gemm = if crate::ops::matmul::avx512_enabled() {
        "avx512"
    } else if crate::quant::simd_enabled() {
        "simd"
    } else {
        "scalar"
    };
    #[cfg(not(all(target_arch = "x86_64", finetune_avx512)))]
    let gemm = if crate::quant::simd_enabled() { "simd" } else { "scalar" };
    let gemm = if gemm == "simd" && cfg!(target_arch = "x86_64") {
        "avx2"
    } else if gemm == "simd" {
        "neon"
    } else {
        gemm
    };
    format!("kernels {}, int8 dots {dots}, f32 GEMM {gemm}", crate::quant::isa().name())
}

/// The PyTorch + PEFT anchor's result: its speed, and the CPU capability torch reported.
#[derive(Clone, Debug)]
pub struct PeftRun {
    /// Speed and memory.
    pub speed: TrainSpeed,
    /// `torch.backends.cpu.get_cpu_capability()` in the child (e.g. `AVX2`, `AVX512`).
    pub cpu_capability: String,
}

/// Run the PyTorch + PEFT anchor (`benches/peft_anchor.py`) on the same file, with `isa`'s
/// environment; checks that torch reports the capped capability.
#[allow(clippy::too_many_arguments)]
pub fn measure_peft(
    python: &Path,
    script: &Path,
    model: &Path,
    threads: usize,
    seq: usize,
    steps: usize,
    isa: TrainIsa,
) -> Result<PeftRun> {
    let out = Command::new(python)
        .arg(script)
        .args([&model.display().to_string(), &threads.to_string(), &seq.to_string(), &steps.to_string()])
        .envs(isa.torch_env().iter().copied())
        .output()
        .map_err(|e| Error::Msg(format!("running {}: {e}", python.display())))?;
    if !out.status.success() {
        return Err(Error::Msg(format!("PEFT anchor failed: {}", String::from_utf8_lossy(&out.stderr))));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| Error::Msg(format!("PEFT anchor printed no JSON: {text}")))?;
    let j: serde_json::Value = serde_json::from_str(line).map_err(|e| Error::Msg(format!("PEFT anchor output: {e}")))?;
    let cpu_capability = j["cpu_capability"].as_str().unwrap_or("unknown").to_string();
    if isa == TrainIsa::Avx2 && cpu_capability != "AVX2" {
        return Err(Error::Msg(format!("--isa avx2: PyTorch reports CPU capability {cpu_capability}, not AVX2")));
    }
    Ok(PeftRun {
        speed: TrainSpeed { tok_per_s: j["tok_per_s"].as_f64().unwrap_or(0.0), peak_rss: j["peak_rss"].as_u64().unwrap_or(0) },
        cpu_capability,
    })
}
