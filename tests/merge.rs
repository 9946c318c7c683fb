//! A short training run through the CLI, then the adapter in real llama.cpp and merged into the
//! model: llama.cpp's perplexity on the training text drops with the adapter; our engine's
//! perplexity with the adapter matches llama.cpp's; `finetune merge --type Q8_0` gives a model
//! whose llama.cpp perplexity is within 1% of base + adapter; the default `finetune merge`
//! (`--type auto`) within 1.5% on held-out text, for both real models, and reports ≥ 99% of the
//! update kept, while `--type same` (which it replaced as the default) does not; `--type same`
//! keeps every tensor's type, all metadata but `general.name`, and the untouched tensors byte for
//! byte. `export --lmstudio DIR` writes the merged model in LM Studio's layout and refuses to
//! replace it without `--force`.
mod common;

use std::path::Path;
use std::process::Command;

use common::{bin, gemma, oracle, smollm, tmpdir};
use finetune::adapter::{write_adapter, BaseInfo};
use finetune::gguf::GgufModel;
use finetune::lora::Target;
use finetune::model::Model;
use finetune::quant::GgmlType;

fn run(args: &[&str]) -> (String, String) {
    let out = Command::new(bin()).args(args).output().expect("run finetune");
    let (so, se) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "finetune {args:?} failed:\n{se}");
    assert!(!se.contains("panicked"), "{se}");
    (so, se)
}

fn run_fail(args: &[&str]) -> String {
    let out = Command::new(bin()).args(args).output().expect("run finetune");
    let se = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "finetune {args:?} succeeded but should fail");
    assert!(!se.contains("panicked"), "{se}");
    se
}

/// `count` prompt/response pairs of a JSONL file from line `skip`, as plain text in `path`.
fn pairs_text(jsonl: &Path, skip: usize, count: usize, path: &Path) {
    let raw = std::fs::read_to_string(jsonl).unwrap();
    let text: String = raw
        .lines()
        .skip(skip)
        .take(count)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!("{} {}\n", v["prompt"].as_str().unwrap(), v["response"].as_str().unwrap())
        })
        .collect();
    std::fs::write(path, text).unwrap();
}

/// The percentage in "the merged weights carry X% of the adapters' update".
fn retained(report: &str) -> f64 {
    let line = report.lines().find(|l| l.contains("of the adapters' update")).unwrap_or_else(|| panic!("no retention line:\n{report}"));
    line.split_whitespace().find_map(|w| w.strip_suffix('%')?.parse().ok()).unwrap_or_else(|| panic!("{line}"))
}

/// Default merge (`--type auto`) against llama.cpp base + adapter on `heldout`; `--type same`
/// must miss (so this check can fail). Returns the merged file.
fn check_default_merge(dir: &Path, m: &str, a: &str, heldout: &str) -> std::path::PathBuf {
    let with = llama_ppl(m, heldout, &[format!("{a}:1.0")]);
    let base = llama_ppl(m, heldout, &[]);
    let auto = dir.join("merged-auto.gguf");
    let (_, err) = run(&["merge", "--model", m, "--lora", a, "--out", auto.to_str().unwrap(), "--threads", "2"]);
    println!("{err}");
    let kept = retained(&err);
    assert!(kept >= 99.0, "default merge keeps {kept}% of the update:\n{err}");
    assert!(err.contains("size:") && err.contains("MB in the base"), "{err}");
    let merged = llama_ppl(auto.to_str().unwrap(), heldout, &[]);
    let same = dir.join("merged-same-heldout.gguf");
    run(&["merge", "--model", m, "--lora", a, "--out", same.to_str().unwrap(), "--type", "same", "--threads", "2"]);
    let merged_same = llama_ppl(same.to_str().unwrap(), heldout, &[]);
    println!("held-out llama.cpp PPL: base {base:.4}, base + adapter {with:.4}, merged (auto) {merged:.4}, merged (same) {merged_same:.4}");
    // Re-quantizing to Q8_0 moves a short held-out text's PPL by about 1% by itself (measured
    // 2026-12-07: auto 1.05% from base + adapter, but on the better side, with every update
    // kept), hence 1.5% here; `--type same` must miss by more than 1% and by more than auto.
    let (off_auto, off_same) = ((merged - with).abs() / with, (merged_same - with).abs() / with);
    assert!(off_auto < 0.015, "default merge PPL {merged} vs base+adapter {with}");
    assert!(
        off_same > 0.01 && off_same > off_auto,
        "the adapter is too weak for this check: --type same ({merged_same}) is about as close to base+adapter ({with}) as auto ({merged})"
    );
    let sz = |p: &Path| std::fs::metadata(p).unwrap().len();
    println!("file size: base {} bytes, merged (auto) {} bytes", sz(Path::new(m)), sz(&auto));
    auto
}

