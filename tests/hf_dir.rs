//! Hugging Face model directories against transformers (+ PEFT) on the same directory.
//!
//! Fixture: SmolLM2-135M-Instruct re-saved by transformers from our Q4_1 GGUF
//! (`tests/oracle/hf_fixture.py`: float32 in one file, float32 sharded at 100 MB, bfloat16),
//! made once into the cache. Checks: tokens and decoded text == `AutoTokenizer` on a
//! multilingual set; chat template == `apply_chat_template`; f32 logits vs transformers (max
//! |Δ logit|, argmax, perplexity within 1%); the directory vs the GGUF it came from with f32
//! numerics; the sharded copy == the single file; bf16 == transformers on the bf16 weights;
//! LoRA gradients vs PEFT on the directory; training through the CLI, the GGUF adapter on the
//! Q4_1 base, `export --peft` loaded by PEFT; bad directories are clear errors.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{python, read_f32, root, smollm, tmpdir};
use finetune::model::{Model, Numerics};
use finetune::model_file::ModelFile;
use finetune::train::block::{SeqView, Trainable};
use finetune::train::data::{DataOptions, Dataset, Sequence};

/// The fixture directory root (made by tests/oracle/hf_fixture.py when missing).
fn fixture() -> PathBuf {
    common::hf_smollm_dirs()
}

fn hf_oracle(case: serde_json::Value, dir: &Path) -> serde_json::Value {
    let p = dir.join("case.json");
    std::fs::write(&p, serde_json::to_vec(&case).unwrap()).unwrap();
    let o = Command::new(python()).arg(root().join("tests/oracle/hf_oracle.py")).arg(&p).output().unwrap();
    assert!(o.status.success(), "hf_oracle.py failed:\n{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("hf_oracle.py printed non-JSON ({e})"))
}

const TEXTS: &[&str] = &[
    "Hello world! The quick brown fox jumps over the lazy dog.",
    "  leading spaces, trailing\ttabs\t and\n\nnewlines  ",
    "Größenänderung der Straße – naïve café, déjà vu.",
    "Привет, как дела? Всё хорошо.",
    "机器学习是人工智能的一个分支。東京は日本の首都です。",
    "مرحبا بالعالم، كيف حالك؟",
    "한국어 텍스트와 emoji 🎉🚀👍🏽 mixed",
    "fn main() { let x: Vec<u32> = (0..10).collect(); println!(\"{x:?}\"); }",
    "3.14159 12345678 1,000,000 2025-12-06",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
];

/// Logits `[T, vocab]` of `ids` on the model with f32 numerics.
fn logits(m: &Model, ids: &[u32]) -> Vec<f32> {
    let mut cache = m.new_cache(ids.len());
    let h = m.forward(ids, &mut cache).unwrap();
    m.logits(&h)
}

/// Mean NLL of next tokens under row-major logits.
fn nll(logits: &[f32], ids: &[u32], v: usize) -> f64 {
    let mut s = 0.0;
    for t in 0..ids.len() - 1 {
        let row = &logits[t * v..(t + 1) * v];
        let mx = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let lse = mx + row.iter().map(|&x| (x as f64 - mx).exp()).sum::<f64>().ln();
        s += lse - row[ids[t + 1] as usize] as f64;
    }
    s / (ids.len() - 1) as f64
}

fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) }).0
}

/// (max |Δ|, share of rows with the same argmax).
fn compare(a: &[f32], b: &[f32], v: usize) -> (f32, f64) {
    assert_eq!(a.len(), b.len());
    let max = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    let rows = a.len() / v;
    let same = (0..rows).filter(|&t| argmax(&a[t * v..(t + 1) * v]) == argmax(&b[t * v..(t + 1) * v])).count();
    (max, same as f64 / rows as f64)
}

fn sample_ids(tok: &finetune::tokenizer::Tokenizer) -> Vec<u32> {
    let text = std::fs::read_to_string(root().join("examples/style_degozaru.jsonl")).unwrap();
    let mut ids = tok.encode(&text, true, false);
    ids.truncate(96);
    ids
}

