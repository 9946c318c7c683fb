//! The model-running subcommands end to end: `generate` (greedy text equal to llama.cpp's
//! greedy continuation), `tokenize`, `perplexity`, `bench`, `--help` examples, and bad input
//! giving a clear error with exit code 1 (never a panic).
mod common;

use std::process::Command;

use common::{oracle, tmpdir};
use finetune::gguf::{GgufFile, GgufWriter, Value};

fn run(args: &[&str]) -> (bool, String, String, Option<i32>) {
    let o = Command::new(common::bin()).args(args).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into(), o.status.code())
}

#[test]
fn generate_greedy_answers_like_llama_cpp() {
    let m = common::smollm();
    let (ok, out, err, _) = run(&["generate", "--model", m.to_str().unwrap(), "--prompt", "The capital of France is", "-n", "4", "--threads", "2"]);
    assert!(ok, "{err}");
    let top = oracle(&["llama-top", m.to_str().unwrap(), "The capital of France is"]);
    assert!(out.starts_with(top["top_piece"].as_str().unwrap()), "ours {out:?}, llama.cpp's next token {}", top["top_piece"]);
    assert!(out.starts_with(" Paris"), "{out:?}");
    assert!(err.contains("tokens in") && err.contains("t/s"), "no tokens/s line: {err}");
}

#[test]
fn tokenize_and_perplexity_commands() {
    let m = common::smollm();
    let (ok, out, err, _) = run(&["tokenize", "--model", m.to_str().unwrap(), "--text", "Hello world, 12345!"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "19556 905 28 216 33 34 35 36 37 17");
    let (ok, out, err, _) = run(&["tokenize", "--model", m.to_str().unwrap(), "--text", "<|im_start|>user", "--parse-special", "--json"]);
    assert!(ok, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["ids"][0], 1, "<|im_start|> is one special token: {j}");
    let text = common::root().join("tests/data/ppl_text.txt");
    let (ok, out, err, _) = run(&["perplexity", "--model", m.to_str().unwrap(), "--file", text.to_str().unwrap(), "--ctx", "256"]);
    assert!(ok, "{err}");
    let r = oracle(&["llama-perplexity", m.to_str().unwrap(), text.to_str().unwrap(), "256"]);
    let ppl: f64 = out.trim().strip_prefix("PPL = ").unwrap().split(' ').next().unwrap().parse().unwrap();
    let want = r["ppl"].as_f64().unwrap();
    assert!((ppl - want).abs() / want < 0.01, "PPL {ppl} vs llama.cpp {want}");
}

#[test]
fn every_subcommand_help_has_an_example() {
    for sub in ["inspect", "tokenize", "generate", "perplexity", "bench"] {
        let (ok, out, _, _) = run(&[sub, "--help"]);
        assert!(ok);
        assert!(out.contains("finetune ") && (out.contains("Example") || out.contains("Examples")), "{sub} --help:\n{out}");
    }
}

#[test]
fn model_commands_reject_bad_input_cleanly() {
    let dir = tmpdir("cli-model-bad");
    let m = common::smollm();
    let ms = m.to_str().unwrap();
    // A valid GGUF of an architecture we do not run.
    let mamba = dir.join("mamba.gguf");
    let src = GgufFile::open(&m).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in &src.metadata {
        w.set(k.clone(), v.clone());
    }
    w.set("general.architecture", Value::String("mamba".into()));
    w.create(&mamba).unwrap().finish().unwrap();
    let short = dir.join("short.txt");
    std::fs::write(&short, "too short").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["generate", "--model", ms], "--prompt"),
        (vec!["generate", "--model", "/nope.gguf", "--prompt", "x"], "No such file"),
        (vec!["generate", "--model", mamba.to_str().unwrap(), "--prompt", "x"], "architecture 'mamba' is not supported (supported: llama, qwen2, qwen3, gemma3)"),
        (vec!["generate", "--model", ms, "--prompt", "a b c d e f g h", "--ctx", "4"], "more than --ctx"),
        (vec!["perplexity", "--model", ms, "--file", short.to_str().unwrap(), "--ctx", "512"], "needs at least one chunk"),
        (vec!["perplexity", "--model", ms, "--file", "/nope.txt"], "/nope.txt"),
        (vec!["bench", "--model", ms, "-p", "0"], "at least 1"),
        (vec!["tokenize", "--model", ms], "--text"),
    ];
    for (args, want) in cases {
        let (ok, _, err, code) = run(&args);
        assert!(!ok, "{args:?} succeeded");
        assert_eq!(code, Some(1), "{args:?}: exit {code:?} (101 = panic)\n{err}");
        assert!(err.contains(want), "{args:?}: expected {want:?} in {err}");
    }
}