fn llama_ppl(model: &str, text: &str, adapters: &[String]) -> f64 {
    let mut args = vec!["llama-perplexity", model, text, "128"];
    args.extend(adapters.iter().map(String::as_str));
    oracle(&args)["ppl"].as_f64().unwrap()
}

#[test]
fn trained_adapter_in_llama_cpp_and_merged() {
    let dir = tmpdir("merge");
    let model = smollm();
    let m = model.to_str().unwrap();
    let data = common::root().join("examples/style_degozaru.jsonl");
    // Training text: the first 40 pairs as plain text.
    let raw = std::fs::read_to_string(&data).unwrap();
    let text: String = raw
        .lines()
        .take(40)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!("{} {}\n", v["prompt"].as_str().unwrap(), v["response"].as_str().unwrap())
        })
        .collect();
    let text_path = dir.join("train.txt");
    std::fs::write(&text_path, text).unwrap();
    let t = text_path.to_str().unwrap();

    let adapter = dir.join("a.gguf");
    let a = adapter.to_str().unwrap();
    run(&[
        "--model",
        m,
        "--data",
        data.to_str().unwrap(),
        "--out",
        a,
        "--steps",
        "20",
        "--grad-accum",
        "4",
        "--lr",
        "2e-3",
        "--rank",
        "8",
        "--seq-len",
        "128",
        "--quiet",
        "--threads",
        "2",
    ]);

    let base = llama_ppl(m, t, &[]);
    let with = llama_ppl(m, t, &[format!("{a}:1.0")]);
    let (ours, _) = run(&["perplexity", "--model", m, "--file", t, "--ctx", "128", "--lora", a, "--threads", "2"]);
    let ours: f64 = ours.split_whitespace().nth(2).unwrap().parse().unwrap();
    println!("llama.cpp PPL base {base:.4}, with adapter {with:.4}; ours with adapter {ours:.4}");
    assert!(with < 0.95 * base, "the trained adapter does not lower llama.cpp's perplexity: {base} → {with}");
    assert!((ours - with).abs() / with < 0.01, "our perplexity with the adapter {ours} vs llama.cpp's {with}");

    // Merge, finer type: the adapter's effect is kept.
    let q8 = dir.join("merged-q8.gguf");
    let (_, err) = run(&["merge", "--model", m, "--lora", a, "--out", q8.to_str().unwrap(), "--type", "Q8_0", "--threads", "2"]);
    assert!(err.contains("100.0%"), "{err}");
    let merged = llama_ppl(q8.to_str().unwrap(), t, &[]);
    println!("llama.cpp PPL merged (Q8_0) {merged:.4}");
    assert!((merged - with).abs() / with < 0.01, "merged PPL {merged} vs base+adapter {with}");

    // Merge, same types: structure preserved; the report says how much survived.
    let same = dir.join("merged-same.gguf");
    let (_, err) = run(&["merge", "--model", m, "--lora", a, "--out", same.to_str().unwrap(), "--type", "same", "--threads", "2"]);
    println!("{err}");
    assert!(err.contains("of the adapters' update"), "{err}");
    assert!(err.contains("every merged weight kept its type"), "{err}");
    let (b, g) = (GgufModel::open(&model).unwrap(), GgufModel::open(&same).unwrap());
    let (bi, gi): (Vec<_>, Vec<_>) = (b.tensor_infos().collect(), g.tensor_infos().collect());
    assert_eq!(bi.len(), gi.len());
    let mut changed = 0;
    for (x, y) in bi.iter().zip(&gi) {
        assert_eq!((&x.name, x.ty, &x.dims), (&y.name, y.ty, &y.dims));
        let adapted = [".attn_q.", ".attn_k.", ".attn_v.", ".attn_output.", ".ffn_gate.", ".ffn_up.", ".ffn_down."]
            .iter()
            .any(|s| x.name.contains(s));
        let same_bytes = b.tensor(&x.name).unwrap().data == g.tensor(&y.name).unwrap().data;
        if !adapted {
            assert!(same_bytes, "{} changed although it is not adapted", x.name);
        } else if !same_bytes {
            changed += 1;
        }
    }
    assert!(changed > 0, "no adapted tensor changed");
    for (k, v) in &b.main().metadata {
        if k == "general.name" {
            assert!(g.main().get_str(k).unwrap().contains("merged"));
        } else {
            assert_eq!(g.main().get(k), Some(v), "metadata {k} differs");
        }
    }
    let merged_same = llama_ppl(same.to_str().unwrap(), t, &[]);
    println!("llama.cpp PPL merged (same types, Q4_1) {merged_same:.4}");
    assert!(merged_same.is_finite());

    // The default merge keeps the update, on held-out text.
    let heldout = dir.join("heldout.txt");
    pairs_text(&common::root().join("examples/style_degozaru_eval.jsonl"), 0, 40, &heldout);
    check_default_merge(&dir, m, a, heldout.to_str().unwrap());
}