#[test]
fn tokenizer_and_chat_template_match_transformers() {
    let dir = tmpdir("hf-tok");
    let hf = fixture().join("f32");
    let mf = ModelFile::open(&hf).unwrap();
    let tok = mf.tokenizer().unwrap();
    assert!(tok.is_hf());
    let tmpl = mf.chat_template(&tok).unwrap();
    let conv = |sys: bool| {
        let mut v = Vec::new();
        if sys {
            v.push(serde_json::json!({"role": "system", "content": "You are a samurai."}));
        }
        v.push(serde_json::json!({"role": "user", "content": "Bonjour, ça va? 你好"}));
        v.push(serde_json::json!({"role": "assistant", "content": "Fine, de gozaru."}));
        v.push(serde_json::json!({"role": "user", "content": "Again?"}));
        v
    };
    let convs = vec![conv(true), conv(false)];
    let theirs = hf_oracle(serde_json::json!({"dir": hf, "texts": TEXTS, "conversations": convs, "out": dir}), &dir);
    for (t, r) in TEXTS.iter().zip(theirs["tokens"].as_array().unwrap()) {
        let ids = |k: &str| r[k].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect::<Vec<_>>();
        let with = tok.encode(t, true, true);
        assert_eq!(with, ids("with"), "add_special_tokens=True: {t:?}");
        assert_eq!(tok.encode(t, false, true), ids("without"), "add_special_tokens=False: {t:?}");
        assert_eq!(tok.decode(&with), r["decoded"].as_str().unwrap(), "decode: {t:?}");
        // The pieces concatenate to the text (special tokens as their text).
        let bytes: Vec<u8> = with.iter().flat_map(|&i| tok.token_to_piece(i)).collect();
        let skip = usize::from(tok.add_bos());
        let pieces: Vec<u8> = with[skip..].iter().flat_map(|&i| tok.token_to_piece(i)).collect();
        assert!(bytes.ends_with(&pieces) && String::from_utf8_lossy(&pieces) == *t, "pieces of {t:?}");
    }
    println!("tokens: {} texts identical to AutoTokenizer", TEXTS.len());
    for (c, r) in convs.iter().zip(theirs["templates"].as_array().unwrap()) {
        let msgs: Vec<finetune::chat::Message> =
            c.iter().map(|m| finetune::chat::Message::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap())).collect();
        for (gen, want) in [false, true].iter().zip(r.as_array().unwrap()) {
            assert_eq!(tmpl.render(&msgs, *gen).unwrap(), want.as_str().unwrap(), "add_generation_prompt={gen}");
        }
    }
    println!("chat template: {} renders identical to apply_chat_template", 2 * convs.len());
}

