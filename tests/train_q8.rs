//! `--matmul q8`: the training forward's `x·Wᵀ` on 8-bit integer dots (`ops::matmul_q8_fwd`:
//! llama.cpp's kernels below 32 tokens, the int8 GEMM above), the input backward `dY·W` too
//! (`ops::matmul_q8_bwd`), straight-through. Measured on the real SmolLM2 file against the f32
//! mode: each projection is the integer kernels' product bit for bit, the loss, LoRA gradients
//! and a short training run stay close to f32's.
mod common;

use common::lora::random_lora;
use finetune::backend::cpu::{Cpu, CpuGgml, Matmul};
use finetune::backend::Backend;
use finetune::gguf::GgufModel;
use finetune::lora::{LoraSet, Target};
use finetune::model::Model;
use finetune::ops::matmul_q8_fwd::matmul_q8_fwd;
use finetune::train::block::{SeqView, Trainable};

const TEXT: &str = "The plural of ox is oxen, says the samurai. Stay calm, stop walking, and ask someone nearby \
    for directions. Solve a few puzzles every day and review the games you lose. There are sixty seconds in a minute.";

fn tokens(g: &GgufModel) -> Vec<u32> {
    let tok = finetune::tokenizer::Tokenizer::from_gguf(g.main()).unwrap();
    tok.encode(TEXT, false, false)
}

fn flat(l: &LoraSet) -> Vec<f32> {
    l.layers.iter().flatten().flat_map(|(_, p)| p.a.iter().chain(&p.b).copied()).collect()
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(&x, &y)| ((x - y) as f64).powi(2)).sum();
    let n: f64 = b.iter().map(|&y| (y as f64).powi(2)).sum();
    (d / n).sqrt()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// Every frozen projection (the seven of a block, on real activations, and the output) in q8
/// mode is the 8-bit integer GEMM's product (`ops::matmul_q8_fwd`, itself checked against f64 and
/// f32 in tests/matmul_q8_fwd.rs) bit for bit at 45 tokens, `CpuGgml`'s (llama.cpp's kernels)
/// below `MIN_TOKENS` (16 tokens), and not the f32 product.
#[test]
fn q8_products_are_the_integer_kernels_bit_for_bit() {
    let g = GgufModel::open(common::smollm()).unwrap();
    let m = Model::load(&g).unwrap();
    let ids = tokens(&g);
    assert!(ids.len() >= 32, "enough tokens for the int8 GEMM ({})", ids.len());
    let (q8, ggml, f32m) = (Cpu::with_matmul(Matmul::Q8), CpuGgml::default(), Cpu::default());
    let e = m.cfg.n_embd;
    let x = m.embed_on(&f32m, &ids).unwrap();
    let mut xn = vec![0f32; x.len()];
    f32m.rms_norm(&x, &mut xn, e, m.cfg.eps, Some(&m.layers[0].attn_norm));
    let mut rng = common::rng::Rng(5);
    let mut checked = 0;
    for il in [0, m.cfg.n_layer - 1] {
        for t in Target::ALL {
            let w = m.weight(il, t);
            assert!(w.as_ggml().is_some(), "{t:?}: SmolLM2's weights are ggml blocks");
            let input: Vec<f32> = if w.n_in() == e { xn.clone() } else { (0..ids.len() * w.n_in()).map(|_| rng.normal()).collect() };
            let run = |b: &dyn Fn(&Vec<f32>, &mut Vec<f32>)| {
                let mut y = vec![0f32; ids.len() * w.n_out()];
                b(&input, &mut y);
                y
            };
            let a = run(&|x, y| q8.matmul(w, x, y));
            let b = run(&|x, y| matmul_q8_fwd(w, x, y));
            let c = run(&|x, y| f32m.matmul(w, x, y));
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "layer {il} {t:?}: q8 mode != matmul_q8_fwd");
            // Few tokens: llama.cpp's kernels, CpuGgml's bits.
            let few = &input[..16 * w.n_in()];
            let (mut s1, mut s2) = (vec![0f32; 16 * w.n_out()], vec![0f32; 16 * w.n_out()]);
            q8.matmul(w, &few.to_vec(), &mut s1);
            ggml.matmul(w, &few.to_vec(), &mut s2);
            assert!(s1.iter().zip(&s2).all(|(x, y)| x.to_bits() == y.to_bits()), "layer {il} {t:?}, 16 tokens: q8 mode != CpuGgml");
            let r = rel_l2(&a, &c);
            eprintln!("layer {il} {t:?} ({:?}): q8 vs f32 rel L2 {r:.2e}", w.as_ggml().unwrap().ty);
            assert!(r > 0.0 && r < 0.05, "layer {il} {t:?}: q8 vs f32 rel L2 {r:e}");
            checked += 1;
        }
    }
    // q, k, v together give the same bits as one by one.
    let ws: Vec<_> = [Target::Q, Target::K, Target::V].map(|t| m.weight(0, t)).to_vec();
    let mut ys: Vec<Vec<f32>> = ws.iter().map(|w| vec![0f32; ids.len() * w.n_out()]).collect();
    q8.matmul_many(&ws, &xn, &mut ys.iter_mut().collect::<Vec<_>>());
    for (w, y) in ws.iter().zip(&ys) {
        let mut one = vec![0f32; y.len()];
        q8.matmul(*w, &xn, &mut one);
        assert!(y.iter().zip(&one).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
    let out = &*m.output;
    let mut a = vec![0f32; ids.len() * out.n_out()];
    let mut b = a.clone();
    q8.matmul(out, &xn, &mut a);
    matmul_q8_fwd(out, &xn, &mut b);
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "output projection");
    assert_eq!(checked, 14);
}

