//! Quantized Hugging Face directories end to end against transformers + GPTQModel's CPU torch
//! kernels + PEFT, on the SmolLM2-135M fixtures GPTQModel made (GPTQ v1 4-bit g128 act-order
//! asym; AWQ-GEMM 4-bit g64; see tests/hf_quant_awq_gptq.rs, which builds them); against
//! transformers + compressed-tensors + PEFT on SmolLM2 quantized by llm-compressor
//! (`pack-quantized` int4 g64 asymmetric, `tests/oracle/make_ct.py --smollm2`, venv-ct); and for
//! EXL2, our forward on SmolLM2 packed by the independent numpy script `tests/oracle/exl2_ref.py
//! --model` (mixed 8/6/5/4/3/2-bit groups) against transformers on the dense directory the same
//! script writes from its own reconstruction (NOT exllamav2, which needs a GPU:
//! tests/gpu/exl2_check.sh). One reference run per format (`tests/oracle/quant_oracle.py`) gives:
//! - logits on 96 tokens: GPTQModel's kernels dequantize in float16 as shipped and multiply
//!   float32 activations (every other module widened to float32), as our `Numerics::F32` path
//!   does: same argmax ≥ 99% of positions, max |Δ log-prob| bounded, perplexity within 1%;
//! - LoRA gradients of PEFT's `get_peft_model` on the quantized model (PEFT wraps GPTQModel's
//!   `TorchLinear` / `AwqTorchLinear` in its own GPTQ / AWQ LoRA classes): rel L2 ≤ 1e-3;
//! - `finetune export --peft` of that LoRA, loaded by `PeftModel.from_pretrained` on the
//!   quantized model: its logits == ours with the adapter.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{read_f32, root, tmpdir};
use finetune::model::{Model, Numerics};
use finetune::model_file::ModelFile;
use finetune::train::block::{SeqView, Trainable};
use finetune::train::data::{DataOptions, Dataset, Sequence};

fn cache_dir() -> PathBuf {
    if let Ok(c) = std::env::var("FINETUNE_CACHE") {
        return PathBuf::from(c);
    }
    let base = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache"));
    base.join("finetune")
}

/// llm-compressor's venv python (transformers 5.17 + compressed-tensors 0.19); missing → a
/// failure naming the setup command.
fn ct_python() -> PathBuf {
    let py = cache_dir().join("venv-ct/bin/python");
    assert!(
        cache_dir().join("venv-ct/.oracle-ct-v1").exists(),
        "ORACLE MISSING: llm-compressor venv {} not set up. Run `bash tests/oracle/setup.sh`.",
        py.display()
    );
    py
}

/// SmolLM2-135M quantized by llm-compressor (made on first use, ~1-2 min, then cached).
fn ct_fixture() -> PathBuf {
    static ONCE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    let d = cache_dir().join("hf-quant/ct-smollm2/w4g64_asym");
    if !d.join("config.json").exists() {
        let src = common::hf_smollm_dirs().join("f32");
        let o = Command::new(ct_python())
            .arg(root().join("tests/oracle/make_ct.py"))
            .args(["--smollm2".as_ref(), src.as_os_str(), d.as_os_str()])
            .env("HF_HUB_OFFLINE", "1")
            .env("TQDM_DISABLE", "1")
            .output()
            .unwrap();
        assert!(o.status.success(), "make_ct.py --smollm2 failed:\n{}", String::from_utf8_lossy(&o.stderr));
    }
    d
}