#[test]
fn forward_matches_transformers_and_the_gguf_it_came_from() {
    let dir = tmpdir("hf-fwd");
    let root_dir = fixture();
    let hf = root_dir.join("f32");
    let mf = ModelFile::open(&hf).unwrap();
    let tok = mf.tokenizer().unwrap();
    let ids = sample_ids(&tok);
    let m = mf.load().unwrap();
    let v = m.cfg.n_vocab;
    let ours = logits(&m, &ids);
    let theirs = hf_oracle(serde_json::json!({"dir": hf, "ids": ids, "out": dir}), &dir);
    assert_eq!(theirs["dtype"], serde_json::json!(["torch.float32"]));
    let reference = read_f32(&dir.join("logits.f32"));
    let (max, same) = compare(&ours, &reference, v);
    let (p_ours, p_ref) = (nll(&ours, &ids, v).exp(), nll(&reference, &ids, v).exp());
    let prel = (p_ours - p_ref).abs() / p_ref;
    println!(
        "f32 dir vs transformers: {} tokens, max |Δ logit| {max:.2e}, same argmax {:.1}%, ppl {p_ours:.4} vs {p_ref:.4} (rel {prel:.2e})",
        ids.len(),
        same * 100.0
    );
    assert!(max < 2e-3 && same == 1.0 && prel < 0.01, "max {max}, argmax {same}, ppl rel {prel}");

    // The GGUF it came from, f32 numerics: the same values (the directory holds the dequantized
    // Q4_1 weights in f32).
    let g = ModelFile::open(&smollm()).unwrap();
    let mut gm = g.load().unwrap();
    gm.numerics = Numerics::F32;
    let from_gguf = logits(&gm, &ids);
    let (gmax, gsame) = compare(&ours, &from_gguf, v);
    println!("f32 dir vs Q4_1 GGUF (--numerics f32): max |Δ logit| {gmax:.2e}, same argmax {:.1}%", gsame * 100.0);
    assert!(gmax < 1e-3 && gsame == 1.0, "max {gmax}, argmax {gsame}");

    // The sharded copy: the same bytes, so the same logits bit for bit.
    let sh = ModelFile::open(&root_dir.join("sharded").join("config.json")).unwrap();
    let ModelFile::Hf(h) = &sh else { panic!("not an HF dir") };
    assert!(h.tensors().shards().len() > 1, "the fixture is sharded");
    assert!(ours == logits(&sh.load().unwrap(), &ids), "sharded != single file");

    // bf16 weights: transformers with the bf16 weights widened to f32 (exact), as ours.
    let b = root_dir.join("bf16");
    let bm = ModelFile::open(&b).unwrap();
    let bours = logits(&bm.load().unwrap(), &ids);
    let btheirs = hf_oracle(serde_json::json!({"dir": b, "ids": ids, "out": dir}), &dir);
    let (bmax, bsame) = compare(&bours, &read_f32(&dir.join("logits.f32")), v);
    println!("bf16 dir vs transformers (f32 compute): max |Δ logit| {bmax:.2e}, same argmax {:.1}%", bsame * 100.0);
    assert_eq!(btheirs["dtype"], serde_json::json!(["torch.float32"]));
    assert!(bmax < 2e-3 && bsame == 1.0);
}

fn rel_l2(ours: &[f32], theirs: &[f32]) -> f64 {
    let d: f64 = ours.iter().zip(theirs).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
    let n: f64 = theirs.iter().map(|&b| (b as f64).powi(2)).sum();
    (d / n).sqrt()
}

