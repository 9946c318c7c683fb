//! Our GGUF LoRA adapters loaded by real llama.cpp (llama-cpp-python, in a subprocess): for
//! several storage types, ranks, target subsets and alpha ≠ r, llama.cpp-with-adapter logits
//! match our engine-with-adapter as closely as the base logits match (the forward test's
//! bounds), and the adapter changes llama.cpp's output (so a silently ignored adapter fails).
//! Also two stacked adapters with their own scales, and read-back of each file by our reader.
mod common;

use common::lora::random_lora;
use std::path::Path;

use common::{gemma, oracle, read_f32, smollm, tmpdir};
use finetune::adapter::{read_adapter, write_adapter, BaseInfo};
use finetune::gguf::GgufModel;
use finetune::lora::Target;
use finetune::model::Model;
use finetune::quant::GgmlType;
use finetune::tokenizer::Tokenizer;

const TEXT: &str = "The quick brown fox jumps over the lazy dog. Then it ran into the forest, where an old owl \
                    asked it three questions about the moon, the river and the stars. The fox thought for a long \
                    time before it answered, because foxes, unlike owls, do not like to be wrong. In the end it said \
                    that the moon is a lamp, the river is a road and the stars are the eyes of everyone who ever lived.";

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln() + max;
    row.iter().map(|&v| v as f64 - lse).collect()
}

fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) }).0
}

/// (argmax agreement fraction, max KL, mean KL) of `b` (reference) vs `a`.
fn compare(a: &[f32], b: &[f32], nv: usize) -> (f64, f64, f64) {
    let n = a.len() / nv;
    let (mut same, mut max_kl, mut sum_kl) = (0usize, 0f64, 0f64);
    for p in 0..n {
        let (ra, rb) = (&a[p * nv..(p + 1) * nv], &b[p * nv..(p + 1) * nv]);
        same += usize::from(argmax(ra) == argmax(rb));
        let (la, lb) = (log_softmax(ra), log_softmax(rb));
        let kl: f64 = (0..nv).map(|j| lb[j].exp() * (lb[j] - la[j])).sum();
        max_kl = max_kl.max(kl);
        sum_kl += kl;
    }
    (same as f64 / n as f64, max_kl, sum_kl / n as f64)
}