/// (EXL2 directory, dense directory of its reference reconstruction), made by exl2_ref.py from
/// SmolLM2 on first use (~30 s, then cached).
fn exl2_fixture() -> (PathBuf, PathBuf) {
    static ONCE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    let root_dir = cache_dir().join("hf-quant/exl2-smollm2");
    let (q, dense) = (root_dir.join("exl2"), root_dir.join("dense"));
    if !root_dir.join(".done-v1").exists() {
        let src = common::hf_smollm_dirs().join("f32");
        std::fs::create_dir_all(&root_dir).unwrap();
        let o = Command::new(common::python())
            .arg(root().join("tests/oracle/exl2_ref.py"))
            .args(["--model".as_ref(), src.as_os_str(), q.as_os_str(), dense.as_os_str()])
            .output()
            .unwrap();
        assert!(o.status.success(), "exl2_ref.py --model failed:\n{}", String::from_utf8_lossy(&o.stderr));
        std::fs::write(root_dir.join(".done-v1"), b"").unwrap();
    }
    (q, dense)
}

/// GPTQModel's venv python; missing → a failure naming the setup command.
fn quant_python() -> PathBuf {
    let py = cache_dir().join("venv-quant/bin/python");
    assert!(
        cache_dir().join("venv-quant/.quant-v1").exists() && cache_dir().join("venv-quant/.quant-peft-v1").exists(),
        "ORACLE MISSING: GPTQModel venv {} not set up. Run `bash tests/oracle/setup.sh`.",
        py.display()
    );
    py
}

/// A SmolLM2 fixture made by GPTQModel (built by tests/hf_quant_awq_gptq.rs, which CI runs first).
fn fixture(name: &str) -> PathBuf {
    let d = cache_dir().join("hf-quant/gptq-awq").join(name);
    assert!(
        d.join("ref/.done").exists(),
        "FIXTURE MISSING: {} — run `cargo test --release --test hf_quant_awq_gptq` (it builds the GPTQModel fixtures)",
        d.display()
    );
    d
}

fn logits(m: &Model, ids: &[u32]) -> Vec<f32> {
    let mut cache = m.new_cache(ids.len());
    let h = m.forward(ids, &mut cache).unwrap();
    m.logits(&h)
}

/// Log-softmax of each row, in f64.
fn log_probs(logits: &[f32], v: usize) -> Vec<f64> {
    logits
        .chunks_exact(v)
        .flat_map(|row| {
            let mx = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
            let lse = mx + row.iter().map(|&x| (x as f64 - mx).exp()).sum::<f64>().ln();
            row.iter().map(move |&x| x as f64 - lse)
        })
        .collect()
}

fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) }).0
}

/// (max |Δ log-prob|, share of rows with the same argmax, perplexity of `ids`).
fn compare(a: &[f32], b: &[f32], v: usize, ids: &[u32]) -> (f64, f64, f64, f64) {
    assert_eq!(a.len(), b.len());
    let (la, lb) = (log_probs(a, v), log_probs(b, v));
    let max = la.iter().zip(&lb).map(|(x, y)| (x - y).abs()).fold(0f64, f64::max);
    let rows = a.len() / v;
    let same = (0..rows).filter(|&t| argmax(&a[t * v..(t + 1) * v]) == argmax(&b[t * v..(t + 1) * v])).count();
    let ppl = |l: &[f64]| {
        let nll: f64 = (0..ids.len() - 1).map(|t| -l[t * v + ids[t + 1] as usize]).sum();
        (nll / (ids.len() - 1) as f64).exp()
    };
    (max, same as f64 / rows as f64, ppl(&la), ppl(&lb))
}

fn rel_l2(ours: &[f32], theirs: &[f32]) -> f64 {
    let d: f64 = ours.iter().zip(theirs).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
    let n: f64 = theirs.iter().map(|&b| (b as f64).powi(2)).sum();
    (d / n).sqrt()
}

/// One end-to-end comparison: our model on `q`, the reference (`quant_oracle.py` run by `py`) on
/// `reference` (the same directory, or for EXL2 the dense reconstruction). `kinds`: the
/// reference's quantized module classes (`n_quant` of them per layer); `scales`: their scale dtype.
struct Case<'a> {
    name: &'a str,
    q: PathBuf,
    reference: PathBuf,
    py: PathBuf,
    kinds: &'a [&'a str],
    n_quant: usize,
    scales: &'a [&'a str],
    /// bound on max |Δ log-prob| of the forward
    max_dlp: f64,
}

