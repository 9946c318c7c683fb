//! Llama 3.1-style (llama3 rope scaling), Qwen2, Qwen3 and Gemma 3 Hugging Face directories
//! against transformers and PEFT.
//!
//! Fixtures: tiny random models built and saved by transformers itself
//! (`tests/oracle/hf_arch_fixture.py`, made once into the cache; SmolLM2's tokenizer), shaped to
//! reach what differs between the architectures (see the script). For each: our f32 logits on
//! 96 tokens vs `AutoModelForCausalLM` on the same directory (max |Δ log-prob|, argmax,
//! perplexity), and the LoRA gradients on all seven projections vs PEFT (rel L2).
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{python, read_f32, root, tmpdir};
use finetune::model::{Arch, Model, Numerics};
use finetune::model_file::ModelFile;
use finetune::train::block::{SeqView, Trainable};

/// The fixture root (made by tests/oracle/hf_arch_fixture.py when missing, with the tokenizer
/// files of tests/hf_dir.rs's SmolLM2 directory).
fn fixture() -> PathBuf {
    static ONCE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    let out = common::cache_dir().join("hf/tiny-archs");
    if !out.join(".stamp-v2").exists() {
        let tokdir = common::hf_smollm_dirs().join("f32");
        let o = Command::new(python()).arg(root().join("tests/oracle/hf_arch_fixture.py")).arg(tokdir).arg(&out).output().unwrap();
        assert!(o.status.success(), "hf_arch_fixture.py failed:\n{}", String::from_utf8_lossy(&o.stderr));
    }
    out
}

const ARCHS: [(&str, Arch); 4] = [("llama3", Arch::Llama), ("qwen2", Arch::Qwen2), ("qwen3", Arch::Qwen3), ("gemma3", Arch::Gemma3)];

fn run_py(script: &str, arg: &Path) -> serde_json::Value {
    let o = Command::new(python()).arg(root().join("tests/oracle").join(script)).arg(arg).output().unwrap();
    assert!(o.status.success(), "{script} failed:\n{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{script} printed non-JSON ({e})"))
}

/// 96 token ids of real text (the tokenizer is SmolLM2's, the vocabulary the same size).
fn sample_ids(mf: &ModelFile) -> Vec<u32> {
    let text = std::fs::read_to_string(root().join("examples/style_degozaru.jsonl")).unwrap();
    let mut ids = mf.tokenizer().unwrap().encode(&text, true, false);
    ids.truncate(96);
    assert_eq!(ids.len(), 96);
    ids
}

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let mx = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let lse = mx + row.iter().map(|&x| (x as f64 - mx).exp()).sum::<f64>().ln();
    row.iter().map(|&x| x as f64 - lse).collect()
}

fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) }).0
}

/// The model of `mf` with f32 numerics (what training uses and what transformers computes).
fn load<'a>(mf: &'a ModelFile, arch: Arch) -> Model<'a> {
    let mut m = mf.load().unwrap();
    m.numerics = Numerics::F32;
    assert_eq!(m.cfg.arch, arch);
    m
}

#[test]
fn forward_matches_transformers() {
    let dir = tmpdir("hf-archs-fwd");
    for (name, arch) in ARCHS {
        let hf = fixture().join(name);
        let mf = ModelFile::open(&hf).unwrap_or_else(|e| panic!("{}: {e}", hf.display()));
        let m = load(&mf, arch);
        let ids = sample_ids(&mf);
        let v = m.cfg.n_vocab;
        let mut cache = m.new_cache(ids.len());
        let h = m.forward(&ids, &mut cache).unwrap();
        let ours = m.logits(&h);
        let case = serde_json::json!({"dir": hf, "ids": ids, "out": dir});
        std::fs::write(dir.join("case.json"), serde_json::to_vec(&case).unwrap()).unwrap();
        let theirs = run_py("hf_oracle.py", &dir.join("case.json"));
        assert_eq!(theirs["dtype"], serde_json::json!(["torch.float32"]));
        let reference = read_f32(&dir.join("logits.f32"));
        assert_eq!(ours.len(), reference.len());
        let (mut max_lp, mut same, mut nll_o, mut nll_r, mut spread) = (0f64, 0usize, 0f64, 0f64, 0f32);
        for t in 0..ids.len() {
            let (a, b) = (&ours[t * v..(t + 1) * v], &reference[t * v..(t + 1) * v]);
            let (la, lb) = (log_softmax(a), log_softmax(b));
            max_lp = la.iter().zip(&lb).map(|(x, y)| (x - y).abs()).fold(max_lp, f64::max);
            same += usize::from(argmax(a) == argmax(b));
            spread = spread.max(b.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) - b.iter().fold(f32::INFINITY, |m, &x| m.min(x)));
            if t + 1 < ids.len() {
                nll_o -= la[ids[t + 1] as usize];
                nll_r -= lb[ids[t + 1] as usize];
            }
        }
        let n = (ids.len() - 1) as f64;
        let (p_o, p_r) = ((nll_o / n).exp(), (nll_r / n).exp());
        let prel = (p_o - p_r).abs() / p_r;
        println!(
            "{name}: {} tokens, logit spread {spread:.1}, max |Δ log-prob| {max_lp:.2e}, same argmax {same}/{}, ppl {p_o:.3} vs {p_r:.3} (rel {prel:.1e})",
            ids.len(),
            ids.len()
        );
        assert!(spread > 5.0, "{name}: the fixture's logits are near-uniform ({spread}); the comparison would be weak");
        assert!(max_lp < 1e-3 && same == ids.len() && prel < 1e-4, "{name}: max |Δ log-prob| {max_lp}, argmax {same}, ppl rel {prel}");
    }
}

