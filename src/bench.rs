//! `finetune bench`: prompt-processing (ppN: one batch of N tokens, logits of the last) and
//! generation (tgN: N single-token steps, full logits each) speed of this engine, and of
//! llama.cpp on the same file and thread count in the same run when an anchor python is given.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

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
pub fn measure(m: &Model, n_prompt: usize, n_gen: usize, reps: usize) -> Result<Speed, String> {
    let nv = m.cfg.n_vocab as u32;
    let toks: Vec<u32> = (0..n_prompt as u32).map(|i| (i.wrapping_mul(7919) + 13) % nv.min(20000).max(1)).collect();
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
pub fn measure_llama_cpp(python: &Path, oracle: &Path, model: &Path, n_prompt: usize, n_gen: usize, threads: usize, reps: usize) -> Result<Speed, String> {
    let out = Command::new(python)
        .arg(oracle)
        .args(["bench-llama", &model.display().to_string(), &n_prompt.to_string(), &n_gen.to_string(), &threads.to_string(), &reps.to_string()])
        .output()
        .map_err(|e| format!("running {}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!("llama.cpp anchor failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("anchor output: {e}"))?;
    Ok(Speed { pp: j["pp_tps"].as_f64().unwrap_or(0.0), tg: j["tg_tps"].as_f64().unwrap_or(0.0) })
}