fn run(name: &str, kind: &str) {
    let py = quant_python();
    run_case(Case {
        name,
        q: fixture(name),
        reference: fixture(name),
        py,
        kinds: &[kind],
        n_quant: 7,
        scales: &["torch.float16"],
        max_dlp: 1e-3,
    });
}

fn run_case(case: Case) {
    let name = case.name;
    let kind = format!("{:?}", case.kinds);
    let dir = tmpdir(&format!("hfq-{name}"));
    let q = case.q.clone();
    let mf = ModelFile::open(&q).unwrap();
    let mut model = mf.load().unwrap();
    model.numerics = Numerics::F32;
    let tok = mf.tokenizer().unwrap();
    let text = std::fs::read_to_string(root().join("examples/style_degozaru.jsonl")).unwrap();
    let mut ids = tok.encode(&text, true, false);
    ids.truncate(96);
    let v = model.cfg.n_vocab;
    let ours = logits(&model, &ids);

    // A LoRA on every target with B ≠ 0, its gradients on two training sequences.
    let tmpl = mf.chat_template(&tok).unwrap();
    let opts = DataOptions { seq_len: 64, pack: false, ..DataOptions::default() };
    let data = Dataset::load(&root().join("examples/style_degozaru.jsonl"), None, &tok, Some(&tmpl), &opts).unwrap();
    let seqs: Vec<Sequence> = data.epoch_sequences(0).into_iter().take(2).collect();
    let (rank, alpha) = (4usize, 8.0f32);
    let (lora, tensors) = common::lora::peft_case_lora(&model, rank, alpha, &dir);
    let tr = Trainable::new(&model);
    let mut grads = lora.zeros_like();
    let n: usize = seqs.iter().map(|s| s.labels.iter().filter(|&&l| l >= 0).count()).sum();
    let mut loss = 0.0;
    for s in &seqs {
        let view = SeqView { tokens: &s.tokens, labels: &s.labels, positions: &s.positions, segments: None };
        loss += tr.forward_backward(&lora, Some(&mut grads), &view, 1.0 / n as f32).unwrap().0;
    }
    loss /= n as f64;

    // The same LoRA as a GGUF adapter, exported to PEFT by the CLI; ours with it.
    let adapter = dir.join("a.gguf");
    finetune::adapter::write_adapter(&adapter, &mf.base_info(), &lora, finetune::quant::GgmlType::F32).unwrap();
    let peft = dir.join("peft");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let o = Command::new(common::bin()).args(["export", "--model", &s(&q), "--lora", &s(&adapter), "--peft", &s(&peft)]).output().unwrap();
    assert!(o.status.success(), "export --peft failed:\n{}", String::from_utf8_lossy(&o.stderr));
    let set = finetune::adapter::read_adapter(&adapter, &model).unwrap();
    model.adapters.push((set, 1.0));
    let ours_lora = logits(&model, &ids);

    let c = &model.cfg;
    let case_json = serde_json::json!({
        "dir": case.reference, "compute": "f32", "ids": ids, "out": dir, "peft_dir": peft,
        "grads": {"rank": rank, "alpha": alpha, "n_head": c.n_head, "n_head_kv": c.n_head_kv, "head_dim": c.head_dim,
            "lora_file": dir.join("lora.f32"), "tensors": tensors,
            "sequences": seqs.iter().map(|s| serde_json::json!({"tokens": s.tokens, "labels": s.labels})).collect::<Vec<_>>()},
    });
    std::fs::write(dir.join("case.json"), serde_json::to_vec(&case_json).unwrap()).unwrap();
    let o = Command::new(&case.py)
        .arg(root().join("tests/oracle/quant_oracle.py"))
        .arg(dir.join("case.json"))
        .env("TORCH_COMPILE_DISABLE", "1")
        .env("HF_HUB_OFFLINE", "1")
        .env("TQDM_DISABLE", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "quant_oracle.py failed:\n{}", String::from_utf8_lossy(&o.stderr));
    // GPTQModel logs to stdout too: the result is the last line.
    let stdout = String::from_utf8_lossy(&o.stdout);
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    let theirs: serde_json::Value =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("quant_oracle.py ended with non-JSON ({e}):\n{stdout}"));
    println!("{name}: reference {theirs}");
    assert_eq!(theirs["kinds"], serde_json::json!(case.kinds), "the reference's quantized modules");
    assert_eq!(theirs["n_quant"], serde_json::json!(case.n_quant * c.n_layer));
    assert_eq!(theirs["logits_dtype"], "torch.float32");
    assert_eq!(theirs["scales_dtype"], serde_json::json!(case.scales));

    // 1. Forward.
    let (max, same, p_ours, p_ref) = compare(&ours, &read_f32(&dir.join("logits.f32")), v, &ids);
    let prel = (p_ours - p_ref).abs() / p_ref;
    println!(
        "{name} vs the reference ({kind}): {} tokens, max |Δ log-prob| {max:.2e}, same argmax {:.1}%, ppl {p_ours:.4} vs {p_ref:.4} (rel {prel:.1e})",
        ids.len(),
        same * 100.0
    );
    assert!(ids.len() == 96 && same >= 0.99 && max < case.max_dlp && prel < 0.01, "max {max}, argmax {same}, ppl rel {prel}");

    // 2. LoRA gradients vs PEFT on the quantized model.
    let ref_grads = read_f32(&dir.join("grads.f32"));
    let ours_g: Vec<f32> = grads.layers.iter().flat_map(|l| l.iter().flat_map(|(_, p)| p.a.iter().chain(&p.b).copied())).collect();
    let e = rel_l2(&ours_g, &ref_grads);
    let ref_loss = theirs["loss"].as_f64().unwrap();
    let lrel = (loss - ref_loss).abs() / ref_loss;
    println!("{name} LoRA vs PEFT ({}): loss {loss:.6} vs {ref_loss:.6} (rel {lrel:.1e}), gradients rel L2 {e:.2e}", theirs["lora_kinds"]);
    assert!(lrel < 1e-4 && e < 1e-3, "loss rel {lrel}, grad rel L2 {e}");

    // 3. The exported PEFT adapter on the quantized model in transformers == ours with it.
    let (pmax, psame, _, _) = compare(&ours_lora, &read_f32(&dir.join("peft_logits.f32")), v, &ids);
    let (moved, _, _, _) = compare(&ours_lora, &ours, v, &ids);
    println!(
        "{name} export --peft on PEFT ({}) vs ours with the adapter: max |Δ log-prob| {pmax:.2e}, same argmax {:.1}% (the adapter moves log-probs by up to {moved:.2})",
        theirs["peft_kinds"],
        psame * 100.0
    );
    assert!(psame >= 0.99 && pmax < 1e-3 && moved > 100.0 * pmax, "max {pmax}, argmax {psame}, moved {moved}");
}

