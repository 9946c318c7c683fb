//! Training end to end through the CLI on SmolLM2-135M: the same seed gives the same adapter
//! bytes; a run stopped by SIGINT (exit 130, a partial adapter) and resumed equals an uninterrupted one (adapter bytes and
//! per-step losses); a short run measurably teaches the samurai style; bad data, bad options and
//! a diverging run are clear errors with exit code 1, never panics; the metrics log and the loss
//! curve are well formed. Runs are kept tiny (rank 4, two targets, --seq-len 128).
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::tmpdir;

fn run(args: &[&str]) -> (bool, String, String, Option<i32>) {
    let o = Command::new(common::bin()).args(args).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into(), o.status.code())
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// `finetune --model smollm --data D` with the small settings (those named in `extra` take
/// its values), plus `extra`.
fn train_args(data: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> =
        ["--model", &s(&common::smollm()), "--data", &s(data), "--out", &s(out), "--quiet"].iter().map(|x| x.to_string()).collect();
    for [flag, value] in [["--rank", "4"], ["--targets", "q,v"], ["--seq-len", "128"], ["--grad-accum", "1"], ["--threads", "2"]] {
        if !extra.contains(&flag) {
            v.extend([flag.to_string(), value.to_string()]);
        }
    }
    v.extend(extra.iter().map(|x| x.to_string()));
    v
}

fn train(data: &Path, out: &Path, extra: &[&str]) -> (bool, String, Option<i32>) {
    let a = train_args(data, out, extra);
    let (ok, _, err, code) = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    (ok, err, code)
}

fn samurai() -> PathBuf {
    common::root().join("examples/style_degozaru.jsonl")
}

/// (step, loss) of every line of a metrics log.
fn losses(log: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: not JSON ({e}): {l}", log.display()));
            (j["step"].as_u64().unwrap(), j["loss"].as_f64().unwrap())
        })
        .collect()
}

