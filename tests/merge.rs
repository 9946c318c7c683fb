//! A short training run through the CLI, then the adapter in real llama.cpp and merged into the
//! model: llama.cpp's perplexity on the training text drops with the adapter; our engine's
//! perplexity with the adapter matches llama.cpp's; `finetune merge --type Q8_0` gives a model
//! whose llama.cpp perplexity is within 1% of base + adapter; `--type same` keeps every tensor's
//! type, all metadata but `general.name`, and the untouched tensors byte for byte, and reports
//! how much of the update survived requantization.
mod common;

use std::process::Command;

use common::{bin, oracle, smollm, tmpdir};
use finetune::gguf::GgufModel;

fn run(args: &[&str]) -> (String, String) {
    let out = Command::new(bin()).args(args).output().expect("run finetune");
    let (so, se) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "finetune {args:?} failed:\n{se}");
    assert!(!se.contains("panicked"), "{se}");
    (so, se)
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
    let (_, err) = run(&["merge", "--model", m, "--lora", a, "--out", same.to_str().unwrap(), "--threads", "2"]);
    println!("{err}");
    assert!(err.contains("of the adapters' update"), "{err}");
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
}