/// A random adapter (B ≠ 0, large enough to move llama.cpp's perplexity) on `model`, written
/// as the GGUF adapter `dir/name.gguf`.
fn random_adapter(model: &Path, dir: &Path, name: &str, b_scale: f32) -> std::path::PathBuf {
    let g = GgufModel::open(model).unwrap();
    let m = Model::load(&g).unwrap();
    let lora = common::lora::random_lora(&m, &[Target::Q, Target::V, Target::O, Target::Up, Target::Down], 8, 16.0, b_scale, 7);
    let path = dir.join(format!("{name}.gguf"));
    write_adapter(&path, &BaseInfo::from_gguf(g.main()), &lora, GgmlType::F32).unwrap();
    path
}

#[test]
fn default_merge_keeps_update_gemma() {
    let dir = tmpdir("merge-gemma");
    let model = gemma();
    let a = random_adapter(&model, &dir, "gemma-style", 0.04);
    let heldout = dir.join("heldout.txt");
    pairs_text(&common::root().join("examples/style_degozaru_eval.jsonl"), 0, 40, &heldout);
    check_default_merge(&dir, model.to_str().unwrap(), a.to_str().unwrap(), heldout.to_str().unwrap());
}

#[test]
fn export_lmstudio_layout_and_force() {
    let dir = tmpdir("merge-lmstudio");
    let model = smollm();
    let m = model.to_str().unwrap();
    let a = random_adapter(&model, &dir, "smol-style", 0.02);
    let a = a.to_str().unwrap();
    let root = dir.join("lms");
    let r = root.to_str().unwrap();
    let (out, err) = run(&["export", "--lmstudio", r, "--model", m, "--lora", a, "--threads", "2"]);
    println!("{err}");
    let path = root.join("finetune/smol-style/smol-style.gguf");
    assert!(path.is_file(), "{} missing; stdout {out}", path.display());
    assert_eq!(out.trim(), format!("lms import {}", path.display()));
    assert!(retained(&err) >= 99.0, "{err}");
    let (b, g) = (GgufModel::open(&model).unwrap(), GgufModel::open(&path).unwrap());
    assert_eq!(g.main().get_str("general.name"), Some("smol-style"));
    let tpl = b.main().get("tokenizer.chat_template").expect("the base has a chat template");
    assert_eq!(g.main().get("tokenizer.chat_template"), Some(tpl), "chat template changed");
    assert_eq!(b.tensor_infos().count(), g.tensor_infos().count());

    // An existing file is kept unless --force; --name picks folder, file and general.name.
    let before = std::fs::read(&path).unwrap();
    let err = run_fail(&["export", "--lmstudio", r, "--model", m, "--lora", a, "--threads", "2"]);
    assert!(err.contains("exists") && err.contains("--force") && err.contains("smol-style.gguf"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "the refused export changed the file");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    run(&["export", "--lmstudio", r, "--model", m, "--lora", a, "--force", "--threads", "2"]);
    assert!(std::fs::metadata(&path).unwrap().modified().unwrap() > mtime, "--force did not rewrite the file");
    assert!(GgufModel::open(&path).is_ok());
    run(&["export", "--lmstudio", r, "--model", m, "--lora", a, "--name", "samurai-gemma", "--publisher", "me", "--threads", "2"]);
    let named = root.join("me/samurai-gemma/samurai-gemma.gguf");
    assert_eq!(GgufModel::open(&named).unwrap().main().get_str("general.name"), Some("samurai-gemma"));

    // The target is never an input, even with --force: an adapter or a base model that already
    // sits where the merged file would go is refused and left as it was.
    let lora_in = root.join("finetune/in/in.gguf");
    std::fs::create_dir_all(lora_in.parent().unwrap()).unwrap();
    std::fs::copy(a, &lora_in).unwrap();
    let lora_bytes = std::fs::read(&lora_in).unwrap();
    let err = run_fail(&["export", "--lmstudio", r, "--model", m, "--lora", lora_in.to_str().unwrap(), "--force", "--threads", "2"]);
    assert!(err.contains("is the same file as --lora") && err.contains("in.gguf"), "{err}");
    assert_eq!(std::fs::read(&lora_in).unwrap(), lora_bytes, "the refused export changed the adapter");
    let base_in = root.join("pub/base/base.gguf");
    std::fs::create_dir_all(base_in.parent().unwrap()).unwrap();
    std::fs::copy(&model, &base_in).unwrap();
    let base_len = std::fs::metadata(&base_in).unwrap().len();
    let args =
        ["export", "--lmstudio", r, "--model", base_in.to_str().unwrap(), "--lora", a, "--name", "base", "--publisher", "pub", "--force"];
    let err = run_fail(&args);
    assert!(err.contains("is the same file as --model") && err.contains("base.gguf"), "{err}");
    assert_eq!(std::fs::metadata(&base_in).unwrap().len(), base_len, "the refused export changed the base model");
}