#[test]
fn lora_gradients_match_peft_on_the_directory() {
    let dir = tmpdir("hf-peft");
    let hf = fixture().join("f32");
    let mf = ModelFile::open(&hf).unwrap();
    let model = mf.load().unwrap();
    let c = &model.cfg;
    let tok = mf.tokenizer().unwrap();
    let tmpl = mf.chat_template(&tok).unwrap();
    let opts = DataOptions { seq_len: 64, pack: false, ..DataOptions::default() };
    let data = Dataset::load(&root().join("examples/style_degozaru.jsonl"), None, &tok, Some(&tmpl), &opts).unwrap();
    let seqs: Vec<Sequence> = data.epoch_sequences(0).into_iter().take(2).collect();
    let (rank, alpha) = (4usize, 8.0f32);
    let (lora, tensors) = common::lora::peft_case_lora(&model, rank, alpha, &dir);
    let case = serde_json::json!({
        "hf_dir": hf, "rank": rank, "alpha": alpha, "steps": 1, "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
        "n_head": c.n_head, "n_head_kv": c.n_head_kv, "head_dim": c.head_dim,
        "sequences": seqs.iter().map(|s| serde_json::json!({"tokens": s.tokens, "labels": s.labels})).collect::<Vec<_>>(),
        "tensors": tensors,
    });
    std::fs::write(dir.join("case.json"), serde_json::to_vec(&case).unwrap()).unwrap();
    let out = Command::new(python()).arg(root().join("tests/oracle/peft_oracle.py")).arg(&dir).output().unwrap();
    assert!(out.status.success(), "peft_oracle.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(theirs["dtype"], serde_json::json!(["torch.float32"]));

    let tr = Trainable::new(&model);
    let mut grads = lora.zeros_like();
    let n: usize = seqs.iter().map(|s| s.labels.iter().filter(|&&l| l >= 0).count()).sum();
    let mut loss = 0.0;
    for s in &seqs {
        let view = SeqView { tokens: &s.tokens, labels: &s.labels, positions: &s.positions, segments: None };
        loss += tr.forward_backward(&lora, Some(&mut grads), &view, 1.0 / n as f32).unwrap().0;
    }
    loss /= n as f64;
    let ref_loss = theirs["loss"].as_f64().unwrap();
    let ref_grads = read_f32(&dir.join("grads.f32"));
    let mut ours = Vec::new();
    for layer in &grads.layers {
        for (_, p) in layer {
            ours.extend_from_slice(&p.a);
            ours.extend_from_slice(&p.b);
        }
    }
    let e = rel_l2(&ours, &ref_grads);
    let (mut worst, mut off) = (0f64, 0);
    for layer in &grads.layers {
        for (_, p) in layer {
            for buf in [&p.a, &p.b] {
                worst = worst.max(rel_l2(buf, &ref_grads[off..off + buf.len()]));
                off += buf.len();
            }
        }
    }
    let lrel = (loss - ref_loss).abs() / ref_loss;
    println!("LoRA on the f32 dir vs PEFT: loss {loss:.6} vs {ref_loss:.6} (rel {lrel:.1e}); gradients rel L2 {e:.2e} over all, worst tensor {worst:.2e}");
    assert!(lrel < 1e-5 && e < 1e-4, "loss rel {lrel}, grad rel L2 {e}");
}

fn bin(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(common::bin()).args(args).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

#[test]
fn train_on_the_directory_then_use_the_adapters_in_gguf_and_peft() {
    let dir = tmpdir("hf-train");
    let hf = fixture().join("f32");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (out, log) = (dir.join("a.gguf"), dir.join("a.jsonl"));
    let data = root().join("examples/style_degozaru.jsonl");
    let args = [
        "--model",
        &s(&hf),
        "--data",
        &s(&data),
        "--out",
        &s(&out),
        "--log",
        &s(&log),
        "--quiet",
        "--rank",
        "8",
        "--seq-len",
        "64",
        "--steps",
        "12",
        "--lr",
        "3e-3",
        "--threads",
        "2",
        "--seed",
        "3",
    ];
    let (ok, _, err) = bin(&args);
    assert!(ok, "training on the HF dir failed:\n{err}");
    let losses: Vec<f64> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap())
        .collect();
    let (first, last) = (losses[..3].iter().sum::<f64>() / 3.0, losses[losses.len() - 3..].iter().sum::<f64>() / 3.0);
    println!("training on the HF dir: mean loss of the first 3 steps {first:.3}, of the last 3 {last:.3}");
    assert!(last < first * 0.9, "loss did not go down: {losses:?}");

    // The GGUF adapter (GGUF names, q/k rows in GGUF order) on the Q4_1 base == on the directory.
    let ids = {
        let mf = ModelFile::open(&hf).unwrap();
        sample_ids(&mf.tokenizer().unwrap())
    };
    let on = |model: &Path| {
        let mf = ModelFile::open(model).unwrap();
        let mut m = mf.load().unwrap();
        m.numerics = Numerics::F32;
        let set = finetune::adapter::read_adapter(&out, &m).unwrap();
        let base = logits(&m, &ids);
        m.adapters.push((set, 1.0));
        (base, logits(&m, &ids))
    };
    let (hf_base, hf_lora) = on(&hf);
    let (g_base, g_lora) = on(&smollm());
    let v = hf_base.len() / ids.len();
    let (dmax, dsame) = compare(&hf_lora, &g_lora, v);
    let (moved, _) = compare(&hf_lora, &hf_base, v);
    println!("adapter on the Q4_1 GGUF vs on the HF dir: max |Δ logit| {dmax:.2e}, same argmax {:.1}% (the adapter moves logits by up to {moved:.2})", dsame * 100.0);
    assert!(dmax < 1e-3 && dsame == 1.0 && moved > 0.1);
    let _ = g_base;

    // export --peft from the HF base, loaded by PEFT on the directory.
    let peft = dir.join("peft");
    let (ok, _, err) = bin(&["export", "--model", &s(&hf), "--lora", &s(&out), "--peft", &s(&peft)]);
    assert!(ok, "export --peft failed:\n{err}");
    let theirs = hf_oracle(serde_json::json!({"dir": hf, "ids": ids, "peft_dir": peft, "out": dir}), &dir);
    assert_eq!(theirs["dtype"], serde_json::json!(["torch.float32"]));
    let (pmax, psame) = compare(&hf_lora, &read_f32(&dir.join("peft_logits.f32")), v);
    println!("PEFT on the HF dir with the exported adapter vs ours: max |Δ logit| {pmax:.2e}, same argmax {:.1}%", psame * 100.0);
    assert!(pmax < 2e-3 && psame == 1.0);

    // inspect shows the directory.
    let (ok, text, err) = bin(&["inspect", &s(&hf)]);
    assert!(ok, "{err}");
    assert!(text.contains("quantization:  none (dense)") && text.contains("F32") && text.contains("llama"), "{text}");
    // merge into a GGUF needs a GGUF base: refused clearly.
    let (ok, _, err) = bin(&["merge", "--model", &s(&hf), "--lora", &s(&out), "--out", &s(&dir.join("m.gguf"))]);
    assert!(!ok && err.contains("needs a GGUF base") && !err.contains("panicked"), "{err}");
}

/// A copy of the sharded fixture (small files copied, shards linked) to break.
fn broken_copy(tag: &str) -> PathBuf {
    let src = fixture().join("sharded");
    let d = tmpdir(tag);
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let to = d.join(p.file_name().unwrap());
        if p.extension().is_some_and(|x| x == "safetensors") {
            std::os::unix::fs::symlink(&p, &to).unwrap();
        } else {
            std::fs::copy(&p, &to).unwrap();
        }
    }
    d
}

