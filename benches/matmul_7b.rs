//! The frozen-weight training matmuls at Qwen2-7B shapes on random Q4_K weights: the forward
//! `y = x·Wᵀ` (`ops::matmul::matmul`) and the input backward `dx = dy·W`
//! (`ops::matmul::matmul_backward_input`, f32) beside its integer-dot twin
//! (`ops::matmul_q8_bwd::matmul_backward_input_q8`, "q8": the level in use, and "q8 avx2": its
//! AVX2 kernel where the CPU has more, per CPU-second), GFLOP(-equivalent)/s on 1 and 2 threads;
//! "q8/f32 cpu" is the ratio per CPU-second.
//! `FINETUNE_SIMD=avx2` runs the f32 AVX2 micro-kernel where the CPU has AVX-512 (A/B in one
//! binary).
//!
//! A second table times the forward three ways: f32 `matmul`, llama.cpp's inference kernels
//! (`ops::matmul_q8::matmul_q8`, "llama") and the integer GEMM (`ops::matmul_q8_fwd::matmul_q8_fwd_at`
//! at the level in use, "i8"; it ignores `MIN_TOKENS`, so short inputs can be measured).
//!
//! Run: `cargo bench --bench matmul_7b` with env `MATMUL7B_SEQ` (tokens, default `128,512`),
//! `MATMUL7B_THREADS` (default `1,2`), `MATMUL7B_REPS` (best of, default 2), `MATMUL7B_PARTS`
//! (`bwd,fwd` by default: which tables).

use std::time::Instant;

use finetune::ops::matmul::{matmul, matmul_backward_input, QMatrix};
use finetune::ops::matmul_q8::matmul_q8;
use finetune::ops::matmul_q8_bwd::{matmul_backward_input_q8, matmul_backward_input_q8_at};
use finetune::ops::matmul_q8_fwd::matmul_q8_fwd_at;
use finetune::quant::dot_i8::Level;
use finetune::quant::GgmlType;
use finetune::util::rng::SplitMix64;

fn list(k: &str, d: &str) -> Vec<usize> {
    std::env::var(k).unwrap_or_else(|_| d.into()).split(',').map(|s| s.trim().parse().expect("a number")).collect()
}