/// Whole-model logits (no adapter): q8 mode's products are 8-bit integer dots (the int8 GEMM at
/// 45 tokens: weights re-quantized to 8 bits too) and it keeps f32 attention, rope and
/// activations (CpuGgml rounds q/K/V and the probabilities to f16 and uses ggml's exp/SiLU/rope
/// orders), so the logits are not ggml's bits. Measured (45 tokens, max |logit| 32.1): max |Δ|
/// q8–ggml 2.17, f32–ggml 1.15, q8–f32 1.76; rel L2 q8–ggml 4.73e-2, f32–ggml 3.35e-2.
#[test]
fn q8_mode_logits_against_ggml_and_f32() {
    let g = GgufModel::open(common::smollm()).unwrap();
    let m = Model::load(&g).unwrap();
    let ids = tokens(&g);
    let logits = |b: &dyn Fn(&mut finetune::model::kv_cache::KvCache) -> Vec<f32>| {
        let mut cache = m.new_cache(ids.len());
        b(&mut cache)
    };
    let q8 = Cpu::with_matmul(Matmul::Q8);
    let lq = logits(&|c| m.logits_on(&q8, &m.forward_on(&q8, &ids, c).unwrap()));
    let lg = logits(&|c| m.logits_on(&CpuGgml::default(), &m.forward_on(&CpuGgml::default(), &ids, c).unwrap()));
    let lf = logits(&|c| m.logits_on(&Cpu::default(), &m.forward_on(&Cpu::default(), &ids, c).unwrap()));
    let (q_g, f_g, q_f) = (max_abs_diff(&lq, &lg), max_abs_diff(&lf, &lg), max_abs_diff(&lq, &lf));
    let scale = lg.iter().fold(0f32, |a, &b| a.max(b.abs()));
    eprintln!(
        "max |Δ logit| over {} tokens (max |logit| {scale:.1}): q8 vs ggml {q_g:.4}, f32 vs ggml {f_g:.4}, q8 vs f32 {q_f:.4}; rel L2 q8/ggml {:.2e} f32/ggml {:.2e}",
        ids.len(),
        rel_l2(&lq, &lg),
        rel_l2(&lf, &lg)
    );
    assert!(q_g > 0.0, "f32 attention differs from ggml's f16 one: the logits cannot be equal");
    assert!(rel_l2(&lq, &lg) < 0.07 && rel_l2(&lf, &lg) < 0.05, "rel L2 from ggml's logits");
    assert!(q_f > 0.0 && q_g < 0.1 * scale && q_f < 0.1 * scale);
}

