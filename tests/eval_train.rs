//! Task metrics during training (`--eval-data`, `--eval-metric`, `--keep-best`, `--early-stop`),
//! on SmolLM2-135M with the bundled style set, checked against `finetune eval` on the written
//! adapters (an independent run of the same records: the in-training values must equal it):
//! - the metrics log has the metric at the --eval-every steps and the last step, and the value
//!   logged at the end equals `finetune eval --lora out.gguf` on the same records;
//! - `--keep-best`: with a learning rate that destroys the model after the first step, the kept
//!   adapter is step 1's (metadata), `eval` on it gives the best logged value, and the end of
//!   the run did not replace it;
//! - `--early-stop 1` stops at the first evaluation without improvement, with the message; a
//!   `--resume` of it from its checkpoint ends exactly as the uninterrupted run (same log values,
//!   same kept adapter bytes), so the best-so-far survived the checkpoint;
//! - the loss SVG carries the metric curve; bad --eval-data / metrics fail before training.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::tmpdir;
use serde_json::Value;

fn run(args: &[&str]) -> (bool, String) {
    let o = Command::new(common::bin()).args(args).output().unwrap();
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn read_log(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn held(dir: &Path, n: usize) -> PathBuf {
    let src = std::fs::read_to_string(common::root().join("examples/style_degozaru_eval.jsonl")).unwrap();
    let p = dir.join("held.jsonl");
    std::fs::write(&p, src.lines().take(n).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    p
}

/// Training on the bundled style set, tiny steps, plus `extra`.
fn train(out: &Path, extra: &[&str]) -> String {
    let data = s(&common::root().join("examples/style_degozaru.jsonl"));
    let model = s(&common::smollm());
    let mut args = vec!["--model", &model, "--data", &data, "--seq-len", "64", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (ok, text) = run(&args);
    assert!(ok, "training failed:\n{text}");
    text
}

/// `finetune eval --json` on one adapter: metric spec → summary.
fn eval(adapter: &Path, data: &Path, metrics: &[&str], n: &str) -> serde_json::Map<String, Value> {
    let (model, data, lora) = (s(&common::smollm()), s(data), s(adapter));
    let mut args = vec!["eval", "--model", &model, "--lora", &lora, "--data", &data, "--seq-len", "64", "-n", n, "--json", "--quiet"];
    for m in metrics {
        args.extend(["--metric", m]);
    }
    let (ok, text) = run(&args);
    assert!(ok, "eval failed:\n{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["configs"][0]["metrics"].as_object().unwrap().clone()
}

fn value(summary: &Value) -> f64 {
    summary.get("score").or_else(|| summary.get("nll")).and_then(Value::as_f64).unwrap()
}

fn gguf_u64(path: &Path, key: &str) -> Option<u64> {
    finetune::gguf::GgufFile::open(path).unwrap().get_u64(key)
}

const METRICS: [&str; 4] = ["contains:the", "regex:^[A-Z]", "ends-with:says the samurai", "nll"];

#[test]
fn metric_logged_at_eval_steps_equals_eval_command() {
    let dir = tmpdir("evaltrain-log");
    let held = held(&dir, 6);
    let (out, log) = (dir.join("a.gguf"), dir.join("a.jsonl"));
    let mut extra = vec!["--steps", "5", "--grad-accum", "2", "--lr", "3e-3", "--eval-every", "2", "--eval-max-tokens", "24"];
    let h = s(&held);
    let l = s(&log);
    extra.extend(["--eval-data", &h, "--log", &l]);
    for m in METRICS {
        extra.extend(["--eval-metric", m]);
    }
    let text = train(&out, &extra);
    assert!(text.contains("contains:the "), "the progress line shows the metric:\n{text}");
    let lines = read_log(&log);
    let steps: Vec<u64> = lines.iter().filter(|l| l.get("eval").is_some()).map(|l| l["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [2, 4, 5], "evaluations at every 2nd step and the last");
    let last = lines.last().unwrap()["eval"].as_object().unwrap().clone();
    let ours = eval(&out, &held, &METRICS, "24");
    let mut nontrivial = false;
    for m in METRICS {
        let (a, b) = (last[m].as_f64().unwrap(), value(&ours[m]));
        assert_eq!(a, b, "{m}: logged at the end {a}, finetune eval --lora {b}");
        nontrivial |= m != "nll" && a > 0.0 && a < 1.0;
    }
    assert!(nontrivial, "some generation metric is strictly between 0 and 1, so the equality checks outputs: {last:?}");
    // The plot carries the first metric's curve on its second axis.
    let svg = std::fs::read_to_string(dir.join("a.loss.svg")).unwrap();
    assert!(svg.contains(r#"class="task-metric""#) && svg.contains("contains:the (right axis)") && svg.contains("100%"), "{svg}");
    let curve = svg.lines().find(|l| l.contains("task-metric")).unwrap();
    assert_eq!(curve.matches(',').count(), 3, "three evaluations on the curve: {curve}");
}

/// A run whose first step is its best on `nll`: lr 2e-2 wrecks the model from step 2 on.
fn destroy_args<'a>(held: &'a str, log: &'a str) -> Vec<&'a str> {
    vec![
        "--steps",
        "4",
        "--grad-accum",
        "1",
        "--lr",
        "2e-2",
        "--eval-every",
        "1",
        "--eval-data",
        held,
        "--eval-metric",
        "nll",
        "--keep-best",
        "--log",
        log,
    ]
}

#[test]
fn keep_best_early_stop_and_resume() {
    let dir = tmpdir("evaltrain-best");
    let held = held(&dir, 4);
    let h = s(&held);
    // Uninterrupted run.
    let (a, alog) = (dir.join("a.gguf"), s(&dir.join("a.jsonl")));
    let text = train(&a, &destroy_args(&h, &alog));
    let lines = read_log(Path::new(&alog));
    let vals: Vec<f64> = lines.iter().map(|l| l["eval"]["nll"].as_f64().unwrap()).collect();
    assert_eq!(vals.len(), 4);
    let (best_i, best) = vals.iter().enumerate().min_by(|x, y| x.1.total_cmp(y.1)).map(|(i, v)| (i, *v)).unwrap();
    assert!(best_i + 1 < 4 && vals[3] > best, "the setup makes an early best: {vals:?}");
    let best_step = best_i as u64 + 1;
    assert!(text.contains(&format!("kept the adapter of step {best_step}")), "{text}");
    assert_eq!(gguf_u64(&a, "finetune.training.best_step"), Some(best_step));
    let kept = value(&eval(&a, &held, &["nll"], "1")["nll"]);
    assert_eq!(kept, best, "eval of the kept adapter equals the best logged value");

    // --early-stop 1: the first evaluation without improvement ends the run.
    let (b, blog, ck) = (dir.join("b.gguf"), s(&dir.join("b.jsonl")), s(&dir.join("ck")));
    let mut args = destroy_args(&h, &blog);
    args.extend(["--early-stop", "1", "--save-every", "1", "--keep-checkpoints", "0", "--checkpoint-dir", &ck]);
    let text = train(&b, &args);
    let stop = best_step + 1;
    assert!(text.contains(&format!("early stop after step {stop} of 4: 1 evaluations without improvement")), "{text}");
    assert_eq!(read_log(Path::new(&blog)).len() as u64, stop);
    assert_eq!(gguf_u64(&b, "finetune.training.best_step"), Some(best_step));

    // Resume it without --early-stop: it must end as the uninterrupted run.
    let ckfile = s(&dir.join("ck").join(format!("checkpoint-{stop:06}.gguf")));
    let mut args = destroy_args(&h, &blog);
    args.extend(["--checkpoint-dir", &ck, "--resume", &ckfile]);
    train(&b, &args);
    let resumed: Vec<f64> = read_log(Path::new(&blog)).iter().map(|l| l["eval"]["nll"].as_f64().unwrap()).collect();
    assert_eq!(resumed, vals, "the resumed run logs the same evaluations");
    assert!(std::fs::read(&b).unwrap() == std::fs::read(&a).unwrap(), "the kept adapter is not the same bytes");

    // --keep-best --resume with an --out that is not the stopped run's best is refused.
    let mut args = destroy_args(&h, &blog);
    let other = s(&dir.join("other.gguf"));
    args.extend(["--checkpoint-dir", &ck, "--resume", &ckfile]);
    let (m, d) = (s(&common::smollm()), s(&common::root().join("examples/style_degozaru.jsonl")));
    let mut full = vec!["--model", &m, "--data", &d, "--seq-len", "64", "--out", &other];
    full.extend(args);
    let (ok, text) = run(&full);
    assert!(!ok && text.contains("does not hold that adapter"), "{text}");
}

#[test]
fn bad_eval_options_fail_before_training() {
    let dir = tmpdir("evaltrain-bad");
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"text\": \"no reference\"}\n").unwrap();
    let good = s(&held(&dir, 2));
    let (m, d, o, b) = (s(&common::smollm()), s(&common::root().join("examples/style_degozaru.jsonl")), s(&dir.join("x.gguf")), s(&bad));
    let base = ["--model", m.as_str(), "--data", d.as_str(), "--out", o.as_str(), "--steps", "1", "--seq-len", "32"];
    let cases: [(&[&str], &str); 5] = [
        (&["--eval-data", &b, "--eval-metric", "exact"], "bad.jsonl:2"),
        (&["--eval-data", &good, "--eval-metric", "bogus"], "unknown metric 'bogus'"),
        (&["--eval-data", &good, "--eval-metric", "regex:("], "regex"),
        (&["--eval-data", &good], "--eval-data needs at least one --eval-metric"),
        (&["--keep-best"], "--keep-best needs --eval-data"),
    ];
    for (extra, want) in cases {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let (ok, text) = run(&args);
        assert!(!ok && text.contains(want) && !text.contains("step 1/"), "{extra:?}: want '{want}' before training:\n{text}");
        assert!(!dir.join("x.gguf").exists());
    }
}
