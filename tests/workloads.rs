//! The bundled workloads, CI-sized: a short training run must improve the task metric over the
//! base model on held-out records (scored by `finetune eval --compare`, greedy, on records that
//! are not in the training file). The figures and exact commands are in examples/README.md.
//!
//! Style (examples/style_degozaru*.jsonl) on SmolLM2-135M-Instruct Q4_1: 24 steps × 4 sequences
//! at --seq-len 64, then the ending rate on the first 12 held-out prompts (measured: base 0.0%,
//! tuned 83.3%; about 1.5 minutes on 2 busy cores).
mod common;

use std::process::Command;

use serde_json::Value;

fn run(args: &[&str]) -> String {
    let o = Command::new(common::bin()).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "finetune {args:?} failed:\n{text}");
    String::from_utf8_lossy(&o.stdout).into()
}

#[test]
fn style_workload_improves_ending_rate_on_held_out() {
    let dir = common::tmpdir("workload-style");
    let model = common::smollm().to_str().unwrap().to_string();
    let root = common::root();
    let train = root.join("examples/style_degozaru.jsonl").to_str().unwrap().to_string();
    let held = root.join("examples/style_degozaru_eval.jsonl").to_str().unwrap().to_string();
    let out = dir.join("samurai.gguf").to_str().unwrap().to_string();
    let metric = "ends-with:says the samurai";
    run(&[
        "--model",
        &model,
        "--data",
        &train,
        "--steps",
        "24",
        "--grad-accum",
        "4",
        "--seq-len",
        "64",
        "--lr",
        "1e-3",
        "--out",
        &out,
        "--quiet",
    ]);
    // No held-out prompt is in the training file.
    let prompts = |p: &str| -> Vec<String> {
        std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["prompt"].to_string()).collect()
    };
    let seen = prompts(&train);
    assert!(prompts(&held).iter().all(|p| !seen.contains(p)), "held-out prompts overlap the training file");
    let text = run(&[
        "eval",
        "--model",
        &model,
        "--lora",
        &out,
        "--compare",
        "--data",
        &held,
        "--limit",
        "12",
        "--metric",
        metric,
        "-n",
        "32",
        "--json",
        "--quiet",
    ]);
    let v: Value = serde_json::from_str(&text).unwrap();
    let score = |i: usize| v["configs"][i]["metrics"][metric]["score"].as_f64().unwrap();
    let (base, tuned) = (score(0), score(1));
    assert_eq!(v["configs"][0]["name"], "base");
    eprintln!("style workload: ending rate base {:.1}% → tuned {:.1}% (12 held-out records)", 100.0 * base, 100.0 * tuned);
    assert!(tuned >= base + 0.5, "the adapter must raise the ending rate by 50 points: base {base}, tuned {tuned}");
}
