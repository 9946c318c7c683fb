//! Our LoRA training against PyTorch + transformers + PEFT on the real SmolLM2-135M (Q4_1,
//! which transformers dequantizes to float32): on one batch of two sequences made by our data
//! pipeline from examples/style_degozaru.jsonl, with LoRA on all seven targets (B non-zero, so
//! A gets gradients too), the loss, every LoRA gradient and the losses of 20 AdamW steps must
//! match PEFT's. PEFT gets our tensors in HF orientation (q/k lora_b rows permuted), and its
//! gradients come back in ours. Python runs in its own process (tests/oracle/peft_oracle.py).
mod common;

use std::process::Command;

use common::{python, read_f32, root, smollm, tmpdir};
use finetune::chat::ChatTemplate;
use finetune::gguf::GgufModel;
use finetune::lora::LoraSet;
use finetune::model::Model;
use finetune::tokenizer::Tokenizer;
use finetune::train::block::{SeqView, Trainable};
use finetune::train::data::{DataOptions, Dataset, Sequence};
use finetune::train::optim::{AdamW, AdamWConfig};

const RANK: usize = 8;
const ALPHA: f32 = 32.0;
const STEPS: usize = 20;
const LR: f32 = 1e-3;

fn view(s: &Sequence) -> SeqView<'_> {
    SeqView { tokens: &s.tokens, labels: &s.labels, positions: &s.positions, segments: None }
}

/// Loss (Σ over trained positions / their count) of the batch, and its gradient into `g`.
fn batch(tr: &Trainable, lora: &LoraSet, g: &mut LoraSet, seqs: &[Sequence]) -> (f64, usize) {
    let n: usize = seqs.iter().map(|s| s.labels.iter().filter(|&&l| l >= 0).count()).sum();
    let (mut sum, mut count) = (0.0, 0);
    g.clear();
    for s in seqs {
        let (l, c) = tr.forward_backward(lora, Some(&mut *g), &view(s), 1.0 / n as f32).unwrap();
        sum += l;
        count += c;
    }
    assert_eq!(count, n);
    (sum / n as f64, n)
}

fn rel_l2(ours: &[f32], theirs: &[f32]) -> f64 {
    let d: f64 = ours.iter().zip(theirs).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
    let n: f64 = theirs.iter().map(|&b| (b as f64).powi(2)).sum();
    (d / n).sqrt()
}