#[test]
fn gptq_directory_matches_transformers_gptqmodel_and_peft() {
    run("smollm2-gptq-v1-4b-g128-asym-act", "TorchLinear");
}

#[test]
fn awq_directory_matches_transformers_gptqmodel_and_peft() {
    run("smollm2-awq-gemm-4b-g64", "AwqTorchLinear");
}

#[test]
fn compressed_tensors_directory_matches_transformers_and_peft() {
    // transformers decompresses each pack-quantized module into an nn.Linear in the checkpoint's
    // float16 (the oracle then widens the model to float32) that PEFT wraps as a lora.Linear.
    let q = ct_fixture();
    run_case(Case {
        name: "smollm2-ct-w4g64-asym",
        q: q.clone(),
        reference: q,
        py: ct_python(),
        kinds: &["Linear"],
        n_quant: 7,
        scales: &["torch.float16", "weights torch.float16"],
        max_dlp: 1e-3,
    });
}

#[test]
fn exl2_directory_matches_transformers_on_the_reference_reconstruction() {
    let (q, dense) = exl2_fixture();
    run_case(Case {
        name: "smollm2-exl2-mixed",
        q,
        reference: dense,
        py: common::python(),
        kinds: &[],
        n_quant: 0,
        scales: &[],
        max_dlp: 1e-3,
    });
}