/// `d/config.json` changed by `f` and written back; the changed JSON is returned.
fn edit_config(d: &Path, f: impl FnOnce(&mut serde_json::Value)) -> serde_json::Value {
    let cfg = d.join("config.json");
    let mut j: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    f(&mut j);
    std::fs::write(&cfg, serde_json::to_vec(&j).unwrap()).unwrap();
    j
}

fn open_err(d: &Path) -> String {
    let r = ModelFile::open(d).and_then(|m| {
        m.tokenizer()?;
        m.load()?;
        Ok(())
    });
    let e = r.expect_err("a broken directory opened").to_string();
    println!("{}: {e}", d.file_name().unwrap().to_string_lossy());
    // Through the CLI: `inspect` loads the weights, `tokenize` the tokenizer; one fails, cleanly.
    let (ok1, _, err1) = bin(&["inspect", d.to_str().unwrap()]);
    let (ok2, _, err2) = bin(&["tokenize", "--model", d.to_str().unwrap(), "--text", "hi"]);
    let one_failed = !ok1 || !ok2;
    let panicked = err1.contains("panicked") || err2.contains("panicked");
    assert!(one_failed && !panicked, "inspect: {err1}\ntokenize: {err2}");
    e
}

#[test]
fn broken_directories_are_clear_errors() {
    // A missing shard.
    let d = broken_copy("hf-bad-shard");
    let shard = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()).find(|p| p.to_string_lossy().contains("-00002-of-")).unwrap();
    std::fs::remove_file(&shard).unwrap();
    let e = open_err(&d);
    assert!(e.contains(shard.file_name().unwrap().to_str().unwrap()), "{e}");

    // The index names a tensor its shard does not hold.
    let d = broken_copy("hf-bad-index");
    let idx = d.join("model.safetensors.index.json");
    let mut j: serde_json::Value = serde_json::from_slice(&std::fs::read(&idx).unwrap()).unwrap();
    j["weight_map"]["model.layers.0.mlp.phantom.weight"] = j["weight_map"]["model.norm.weight"].clone();
    std::fs::write(&idx, serde_json::to_vec(&j).unwrap()).unwrap();
    let e = open_err(&d);
    assert!(e.contains("model.safetensors.index.json") && e.contains("model.layers.0.mlp.phantom.weight"), "{e}");

    // A tensor shape that disagrees with config.json.
    let d = broken_copy("hf-bad-shape");
    edit_config(&d, |j| {
        j["intermediate_size"] = serde_json::json!(1000);
    });
    let e = open_err(&d);
    assert!(e.contains("model.layers.0.mlp.gate_proj.weight") && e.contains("safetensors") && e.contains("[1000, 576]"), "{e}");

    // An unknown architecture.
    let d = broken_copy("hf-bad-arch");
    edit_config(&d, |j| {
        j["model_type"] = serde_json::json!("mamba");
        j["architectures"] = serde_json::json!(["MambaForCausalLM"]);
    });
    let e = open_err(&d);
    assert!(e.contains("config.json") && e.contains("mamba") && e.contains("not supported"), "{e}");

    // A quantization method nobody implemented.
    let d = broken_copy("hf-bad-quant");
    edit_config(&d, |j| {
        j["quantization_config"] = serde_json::json!({"quant_method": "bitsandbytes"});
    });
    // (the dense weights are still there, so the matrices open; inspect names the method)
    let (ok, text, err) = bin(&["inspect", d.to_str().unwrap()]);
    assert!(ok && text.contains("quantization:  bitsandbytes"), "{text}{err}");

    // A non-UTF-8 tokenizer.json.
    let d = broken_copy("hf-bad-tok");
    let t = d.join("tokenizer.json");
    let mut b = std::fs::read(&t).unwrap();
    b.splice(10..10, [0xff, 0xfe]);
    std::fs::write(&t, b).unwrap();
    let e = open_err(&d);
    assert!(e.contains("tokenizer.json") && e.contains("not UTF-8"), "{e}");
}