#[test]
fn same_seed_same_bytes_and_the_log_and_curve_are_well_formed() {
    let dir = tmpdir("train-det");
    let (a, b, c) = (dir.join("a.gguf"), dir.join("b.gguf"), dir.join("c.gguf"));
    let log = dir.join("a.jsonl");
    let t = Instant::now();
    let (ok, err, _) = train(&samurai(), &a, &["--steps", "3", "--seed", "7", "--log", &s(&log)]);
    assert!(ok, "{err}");
    eprintln!("3 steps in {:.1}s", t.elapsed().as_secs_f64());
    let (ok, err, _) = train(&samurai(), &b, &["--steps", "3", "--seed", "7"]);
    assert!(ok, "{err}");
    let (ok, err, _) = train(&samurai(), &c, &["--steps", "3", "--seed", "8"]);
    assert!(ok, "{err}");
    let (ba, bb, bc) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), std::fs::read(&c).unwrap());
    assert!(ba == bb, "same seed, data and threads gave different adapter bytes");
    assert!(ba != bc, "a different seed gave the same adapter bytes");

    // Metrics: one JSON object per step with its fields.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (i, j) in lines.iter().enumerate() {
        assert_eq!(j["step"].as_u64(), Some(i as u64 + 1), "{j}");
        let loss = j["loss"].as_f64().unwrap();
        assert!(loss.is_finite() && loss > 0.0, "{j}");
        assert!(j["lr"].as_f64().unwrap() > 0.0, "{j}");
        assert!(j["tok_per_s"].as_f64().unwrap() > 0.0, "{j}");
        assert!(j["rss"].as_u64().unwrap() > 10 << 20, "{j}");
        assert!(j["grad_norm"].as_f64().unwrap() > 0.0, "{j}");
    }
    // The loss curve beside the adapter.
    let svg = std::fs::read_to_string(dir.join("a.loss.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
    assert!(svg.contains("<polyline"), "no loss line: {svg}");
    assert_eq!(svg.matches("<svg").count(), svg.matches("</svg>").count());
}

#[test]
fn interrupted_and_resumed_equals_uninterrupted() {
    let dir = tmpdir("train-resume");
    let x = dir.join("x.gguf");
    let x_log = dir.join("x.jsonl");
    let t = Instant::now();
    let (ok, err, _) = train(&samurai(), &x, &["--steps", "6", "--save-every", "3", "--log", &s(&x_log)]);
    assert!(ok, "{err}");
    eprintln!("6 steps in {:.1}s", t.elapsed().as_secs_f64());
    assert!(dir.join("x.gguf.ckpt/checkpoint-000006.gguf").exists());

    // Same run, SIGINT once the step-3 checkpoint exists: it saves a checkpoint and a partial
    // adapter after the current step and exits 130.
    let y = dir.join("y.gguf");
    let y_log = dir.join("y.jsonl");
    let ckpt = dir.join("y.ckpt");
    let a = train_args(&samurai(), &y, &["--steps", "6", "--save-every", "3", "--log", &s(&y_log), "--checkpoint-dir", &s(&ckpt)]);
    let a: Vec<&str> = a.iter().map(String::as_str).filter(|&x| x != "--quiet").collect();
    let mut child = Command::new(common::bin()).args(&a).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !ckpt.join("checkpoint-000003.gguf").exists() {
        assert!(Instant::now() < deadline, "no checkpoint-000003 after 300 s");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its step-3 checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    let k = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(k.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "SIGINT: {err}");
    assert!(err.contains("interrupted by SIGINT") && err.contains("PARTIAL") && err.contains("--resume"), "{err}");
    let stopped_at = losses(&y_log).len() as u64;
    let partial = finetune::gguf::GgufFile::open(&y).unwrap();
    assert_eq!(partial.get("finetune.training.partial").and_then(|v| v.as_bool()), Some(true), "{err}");
    assert_eq!(partial.get_u64("finetune.training.steps_done"), Some(stopped_at));
    drop(partial);
    assert!((4..6).contains(&stopped_at), "stopped after step {stopped_at}:\n{err}");
    assert!(ckpt.join(format!("checkpoint-{stopped_at:06}.gguf")).exists(), "no checkpoint for step {stopped_at}:\n{err}");

    let (ok, err, _) = train(
        &samurai(),
        &y,
        &["--steps", "6", "--save-every", "3", "--log", &s(&y_log), "--checkpoint-dir", &s(&ckpt), "--resume", &s(&ckpt)],
    );
    assert!(ok, "{err}");
    assert!(std::fs::read(&x).unwrap() == std::fs::read(&y).unwrap(), "resumed adapter differs from the uninterrupted one");
    let (lx, ly) = (losses(&x_log), losses(&y_log));
    assert_eq!(lx.len(), 6);
    assert_eq!(lx, ly, "per-step losses differ");

    // Resuming from an explicit earlier checkpoint file drops the log's later lines (no step
    // twice); the finished adapter is replaced only with --force.
    let (ok, err, _) = train(
        &samurai(),
        &y,
        &[
            "--steps",
            "6",
            "--log",
            &s(&y_log),
            "--checkpoint-dir",
            &s(&ckpt),
            "--resume",
            &s(&ckpt.join("checkpoint-000003.gguf")),
            "--force",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(losses(&y_log), lx, "log after resuming from step 3 of a finished run");
    assert!(std::fs::read(&x).unwrap() == std::fs::read(&y).unwrap());

    // Different options: a clear refusal naming the mismatch.
    let (ok, err, code) =
        train(&samurai(), &y, &["--steps", "6", "--lr", "1e-3", "--checkpoint-dir", &s(&ckpt), "--resume", &s(&ckpt), "--force"]);
    assert!(!ok && code == Some(1), "{code:?} {err}");
    assert!(err.contains("different run") && err.contains("lr=0.001"), "{err}");
    let (ok, err, code) = train(&samurai(), &y, &["--steps", "9", "--checkpoint-dir", &s(&ckpt), "--resume", &s(&ckpt), "--force"]);
    assert!(!ok && code == Some(1), "{code:?} {err}");
    assert!(err.contains("6 steps") && err.contains("9"), "{err}");
    let (ok, err, code) = train(&samurai(), &y, &["--resume", &s(&dir)]);
    assert!(!ok && code == Some(1) && err.contains("no checkpoint-*.gguf"), "{code:?} {err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// How many of the first `n` held-out prompts get a greedy chat answer ending in the phrase.
fn samurai_answers(lora: Option<&Path>, n: usize) -> (usize, Vec<String>) {
    let eval = std::fs::read_to_string(common::root().join("examples/style_degozaru_eval.jsonl")).unwrap();
    let m = s(&common::smollm());
    let mut hits = 0;
    let mut answers = Vec::new();
    for line in eval.lines().take(n) {
        let j: serde_json::Value = serde_json::from_str(line).unwrap();
        let prompt = j["prompt"].as_str().unwrap();
        let mut a = vec!["generate", "--model", &m, "--chat", "--prompt", prompt, "-n", "48", "--temp", "0", "--threads", "2"];
        let l = lora.map(s);
        if let Some(l) = &l {
            a.extend(["--lora", l.as_str()]);
        }
        let (ok, out, err, _) = run(&a);
        assert!(ok, "{err}");
        if out.trim_end().ends_with(", says the samurai.") {
            hits += 1;
        }
        answers.push(out.trim_end().to_string());
    }
    (hits, answers)
}

#[test]
fn a_short_run_teaches_the_samurai_style() {
    // Measured on 2 shared cores: base 0/10; after these 12 packed steps 7/10 (8 constant-LR
    // steps gave 5/10; 40 unpacked steps of 4 sequences took ~110 s). Training ≈ 40–60 s here.
    let dir = tmpdir("train-learn");
    let out = dir.join("samurai.gguf");
    let t = Instant::now();
    let (ok, err, _) = train(
        &samurai(),
        &out,
        &["--rank", "8", "--targets", "q,v,o,down", "--grad-accum", "2", "--steps", "12", "--pack", "--lr", "2e-3"],
    );
    assert!(ok, "{err}");
    eprintln!("training: {:.1}s", t.elapsed().as_secs_f64());
    let n = 10;
    let (before, base) = samurai_answers(None, n);
    let (after, tuned) = samurai_answers(Some(&out), n);
    eprintln!("ending with ', says the samurai.': base {before}/{n}, tuned {after}/{n}");
    assert!(
        after as f64 / n as f64 >= before as f64 / n as f64 + 0.5,
        "base {before}/{n}, tuned {after}/{n}\nbase: {base:#?}\ntuned: {tuned:#?}"
    );
}

#[test]
fn bad_data_and_options_are_clear_errors() {
    let dir = tmpdir("train-bad");
    let out = dir.join("o.gguf");
    let good = r#"{"prompt": "Hi?", "response": "Hello, says the samurai."}"#;
    let w = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let malformed = w("malformed.jsonl", &format!("{good}\n{good}\n{{\"prompt\": \"x\", \n{good}\n"));
    let missing = w("missing.jsonl", &format!("{good}\n{{\"prompt\": \"only a prompt\"}}\n"));
    let empty = w("empty.jsonl", "");
    let m = s(&common::smollm());
    let cases: Vec<(Vec<String>, String)> = vec![
        (train_args(&malformed, &out, &["--steps", "1"]), format!("{}:3", malformed.display())),
        (train_args(&missing, &out, &["--steps", "1"]), "missing.jsonl:2".into()),
        (train_args(&empty, &out, &["--steps", "1"]), "empty.jsonl".into()),
        (train_args(&samurai(), &out, &["--format", "yaml", "--steps", "1"]), "unknown --format 'yaml'".into()),
        (train_args(&samurai(), &out, &["--max-ram", "1M", "--steps", "1"]), "exceeds --max-ram".into()),
        (train_args(&samurai(), &out, &["--dropout", "1", "--steps", "1"]), "--dropout 1 is outside [0, 1)".into()),
        (train_args(&samurai(), &out, &["--targets", "q,vv", "--steps", "1"]), "vv".into()),
        (train_args(&dir.join("nope.jsonl"), &out, &["--steps", "1"]), "nope.jsonl".into()),
        (
            ["generate", "--model", &m, "--lora", &s(&malformed), "--prompt", "Hi", "-n", "2"].iter().map(|x| x.to_string()).collect(),
            "malformed.jsonl".into(),
        ),
    ];
    for (args, want) in &cases {
        let (ok, _, err, code) = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(!ok, "{args:?} succeeded");
        assert_eq!(code, Some(1), "{args:?}: exit code {code:?} (101 would be a panic):\n{err}");
        assert!(err.contains(want.as_str()), "{args:?}: wanted {want:?} in:\n{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!err.contains("step 1/"), "{args:?} started training before refusing:\n{err}");
        assert!(!out.exists(), "{args:?} wrote an adapter");
    }
    // --max-ram refuses before training and says how much it needs.
    let (_, _, err, _) = run(&train_args(&samurai(), &out, &["--max-ram", "1M"]).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("MiB") && err.contains("lower --seq-len"), "{err}");

    // --skip-bad-lines trains on the rest and reports how many it skipped.
    let a = train_args(&malformed, &out, &["--steps", "1", "--skip-bad-lines"]);
    let a: Vec<&str> = a.iter().map(String::as_str).filter(|&x| x != "--quiet").collect();
    let (ok, _, err, _) = run(&a);
    assert!(ok, "{err}");
    assert!(err.contains("3 samples") && err.contains("1 skipped"), "{err}");
    assert!(err.contains("malformed.jsonl:3"), "the skipped line is named: {err}");
    assert!(out.exists());
}

#[test]
fn a_diverging_run_stops_with_a_clear_error() {
    let dir = tmpdir("train-nan");
    let out = dir.join("o.gguf");
    let (ok, err, code) = train(&samurai(), &out, &["--steps", "4", "--lr", "1e30"]);
    assert!(!ok, "--lr 1e30 trained to the end:\n{err}");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("loss became") || err.contains("gradient norm became"), "{err}");
    assert!(err.contains("step 2") && err.contains("lower --lr"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.exists(), "a diverged run wrote an adapter");
}