fn rel_l2(ours: &[f32], theirs: &[f32]) -> f64 {
    let d: f64 = ours.iter().zip(theirs).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
    let n: f64 = theirs.iter().map(|&b| (b as f64).powi(2)).sum();
    (d / n).sqrt()
}

#[test]
fn lora_gradients_match_peft() {
    for (name, arch) in ARCHS {
        let dir = tmpdir(&format!("hf-archs-peft-{name}"));
        let hf = fixture().join(name);
        let mf = ModelFile::open(&hf).unwrap_or_else(|e| panic!("{}: {e}", hf.display()));
        let model = load(&mf, arch);
        let c = &model.cfg;
        let ids = sample_ids(&mf);
        let tokens = ids[..64].to_vec();
        let labels: Vec<i32> = (0..64).map(|t| if t % 3 == 0 { -1 } else { ids[t + 1] as i32 }).collect();
        let positions: Vec<u32> = (0..64).collect();
        let (rank, alpha) = (4usize, 8.0f32);
        let (lora, tensors) = common::lora::peft_case_lora(&model, rank, alpha, &dir);
        let case = serde_json::json!({
            "hf_dir": hf, "rank": rank, "alpha": alpha, "steps": 1, "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
            "n_head": c.n_head, "n_head_kv": c.n_head_kv, "head_dim": c.head_dim, "qk_permute": arch == Arch::Llama,
            "sequences": [{"tokens": tokens, "labels": labels}],
            "tensors": tensors,
        });
        std::fs::write(dir.join("case.json"), serde_json::to_vec(&case).unwrap()).unwrap();
        let theirs = run_py("peft_oracle.py", &dir);
        assert_eq!(theirs["dtype"], serde_json::json!(["torch.float32"]));

        let tr = Trainable::new(&model);
        let mut grads = lora.zeros_like();
        let n = labels.iter().filter(|&&l| l >= 0).count();
        let view = SeqView { tokens: &tokens, labels: &labels, positions: &positions, segments: None };
        let loss = tr.forward_backward(&lora, Some(&mut grads), &view, 1.0 / n as f32).unwrap().0 / n as f64;
        let ref_loss = theirs["loss"].as_f64().unwrap();
        let ref_grads = read_f32(&dir.join("grads.f32"));
        let (mut ours, mut worst, mut off) = (Vec::new(), 0f64, 0);
        for layer in &grads.layers {
            for (_, p) in layer {
                for buf in [&p.a, &p.b] {
                    worst = worst.max(rel_l2(buf, &ref_grads[off..off + buf.len()]));
                    off += buf.len();
                    ours.extend_from_slice(buf);
                }
            }
        }
        assert_eq!(off, ref_grads.len());
        let e = rel_l2(&ours, &ref_grads);
        let lrel = (loss - ref_loss).abs() / ref_loss;
        println!("{name}: LoRA r{rank} on all 7 projections vs PEFT: loss {loss:.6} vs {ref_loss:.6} (rel {lrel:.1e}); gradients rel L2 {e:.2e}, worst tensor {worst:.2e}");
        assert!(lrel < 1e-5 && e < 1e-4 && worst < 1e-3, "{name}: loss rel {lrel}, grad rel L2 {e}, worst {worst}");
    }
}