#[test]
fn outputs_inside_the_directory_never_replace_its_files() {
    // The directory's own files are inputs: an adapter, log or PEFT export aimed at one of them is
    // refused even with --force, whether --model names the directory or its config.json.
    let d = broken_copy("hf-out-is-in");
    let data = root().join("examples/style_degozaru.jsonl");
    let shard =
        std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|x| x == "safetensors")).unwrap();
    let before: Vec<(PathBuf, Vec<u8>)> =
        ["config.json", "tokenizer.json"].iter().map(|f| (d.join(f), std::fs::read(d.join(f)).unwrap())).collect();
    let cfg = d.join("config.json");
    let tok = d.join("tokenizer.json");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let cases: Vec<Vec<String>> = vec![
        vec!["--force".into(), "--model".into(), s(&d), "--data".into(), s(&data), "--steps".into(), "1".into(), "--out".into(), s(&shard)],
        vec!["--force".into(), "--model".into(), s(&cfg), "--data".into(), s(&data), "--steps".into(), "1".into(), "--out".into(), s(&tok)],
        vec![
            "--force".into(),
            "--model".into(),
            s(&cfg),
            "--data".into(),
            s(&data),
            "--steps".into(),
            "1".into(),
            "--out".into(),
            s(&d.join("a.gguf")),
            "--log".into(),
            s(&cfg),
        ],
    ];
    for args in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, _, err) = bin(&args);
        assert!(!ok && err.contains("is the same file as") && !err.contains("panicked"), "{args:?}: {err}");
    }
    for (p, bytes) in before {
        assert!(std::fs::read(&p).unwrap() == bytes, "{} was changed", p.display());
    }
    assert!(std::fs::symlink_metadata(&shard).unwrap().file_type().is_symlink(), "the shard link was replaced");
}