/// Random Q4_K blocks (144 bytes: f16 d, f16 dmin, 12 scale bytes, 128 nibble bytes) with
/// small finite scales.
fn random_q4k(n_out: usize, n_in: usize, rng: &mut SplitMix64) -> Vec<u8> {
    let mut b = vec![0u8; n_out * n_in / 256 * 144];
    for blk in b.chunks_exact_mut(144) {
        for c in blk.chunks_mut(8) {
            let v = rng.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
        blk[..4].copy_from_slice(&[0x19, 0x14, 0x19, 0x10]); // d ≈ 1.0e-3, dmin ≈ 5.1e-4
    }
    b
}

/// CPU seconds this process has used (all threads).
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Best wall seconds and best CPU seconds over `reps` runs.
fn best(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    (0..reps).fold((f64::INFINITY, f64::INFINITY), |(w, c), _| {
        let (t0, c0) = (Instant::now(), cpu_seconds());
        f();
        (w.min(t0.elapsed().as_secs_f64()), c.min(cpu_seconds() - c0))
    })
}

fn main() {
    let seqs = list("MATMUL7B_SEQ", "128,512");
    let threads = list("MATMUL7B_THREADS", "1,2");
    let reps = list("MATMUL7B_REPS", "2")[0];
    let parts = std::env::var("MATMUL7B_PARTS").unwrap_or_else(|_| "bwd,fwd".into());
    let mut rng = SplitMix64::new(7);
    // (name, n_out, n_in): attn_q/o, ffn_gate/up, ffn_down of Qwen2-7B.
    let shapes = [("attn_q", 3584usize, 3584usize), ("ffn_up", 18944, 3584), ("ffn_down", 3584, 18944)];
    println!("GFLOP/s by wall time, and per CPU-second (all threads; less sensitive to a shared machine)");
    if parts.contains("fwd") {
        forward(&shapes, &seqs, &threads, reps, &mut SplitMix64::new(8));
    }
    if !parts.contains("bwd") {
        return;
    }
    let avx2 = Level::Avx2.supported() && finetune::quant::dot_i8::level() != Level::Avx2;
    println!("q8 level: {:?}", finetune::quant::dot_i8::level());
    println!("shape      n_out  n_in     T thr   fwd wall  fwd cpu   bwd wall  bwd cpu    q8 wall   q8 cpu  q8/f32 cpu  q8avx2 cpu");
    for &(name, n_out, n_in) in &shapes {
        let wb = random_q4k(n_out, n_in, &mut rng);
        let w = QMatrix { ty: GgmlType::Q4_K, n_in, n_out, data: &wb };
        for &t in &seqs {
            let x: Vec<f32> = (0..t * n_in).map(|_| (rng.next_f64() - 0.5) as f32).collect();
            let dy: Vec<f32> = (0..t * n_out).map(|_| (rng.next_f64() - 0.5) as f32).collect();
            let mut y = vec![0f32; t * n_out];
            let mut dx = vec![0f32; t * n_in];
            let flop = 2.0 * (t * n_in * n_out) as f64;
            for &th in &threads {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(th).build().expect("thread pool");
                let (fw, fc) = pool.install(|| best(reps, || matmul(&w, &x, &mut y)));
                let (bw, bc) = pool.install(|| best(reps, || matmul_backward_input(&w, &dy, &mut dx)));
                let (qw, qc) = pool.install(|| best(reps, || matmul_backward_input_q8(&w, &dy, &mut dx, false)));
                let a2 = if avx2 {
                    pool.install(|| best(reps, || matmul_backward_input_q8_at(Level::Avx2, &w, &dy, &mut dx, false))).1
                } else {
                    f64::NAN
                };
                let g = |s: f64| flop / s / 1e9;
                println!(
                    "{name:<9} {n_out:>6} {n_in:>6} {t:>4} {th:>3}   {:>8.1} {:>8.1}   {:>8.1} {:>8.1}   {:>8.1} {:>8.1}  {:>9.2}×  {:>8.1}",
                    g(fw),
                    g(fc),
                    g(bw),
                    g(bc),
                    g(qw),
                    g(qc),
                    bc / qc,
                    g(a2)
                );
            }
        }
    }
}

/// The forward table: f32, llama.cpp's kernels, the integer GEMM; GFLOP per wall and CPU second.
fn forward(shapes: &[(&str, usize, usize)], seqs: &[usize], threads: &[usize], reps: usize, rng: &mut SplitMix64) {
    let level = finetune::quant::dot_i8::level();
    println!("forward y = x·Wᵀ, i8 level {level:?}");
    println!("shape      n_out  n_in     T thr   f32 wall  f32 cpu  llama wall llama cpu   i8 wall   i8 cpu  i8/f32 i8/llama (cpu)");
    for &(name, n_out, n_in) in shapes {
        let wb = random_q4k(n_out, n_in, rng);
        let w = QMatrix { ty: GgmlType::Q4_K, n_in, n_out, data: &wb };
        for &t in seqs {
            let x: Vec<f32> = (0..t * n_in).map(|_| (rng.next_f64() - 0.5) as f32).collect();
            let mut y = vec![0f32; t * n_out];
            let flop = 2.0 * (t * n_in * n_out) as f64;
            for &th in threads {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(th).build().expect("thread pool");
                let (fw, fc) = pool.install(|| best(reps, || matmul(&w, &x, &mut y)));
                let (lw, lc) = pool.install(|| best(reps, || matmul_q8(&w, &x, &mut y)));
                let (iw, ic) = pool.install(|| best(reps, || matmul_q8_fwd_at(level, &w, &x, &mut y)));
                let g = |s: f64| flop / s / 1e9;
                println!(
                    "{name:<9} {n_out:>6} {n_in:>6} {t:>4} {th:>3}   {:>8.1} {:>8.1}   {:>8.1} {:>8.1}  {:>8.1} {:>8.1}  {:>5.2}×  {:>5.2}×",
                    g(fw),
                    g(fc),
                    g(lw),
                    g(lc),
                    g(iw),
                    g(ic),
                    fc / ic,
                    lc / ic
                );
            }
        }
    }
}