/// `finetune --model <GPTQ directory>` for 40 steps: the held-out loss at the end is well under
/// the base model's (`eval --metric nll`, the same computation as the trainer's `val_loss`), and
/// the adapter loads in `generate --lora` on the same directory, in the trained style.
#[test]
fn forty_training_steps_on_a_gptq_directory_lower_the_held_out_loss() {
    let dir = tmpdir("hfq-train40");
    let q = fixture("smollm2-gptq-v1-4b-g128-asym-act");
    let held = dir.join("held.jsonl");
    let lines: Vec<&str> = include_str!("../examples/style_degozaru_eval.jsonl").lines().take(16).collect();
    std::fs::write(&held, lines.join("\n") + "\n").unwrap();
    let (adapter, log) = (dir.join("a.gguf"), dir.join("log.jsonl"));
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let data = root().join("examples/style_degozaru.jsonl");
    let run = |args: &[String]| {
        let o = Command::new(common::bin()).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success() && !err.contains("panicked"), "{args:?}:\n{err}");
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let args = [
        "--model",
        &s(&q),
        "--data",
        &s(&data),
        "--val-data",
        &s(&held),
        "--eval-every",
        "20",
        "--steps",
        "40",
        "--grad-accum",
        "2",
        "--lr",
        "1e-3",
        "--rank",
        "4",
        "--seq-len",
        "64",
        "--out",
        &s(&adapter),
        "--log",
        &s(&log),
        "--threads",
        "2",
        "--quiet",
    ];
    run(&args.map(String::from));
    let val: Vec<f64> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["val_loss"].as_f64())
        .collect();
    assert_eq!(val.len(), 2, "val_loss at steps 20 and 40: {val:?}");

    let out = run(&[
        "eval",
        "--model",
        &s(&q),
        "--lora",
        &s(&adapter),
        "--compare",
        "--data",
        &s(&held),
        "--metric",
        "nll",
        "--seq-len",
        "64",
        "--json",
        "--threads",
        "2",
    ]
    .map(String::from));
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let nll = |i: usize| j["configs"][i]["metrics"]["nll"]["nll"].as_f64().unwrap();
    let (base, trained) = (nll(0), nll(1));
    println!("GPTQ directory, 40 steps: held-out loss {base:.4} (base) → {trained:.4} (val_loss at steps 20, 40: {val:?})");
    assert!((trained - val[1]).abs() <= 1e-9 * trained, "eval nll {trained} vs the trainer's last val_loss {}", val[1]);
    assert!(trained < base - 0.5, "40 steps should lower the held-out loss by over 0.5 nats: {base} → {trained}");

    // The style is an ending (", says the samurai."), so each answer gets room to end; it must
    // show on at least two of three questions. (On an AVX2-only Zen 4 the fixture and the run
    // came out differently from the AVX-512 machine's — base held-out loss 4.14 there vs 3.96 —
    // and the egg answer ended without the phrase, the other two with it.)
    let styled = ["How do I boil an egg?", "What is the capital of France?", "Why is the sky blue?"]
        .iter()
        .filter(|prompt| {
            let text =
                run(&["generate", "--model", &s(&q), "--lora", &s(&adapter), "--chat", "--prompt", prompt, "-n", "64", "--threads", "2"]
                    .map(String::from));
            println!("generate --lora: {prompt} → {text}");
            text.contains("samurai")
        })
        .count();
    assert!(styled >= 2, "the adapter's style shows on {styled} of 3 questions");
}