/// One batch, q8 vs f32 mode: loss and LoRA gradients close (bounds from the measured figures).
#[test]
fn q8_loss_and_gradients_close_to_f32() {
    let g = GgufModel::open(common::smollm()).unwrap();
    let m = Model::load(&g).unwrap();
    let ids = tokens(&g);
    let n = ids.len();
    let labels: Vec<i32> = (0..n).map(|i| if i + 1 < n { ids[i + 1] as i32 } else { -1 }).collect();
    let positions: Vec<u32> = (0..n as u32).collect();
    let seq = SeqView { tokens: &ids, labels: &labels, positions: &positions, segments: None };
    let lora = random_lora(&m, &Target::ALL, 8, 16.0, 0.02, 3);
    let step = |mm: Matmul| {
        let tr = Trainable::on(Cpu::with_matmul(mm), &m);
        let mut g = lora.zeros_like();
        let (l, c) = tr.forward_backward(&lora, Some(&mut g), &seq, 1.0 / (n - 1) as f32).unwrap();
        (l / c as f64, g)
    };
    let (lf, gf) = step(Matmul::F32);
    let (lq, gq) = step(Matmul::Q8);
    let (ff, fq) = (flat(&gf), flat(&gq));
    let r = rel_l2(&fq, &ff);
    let cos = ff.iter().zip(&fq).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>()
        / (ff.iter().map(|&a| (a as f64).powi(2)).sum::<f64>() * fq.iter().map(|&a| (a as f64).powi(2)).sum::<f64>()).sqrt();
    eprintln!("{n} tokens: loss f32 {lf:.6} q8 {lq:.6} |Δ| {:.2e}; LoRA gradient rel L2 {r:.3e}, cosine {cos:.6}", (lf - lq).abs());
    for t in Target::ALL {
        let pick = |l: &LoraSet| -> Vec<f32> {
            l.layers.iter().flatten().filter(|(tt, _)| *tt == t).flat_map(|(_, p)| p.a.iter().chain(&p.b).copied()).collect()
        };
        eprintln!("  {:>4}: rel L2 {:.3e}", t.short(), rel_l2(&pick(&gq), &pick(&gf)));
    }
    assert!(ff.iter().any(|&v| v != 0.0));
    assert!(lq != lf, "q8 mode must change the numbers (else it did not take the Q8 path)");
    assert!((lf - lq).abs() < Q8_LOSS_BOUND, "loss |Δ| {:e}", (lf - lq).abs());
    assert!(r < Q8_GRAD_BOUND && cos > 0.985, "LoRA gradient rel L2 {r:e}, cosine {cos}");
}

/// Bounds of the one-batch comparison (45 tokens, r8 on all seven targets). Measured with the
/// int8 GEMM forward and the integer `dY·W`: loss |Δ| 3.01e-2 (4.5772 vs 4.6073), gradient rel
/// L2 1.19e-1 (cosine 0.9933), each target 8.4e-2..1.46e-1. Larger than one product's error
/// (≈ 8e-3): the 8-bit rounding of x, W and dY in 210 products compounds through 30 blocks (the
/// logits move 4.7e-2 rel L2 from ggml's, whose own distance from f32 is 3.4e-2). The kernels
/// are deterministic and bit-identical across ISAs, so the figures are fixed; the bounds leave
/// ~1.35× (gradient) and 2× (loss) room, and a broken path (8-bit not taken, or a wrong product)
/// fails them.
const Q8_LOSS_BOUND: f64 = 6e-2;
const Q8_GRAD_BOUND: f64 = 0.16;