/// `broken_copy` with its last shard (layers 28-29, the final norm) rewritten: `edit` gets the
/// parsed header and the data section. Returns the directory and the shard's file name.
fn broken_shard(tag: &str, edit: impl Fn(&mut serde_json::Map<String, serde_json::Value>, &mut Vec<u8>)) -> (PathBuf, String) {
    let d = broken_copy(tag);
    let name = "model-00006-of-00006.safetensors";
    let p = d.join(name);
    let bytes = std::fs::read(&p).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut data = bytes[8 + n..].to_vec();
    edit(&mut header, &mut data);
    let mut h = serde_json::to_vec(&header).unwrap();
    h.resize(h.len().div_ceil(8) * 8, b' ');
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&data);
    std::fs::remove_file(&p).unwrap(); // the link to the fixture, not the fixture
    std::fs::write(&p, out).unwrap();
    (d, name.to_string())
}

#[test]
fn corrupt_safetensors_and_configs_in_a_directory_are_clear_errors() {
    const T: &str = "model.layers.29.mlp.up_proj.weight";
    // The shard cut short, as by an interrupted download: the last tensors end past EOF.
    let (d, shard) = broken_shard("hf-st-short", |_, data| data.truncate(data.len() - 1000));
    let e = open_err(&d);
    assert!(e.contains(&shard) && e.contains("model.norm.weight") && e.contains("outside the"), "{e}");

    // A header length past the end of the file.
    let (d, shard) = broken_shard("hf-st-hlen", |_, _| {});
    let p = d.join(&shard);
    let mut b = std::fs::read(&p).unwrap();
    let len = b.len() as u64;
    b[..8].copy_from_slice(&(len + 100).to_le_bytes());
    std::fs::write(&p, b).unwrap();
    let e = open_err(&d);
    assert!(e.contains(&shard) && e.contains(&format!("header length {} does not fit", len + 100)), "{e}");

    // Two tensors over the same bytes.
    let (d, shard) = broken_shard("hf-st-overlap", |h, _| {
        let gate = h["model.layers.29.mlp.gate_proj.weight"]["data_offsets"].clone();
        h[T]["data_offsets"] = gate;
    });
    let e = open_err(&d);
    assert!(e.contains(&shard) && e.contains("overlap") && e.contains("model.layers.29.mlp."), "{e}");

    // A dtype the format does not have, and one it has that we do not read.
    for (tag, dtype, want) in [("hf-st-dtype", "Q4", "dtype Q4 is not"), ("hf-st-f64", "F64", "dtype F64 is not supported")] {
        let (d, shard) = broken_shard(tag, |h, _| h[T]["dtype"] = serde_json::json!(dtype));
        let e = open_err(&d);
        assert!(e.contains(&shard) && e.contains(T) && e.contains(want), "{e}");
    }

    // config.json names one layer more than the files hold.
    let d = broken_copy("hf-extra-layer");
    let j = edit_config(&d, |j| {
        j["num_hidden_layers"] = serde_json::json!(31);
    });
    let e = open_err(&d);
    assert!(e.contains("model.safetensors.index.json") && e.contains("'model.layers.30.") && e.contains("missing"), "{e}");
    // The same with one model.safetensors.
    let d = tmpdir("hf-extra-layer-1");
    for e in std::fs::read_dir(fixture().join("f32")).unwrap() {
        let p = e.unwrap().path();
        let to = d.join(p.file_name().unwrap());
        if p.extension().is_some_and(|x| x == "safetensors") {
            std::os::unix::fs::symlink(&p, &to).unwrap();
        } else {
            std::fs::copy(&p, &to).unwrap();
        }
    }
    std::fs::write(d.join("config.json"), serde_json::to_vec(&j).unwrap()).unwrap();
    let e = open_err(&d);
    assert!(e.contains("model.safetensors") && e.contains("'model.layers.30.") && e.contains("missing"), "{e}");
}
