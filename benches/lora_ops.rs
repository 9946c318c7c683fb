//! The LoRA products of one SmolLM2-135M layer on the CPU backend, timed apart from the rest of
//! the training step: for each of the seven targets (q, k, v, o, gate, up, down) the forward
//! (`lora_forward`: `lora_down` + `lora_up_add`) and the backward (`lora_backward` with `dx`).
//! Run: `cargo bench --bench lora_ops` (env: LORA_BENCH_THREADS (2), LORA_BENCH_REPS (20),
//! LORA_BENCH_SEQ (512), LORA_BENCH_RANK (16)). Prints the minimum and median time of a layer's
//! forward and backward, and a hash of every output's bits (the same hash before and after a
//! change means the same results on these shapes). Under `valgrind --tool=callgrind` use few reps.

use std::time::Instant;

use finetune::backend::cpu::{Cpu, Matmul};
use finetune::backend::{Backend, TrainBackend};
use finetune::lora::LoraPair;

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

/// Deterministic values in [-0.5, 0.5).
fn fill(seed: &mut u64, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

/// FNV-1a over the bits of `v`, folded into `h`.
fn hash(h: &mut u64, v: &[f32]) {
    for x in v {
        for b in x.to_bits().to_le_bytes() {
            *h = (*h ^ b as u64).wrapping_mul(0x100000001b3);
        }
    }
}

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2])
}

fn main() {
    let threads: usize = env_or("LORA_BENCH_THREADS", 2);
    let reps: usize = env_or("LORA_BENCH_REPS", 20);
    let t: usize = env_or("LORA_BENCH_SEQ", 512);
    let r: usize = env_or("LORA_BENCH_RANK", 16);
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().expect("thread pool");
    let cpu = Cpu::with_matmul(Matmul::F32);
    // (n_in, n_out) of q, k, v, o, gate, up, down.
    let shapes = [(576, 576), (576, 192), (576, 192), (576, 576), (576, 1536), (576, 1536), (1536, 576)];
    let mut seed = 7u64;
    let pairs: Vec<LoraPair> = shapes
        .iter()
        .map(|&(n_in, n_out)| LoraPair { n_in, n_out, r, a: fill(&mut seed, r * n_in), b: fill(&mut seed, n_out * r) })
        .collect();
    let xs: Vec<Vec<f32>> = shapes.iter().map(|&(n_in, _)| fill(&mut seed, t * n_in)).collect();
    let dys: Vec<Vec<f32>> = shapes.iter().map(|&(_, n_out)| fill(&mut seed, t * n_out)).collect();
    let s = 2.0f32;
    let (mut fwd, mut bwd) = (Vec::new(), Vec::new());
    // The parts: down alone, up_add alone, backward without dx.
    let (mut downs, mut ups, mut bwd_nodx) = (Vec::new(), Vec::new(), Vec::new());
    let mut h = 0xcbf29ce484222325u64;
    for rep in 0..reps + 1 {
        let mut ys: Vec<Vec<f32>> = dys.iter().map(|d| d.iter().map(|v| 0.25 * v).collect()).collect();
        let t0 = Instant::now();
        let us: Vec<Vec<f32>> = pairs.iter().zip(&xs).zip(&mut ys).map(|((p, x), y)| cpu.lora_forward(p, x, s, y)).collect();
        let t1 = Instant::now();
        let mut grads: Vec<LoraPair> = pairs
            .iter()
            .map(|p| LoraPair { n_in: p.n_in, n_out: p.n_out, r, a: vec![0.0; r * p.n_in], b: vec![0.0; p.n_out * r] })
            .collect();
        let mut dxs: Vec<Vec<f32>> = xs.iter().map(|x| x.iter().map(|v| 0.5 * v).collect()).collect();
        let t2 = Instant::now();
        for i in 0..pairs.len() {
            cpu.lora_backward(&pairs[i], &xs[i], &us[i], &dys[i], s, &mut grads[i], Some(&mut dxs[i]));
        }
        let t3 = Instant::now();
        if rep == 0 {
            // Warm-up; its outputs are the ones hashed (every rep computes the same).
            for i in 0..pairs.len() {
                hash(&mut h, &us[i]);
                hash(&mut h, &ys[i]);
                hash(&mut h, &grads[i].a);
                hash(&mut h, &grads[i].b);
                hash(&mut h, &dxs[i]);
            }
            continue;
        }
        fwd.push((t1 - t0).as_secs_f64() * 1e3);
        bwd.push((t3 - t2).as_secs_f64() * 1e3);
        let t4 = Instant::now();
        let us2: Vec<Vec<f32>> = pairs.iter().zip(&xs).map(|(p, x)| cpu.lora_down(p, x)).collect();
        let t5 = Instant::now();
        for i in 0..pairs.len() {
            cpu.lora_up_add(&pairs[i], &us2[i], s, &mut ys[i]);
        }
        let t6 = Instant::now();
        for i in 0..pairs.len() {
            cpu.lora_backward(&pairs[i], &xs[i], &us[i], &dys[i], s, &mut grads[i], None);
        }
        let t7 = Instant::now();
        downs.push((t5 - t4).as_secs_f64() * 1e3);
        ups.push((t6 - t5).as_secs_f64() * 1e3);
        bwd_nodx.push((t7 - t6).as_secs_f64() * 1e3);
    }
    let ((fmin, fmed), (bmin, bmed)) = (stats(fwd), stats(bwd));
    println!("lora_ops: one SmolLM2-135M layer (7 targets), T {t}, r {r}, {threads} threads, {reps} reps");
    println!("forward  (lora_forward): min {fmin:.3} ms, median {fmed:.3} ms");
    println!("backward (with dx):       min {bmin:.3} ms, median {bmed:.3} ms");
    let ((dmin, _), (umin, _), (nmin, _)) = (stats(downs), stats(ups), stats(bwd_nodx));
    println!("parts (min): down {dmin:.3} ms, up_add {umin:.3} ms, backward without dx {nmin:.3} ms");
    println!("output bits hash: {h:016x}");
}