/// The same 20-step run (same data, init, seed) in both modes: the loss curves stay together.
#[test]
fn q8_training_run_tracks_f32() {
    use finetune::train::data::{DataOptions, Dataset};
    use finetune::train::optim::{AdamWConfig, Schedule};
    use finetune::train::trainer::{train, TrainOptions};
    let dir = common::tmpdir("train-q8-run");
    let g = GgufModel::open(common::smollm()).unwrap();
    let m = Model::load(&g).unwrap();
    let tok = finetune::tokenizer::Tokenizer::from_gguf(g.main()).unwrap();
    // The samurai examples as plain text, 24 records.
    let src = std::fs::read_to_string(common::root().join("examples/style_degozaru.jsonl")).unwrap();
    let lines: String = src
        .lines()
        .take(24)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let text = format!("{} {}", v["prompt"].as_str().unwrap(), v["response"].as_str().unwrap());
            format!("{}\n", serde_json::json!({ "text": text }))
        })
        .collect();
    let data_path = dir.join("d.jsonl");
    std::fs::write(&data_path, lines).unwrap();
    let data = Dataset::load(&data_path, None, &tok, None, &DataOptions { seq_len: 48, ..DataOptions::default() }).unwrap();
    let opts = |matmul: Matmul, ck: &str| TrainOptions {
        rank: 8,
        alpha: 16.0,
        rslora: false,
        dropout: 0.0,
        keep_bytes: 0,
        targets: Target::ALL.to_vec(),
        lr: 1e-3,
        schedule: Schedule::parse("constant").unwrap(),
        warmup: 0,
        adam: AdamWConfig::default(),
        grad_accum: 2,
        max_grad_norm: 1.0,
        epochs: 1.0,
        steps: Some(20),
        seed: 1,
        eval_every: 0,
        save_every: 0,
        keep_checkpoints: 1,
        checkpoint_dir: dir.join(ck),
        log: None,
        progress: false,
        max_rss: None,
        matmul,
    };
    let f = train(&m, &data, &opts(Matmul::F32, "f"), None, None).unwrap();
    let q = train(&m, &data, &opts(Matmul::Q8, "q"), None, None).unwrap();
    let losses = |r: &finetune::train::trainer::TrainResult| r.history.iter().map(|h| h.loss).collect::<Vec<_>>();
    let (lf, lq) = (losses(&f), losses(&q));
    assert_eq!((lf.len(), lq.len()), (20, 20));
    let tail = |l: &[f64]| l[15..].iter().sum::<f64>() / 5.0;
    let max_step = lf.iter().zip(&lq).map(|(a, b)| (a - b).abs()).fold(0f64, f64::max);
    let rel_adapter = rel_l2(&flat(&q.lora), &flat(&f.lora));
    eprintln!(
        "20 steps: first loss f32 {:.4} q8 {:.4}; last-5 mean f32 {:.4} q8 {:.4}; max per-step |Δ| {max_step:.4}; adapter rel L2 {rel_adapter:.3e}",
        lf[0],
        lq[0],
        tail(&lf),
        tail(&lq)
    );
    eprintln!("f32: {lf:.3?}\nq8:  {lq:.3?}");
    // Training works in both modes: the loss falls well below its start.
    assert!(tail(&lf) < lf[0] - 0.5 && tail(&lq) < lq[0] - 0.5);
    assert!((tail(&lf) - tail(&lq)).abs() < Q8_RUN_BOUND, "final losses {} vs {}", tail(&lf), tail(&lq));
    assert!(max_step < Q8_STEP_BOUND, "per-step losses apart by {max_step}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Bounds of the 20-step run (lr 1e-3, r8, 2 sequences of ≤ 48 tokens per step). Measured:
/// last-5-step mean loss f32 0.8162, q8 0.7989 (|Δ| 0.017); largest per-step |Δ| 0.047 (the
/// first step, 3.582 vs 3.550); both fall from ≈3.57.
const Q8_RUN_BOUND: f64 = 0.05;
const Q8_STEP_BOUND: f64 = 0.1;

/// The CLI: `--matmul q8` trains and writes an adapter; a bad value is a clear usage error.
#[test]
fn cli_matmul_flag() {
    let dir = common::tmpdir("train-q8-cli");
    let data = dir.join("d.jsonl");
    std::fs::write(&data, "{\"text\":\"The quick brown fox jumps over the lazy dog.\"}\n".repeat(4)).unwrap();
    let run_with = |mode: Option<&str>, out: &str| {
        let mut c = std::process::Command::new(common::bin());
        c.args(["--model", common::smollm().to_str().unwrap(), "--data", data.to_str().unwrap(), "--steps", "2"])
            .args(["--seq-len", "32", "--rank", "2", "--threads", "2", "--out"])
            .arg(dir.join(out));
        if let Some(mode) = mode {
            c.args(["--quiet", "--matmul", mode]);
        }
        c.output().unwrap()
    };
    let run = |mode: &str, out: &str| run_with(Some(mode), out);
    let bad = run("int4", "bad.gguf");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("--matmul int4") && err.contains("f32 or q8"), "{err}");
    assert!(!dir.join("bad.gguf").exists());
    let ok = run("q8", "q8.gguf");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(std::fs::metadata(dir.join("q8.gguf")).unwrap().len() > 0);
    // The default (`auto`) on a 135M model says why it keeps f32, and trains exactly as --matmul f32.
    let auto = run_with(None, "auto.gguf");
    let err = String::from_utf8_lossy(&auto.stderr);
    assert!(auto.status.success() && err.contains("--matmul auto: f32 (0.") && err.contains("< 1 B"), "{err}");
    assert!(run("f32", "f32.gguf").status.success());
    let tensors = |f: &str| {
        let g = finetune::gguf::GgufFile::open(dir.join(f)).unwrap();
        g.tensors.iter().map(|t| (t.name.clone(), g.view(t).data.to_vec())).collect::<Vec<_>>()
    };
    let (a, b, q) = (tensors("auto.gguf"), tensors("f32.gguf"), tensors("q8.gguf"));
    assert!(!a.is_empty() && a == b, "--matmul auto on SmolLM2 must train exactly as f32");
    assert_ne!(a, q, "q8 and f32 adapters must differ (else the flag did nothing)");
    std::fs::remove_dir_all(&dir).ok();
}