fn llama_logits(model: &Path, ids: &[u32], adapters: &[(&Path, f32)], dir: &Path, tag: &str) -> Vec<f32> {
    let ids_path = dir.join(format!("{tag}.ids.json"));
    std::fs::write(&ids_path, serde_json::to_string(ids).unwrap()).unwrap();
    let out = dir.join(format!("{tag}.f32"));
    let mut args: Vec<String> = vec![
        if adapters.is_empty() { "llama-logits-ids" } else { "llama-logits-lora" }.into(),
        model.to_str().unwrap().into(),
        ids_path.to_str().unwrap().into(),
        out.to_str().unwrap().into(),
    ];
    for (p, s) in adapters {
        args.push(format!("{}:{s}", p.display()));
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let res = oracle(&argv);
    if !adapters.is_empty() {
        assert_eq!(res["adapters"].as_u64().unwrap() as usize, adapters.len());
    }
    read_f32(&out)
}

fn ours(m: &Model, ids: &[u32]) -> Vec<f32> {
    let mut cache = m.new_cache(ids.len() + 4);
    let h = m.forward(ids, &mut cache).unwrap();
    m.logits(&h)
}

struct Case {
    name: &'static str,
    targets: Vec<Target>,
    rank: usize,
    alpha: f32,
    ty: GgmlType,
    b_scale: f32,
}

fn check_model(model_path: &Path, cases: &[Case]) {
    let dir = tmpdir(&format!("adapter-llama-{}", model_path.file_stem().unwrap().to_string_lossy()));
    let g = GgufModel::open(model_path).unwrap();
    let tok = Tokenizer::from_gguf(g.main()).unwrap();
    let ids = tok.encode(TEXT, true, false);
    let base_model = Model::load(&g).unwrap();
    let nv = base_model.cfg.n_vocab;
    let base_theirs = llama_logits(model_path, &ids, &[], &dir, "base");
    let base = compare(&ours(&base_model, &ids), &base_theirs, nv);
    println!("base: argmax {:.3}, KL max {:.4} mean {:.5}", base.0, base.1, base.2);
    let mut written = Vec::new();
    for (ci, c) in cases.iter().enumerate() {
        let lora = random_lora(&base_model, &c.targets, c.rank, c.alpha, c.b_scale, 100 + ci as u64);
        let path = dir.join(format!("{}.gguf", c.name));
        write_adapter(&path, &BaseInfo::from_gguf(g.main()), &lora, c.ty).unwrap();
        let mut m = Model::load(&g).unwrap();
        let back = read_adapter(&path, &m).unwrap();
        if c.ty == GgmlType::F32 {
            assert_eq!(back, lora, "{}: F32 adapter does not read back identically", c.name);
        }
        m.adapters.push((back, 1.0));
        let theirs = llama_logits(model_path, &ids, &[(&path, 1.0)], &dir, c.name);
        let (agree, max_kl, mean_kl) = compare(&ours(&m, &ids), &theirs, nv);
        let effect = compare(&base_theirs, &theirs, nv);
        println!(
            "{}: ours vs llama.cpp argmax {agree:.3}, KL max {max_kl:.4} mean {mean_kl:.5}; adapter effect in llama.cpp: KL(adapted‖base) mean {:.4}, argmax {:.3}",
            c.name, effect.2, effect.0
        );
        assert!(
            effect.2 > 0.1 && effect.2 > 10.0 * mean_kl,
            "{}: the adapter barely changes llama.cpp's output (mean KL {} vs our mismatch {mean_kl})",
            c.name,
            effect.2
        );
        // Same bounds as the base model's agreement (tests/forward.rs), slightly widened because
        // a random adapter makes the distributions more sensitive to llama.cpp's Q8 activations;
        // and the excess mismatch over the base's must be a small fraction of the adapter's
        // effect (a wrong scale or orientation would make it comparable to the effect).
        assert!(agree >= 0.9, "{}: argmax agreement {agree}", c.name);
        assert!(max_kl < 0.15 && mean_kl < 0.02, "{}: KL max {max_kl} mean {mean_kl}", c.name);
        assert!(mean_kl - base.2 < 0.05 * effect.2, "{}: mismatch grows with the adapter", c.name);
        written.push(path);
    }
    // Two adapters stacked with their own scales.
    if written.len() >= 2 {
        let mut m = Model::load(&g).unwrap();
        let (s0, s1) = (0.5f32, 1.5f32);
        m.adapters.push((read_adapter(&written[0], &m).unwrap(), s0));
        let last = &written[written.len() - 1];
        m.adapters.push((read_adapter(last, &m).unwrap(), s1));
        let theirs = llama_logits(model_path, &ids, &[(&written[0], s0), (last, s1)], &dir, "stacked");
        let (agree, max_kl, mean_kl) = compare(&ours(&m, &ids), &theirs, nv);
        let effect = compare(&base_theirs, &theirs, nv);
        println!(
            "stacked ×{s0} + ×{s1}: argmax {agree:.3}, KL max {max_kl:.4} mean {mean_kl:.5}; effect in llama.cpp: KL mean {:.4}",
            effect.2
        );
        // The mean bounds as for one adapter: a wrong scale or a dropped adapter would make the
        // excess mismatch comparable to the stack's effect. The ×1.5 adapter sharpens some
        // distributions, so a single token's KL sits further from llama.cpp's Q8 activations
        // than with one adapter: measured 0.236 on an AVX2-only Zen 4 (llama.cpp's AVX2 kernels;
        // < 0.15 with its AVX-512 ones) while the mean stayed 0.011, hence the bound 0.3.
        assert!(agree >= 0.9 && mean_kl < 0.02, "stacked adapters differ from llama.cpp");
        assert!(mean_kl - base.2 < 0.05 * effect.2, "stacked: mismatch grows with the adapters");
        assert!(max_kl < 0.3, "stacked adapters: one token's KL {max_kl}");
    }
}

#[test]
fn smollm2_adapters_load_in_llama_cpp_and_match() {
    use Target::*;
    check_model(
        &smollm(),
        &[
            Case { name: "f32-r8-all", targets: Target::ALL.to_vec(), rank: 8, alpha: 16.0, ty: GgmlType::F32, b_scale: 0.15 },
            Case { name: "f16-r1-qv", targets: vec![Q, V], rank: 1, alpha: 4.0, ty: GgmlType::F16, b_scale: 1.0 },
            Case { name: "q8_0-r64-mlp", targets: vec![Gate, Up, Down], rank: 64, alpha: 32.0, ty: GgmlType::Q8_0, b_scale: 0.25 },
            Case { name: "bf16-r16-o", targets: vec![O, K], rank: 16, alpha: 8.0, ty: GgmlType::BF16, b_scale: 0.8 },
        ],
    );
}

#[test]
fn gemma3_adapters_load_in_llama_cpp_and_match() {
    check_model(
        &gemma(),
        &[
            Case { name: "f32-r8-all", targets: Target::ALL.to_vec(), rank: 8, alpha: 16.0, ty: GgmlType::F32, b_scale: 0.02 },
            Case {
                name: "f16-r32-attn",
                targets: vec![Target::Q, Target::K, Target::V, Target::O],
                rank: 32,
                alpha: 64.0,
                ty: GgmlType::F16,
                b_scale: 0.03,
            },
        ],
    );
}