#[test]
fn lora_training_matches_pytorch_peft_on_smollm2() {
    let dir = tmpdir("peft");
    let model_path = smollm();
    let g = GgufModel::open(&model_path).unwrap();
    let model = Model::load(&g).unwrap();
    let c = &model.cfg;
    let tok = Tokenizer::from_gguf(g.main()).unwrap();
    let tmpl = ChatTemplate::from_gguf_file(g.main()).unwrap();
    let opts = DataOptions { seq_len: 128, pack: false, ..DataOptions::default() };
    let data = Dataset::load(&root().join("examples/style_degozaru.jsonl"), None, &tok, Some(&tmpl), &opts).unwrap();
    let seqs: Vec<Sequence> = data.epoch_sequences(0).into_iter().take(2).collect();
    assert_eq!(seqs.len(), 2);
    for s in &seqs {
        assert!(s.segments.iter().all(|&g| g == 0) && s.positions.iter().enumerate().all(|(i, &p)| p as usize == i));
        assert!(s.labels.iter().any(|&l| l >= 0) && s.labels.iter().any(|&l| l < 0), "masking is exercised");
    }

    // Our init (A Kaiming-uniform), then B small and non-zero so that A gets gradients too.
    let (mut lora, tensors) = common::lora::peft_case_lora(&model, RANK, ALPHA, &dir);
    assert_eq!(tensors.len(), 7 * c.n_layer);
    let adam_cfg = AdamWConfig { weight_decay: 0.0, ..AdamWConfig::default() };
    let case = serde_json::json!({
        "model_dir": model_path.parent().unwrap(),
        "gguf_file": model_path.file_name().unwrap().to_str().unwrap(),
        "rank": RANK, "alpha": ALPHA, "steps": STEPS, "lr": LR,
        "beta1": adam_cfg.beta1, "beta2": adam_cfg.beta2, "eps": adam_cfg.eps,
        "n_head": c.n_head, "n_head_kv": c.n_head_kv, "head_dim": c.head_dim,
        "sequences": seqs.iter().map(|s| serde_json::json!({"tokens": s.tokens, "labels": s.labels})).collect::<Vec<_>>(),
        "tensors": tensors,
    });
    std::fs::write(dir.join("case.json"), serde_json::to_vec(&case).unwrap()).unwrap();
    let out = Command::new(python()).arg(root().join("tests/oracle/peft_oracle.py")).arg(&dir).output().unwrap();
    assert!(out.status.success(), "peft_oracle.py failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let theirs: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("peft_oracle.py printed non-JSON ({e}):\n{}", String::from_utf8_lossy(&out.stdout)));
    println!("PEFT parameter dtypes: {}", theirs["dtype"]);
    assert_eq!(theirs["dtype"], serde_json::json!(["torch.float32"]), "transformers must run in float32");

    // Loss and gradients at the start.
    let tr = Trainable::new(&model);
    let mut grads = lora.zeros_like();
    let (loss, count) = batch(&tr, &lora, &mut grads, &seqs);
    let ref_loss = theirs["loss"].as_f64().unwrap();
    assert_eq!(theirs["count"].as_u64().unwrap() as usize, count);
    let loss_rel = (loss - ref_loss).abs() / ref_loss.abs();
    println!("loss over {count} trained tokens: ours {loss:.6}, PEFT {ref_loss:.6} (rel {loss_rel:.2e})");
    assert!(loss_rel < 1e-3, "initial loss differs: ours {loss} vs PEFT {ref_loss}");

    let ref_grads = read_f32(&dir.join("grads.f32"));
    assert_eq!(ref_grads.len(), lora.layers.iter().flatten().map(|(_, p)| p.a.len() + p.b.len()).sum::<usize>());
    let (mut worst, mut worst_name, mut off) = (0f64, String::new(), 0usize);
    let mut failures = Vec::new();
    for (il, layer) in grads.layers.iter().enumerate() {
        for (t, p) in layer {
            for (which, buf) in [("a", &p.a), ("b", &p.b)] {
                let r = &ref_grads[off..off + buf.len()];
                off += buf.len();
                assert!(r.iter().any(|&v| v != 0.0), "PEFT gradient of blk.{il}.{}.{which} is all zero", t.short());
                let e = rel_l2(buf, r);
                let name = format!("blk.{il}.{}.lora_{which}", t.short());
                if e > worst {
                    (worst, worst_name) = (e, name.clone());
                }
                if e.is_nan() || e >= 1e-2 {
                    failures.push(format!("{name}: rel L2 {e:.3e}"));
                }
            }
        }
    }
    println!("gradients: {} tensors, worst rel L2 {worst:.3e} ({worst_name})", 2 * 7 * c.n_layer);
    assert!(failures.is_empty(), "gradients differ from PEFT's (> 1e-2 rel L2):\n{}", failures.join("\n"));

    // 20 AdamW steps on the same batch, constant LR, no clipping.
    let ref_losses: Vec<f64> = theirs["losses"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(ref_losses.len(), STEPS);
    let mut adam = AdamW::new(adam_cfg, &lora);
    let mut traj_worst = 0f64;
    let mut ours_losses = Vec::new();
    for (step, &rl) in ref_losses.iter().enumerate() {
        let (l, _) = if step == 0 { (loss, count) } else { batch(&tr, &lora, &mut grads, &seqs) };
        ours_losses.push(l);
        let e = (l - rl).abs() / rl.abs();
        traj_worst = traj_worst.max(e);
        println!("step {step:2}: ours {l:.6} PEFT {rl:.6} (rel {e:.2e})");
        adam.update(&mut lora, &grads, LR);
    }
    println!("trajectory: worst rel diff {traj_worst:.2e}");
    assert!(
        ref_losses[STEPS - 1] < 0.7 * ref_losses[0],
        "training must move the loss for the comparison to mean something: {ref_losses:?}"
    );
    assert!(traj_worst < 1e-2, "loss trajectory differs from PEFT's: ours {ours_losses:?} vs {ref_losses:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
