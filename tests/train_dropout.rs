//! `--dropout` through the CLI on SmolLM2-135M: the masks are a function of the seed, so the
//! same seed gives the same adapter bytes and a run resumed from a checkpoint ends on exactly
//! the adapter of the uninterrupted run; dropout changes training (another adapter, another
//! loss trajectory); `--dropout 0` is the plain run. Runs are tiny (rank 4, q,v,down, seq 128).
mod common;

use std::path::Path;
use std::process::Command;

use common::tmpdir;

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// Train on the samurai set with the small settings plus `extra`; panics on failure.
fn train(out: &Path, extra: &[&str]) {
    let data = common::root().join("examples/style_degozaru.jsonl");
    let mut a: Vec<String> =
        ["--model", &s(&common::smollm()), "--data", &s(&data), "--out", &s(out), "--quiet"].iter().map(|x| x.to_string()).collect();
    for x in ["--rank", "4", "--targets", "q,v,down", "--seq-len", "128", "--grad-accum", "2", "--threads", "2", "--lr", "1e-3"] {
        a.push(x.into());
    }
    a.extend(extra.iter().map(|x| x.to_string()));
    let o = Command::new(common::bin()).args(&a).output().unwrap();
    assert!(o.status.success(), "{a:?}:\n{}", String::from_utf8_lossy(&o.stderr));
}

fn losses(log: &Path) -> Vec<f64> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap())
        .collect()
}

#[test]
fn dropout_is_seeded_resumable_and_zero_is_the_plain_run() {
    let dir = tmpdir("train-dropout");
    let p = |n: &str| dir.join(n);
    let (a, b, c, plain, zero) = (p("a.gguf"), p("b.gguf"), p("c.gguf"), p("plain.gguf"), p("zero.gguf"));
    let ckpt = p("a.ckpt");
    train(&a, &["--steps", "4", "--dropout", "0.3", "--save-every", "2", "--checkpoint-dir", &s(&ckpt), "--log", &s(&p("a.jsonl"))]);
    train(&b, &["--steps", "4", "--dropout", "0.3", "--log", &s(&p("b.jsonl"))]);
    train(&c, &["--steps", "4", "--dropout", "0.3", "--seed", "43"]);
    train(&plain, &["--steps", "4", "--log", &s(&p("plain.jsonl"))]);
    train(&zero, &["--steps", "4", "--dropout", "0"]);
    let read = |x: &Path| std::fs::read(x).unwrap();
    assert!(read(&a) == read(&b), "same seed and dropout gave different adapter bytes");
    assert_eq!(losses(&p("a.jsonl")), losses(&p("b.jsonl")));
    assert!(read(&a) != read(&c), "another seed gave the same adapter");
    assert!(read(&plain) == read(&zero), "--dropout 0 differs from the run without it");
    assert!(read(&a) != read(&plain), "--dropout 0.3 trained the same adapter as no dropout");
    // B starts at zero, so the step-1 loss cannot see the masks; later steps do.
    let (la, lp) = (losses(&p("a.jsonl")), losses(&p("plain.jsonl")));
    assert_eq!(la[0], lp[0], "step-1 loss with B = 0");
    assert!(la[1..] != lp[1..] && (la[3] - lp[3]).abs() < 0.5 * lp[3], "losses: dropout {la:?} plain {lp:?}");

    // Resuming from the step-2 checkpoint replays steps 3 and 4 with the same masks.
    let r = p("r.gguf");
    let r_log = p("r.jsonl");
    std::fs::copy(p("a.jsonl"), &r_log).unwrap();
    train(
        &r,
        &[
            "--steps",
            "4",
            "--dropout",
            "0.3",
            "--log",
            &s(&r_log),
            "--checkpoint-dir",
            &s(&p("r.ckpt")),
            "--resume",
            &s(&ckpt.join("checkpoint-000002.gguf")),
        ],
    );
    assert!(read(&r) == read(&a), "resumed adapter differs from the uninterrupted one");
    assert_eq!(losses(&r_log), la);

    // A checkpoint of a dropout run does not resume a run with another dropout.
    let data = common::root().join("examples/style_degozaru.jsonl");
    let o = Command::new(common::bin())
        .args(["--model", &s(&common::smollm()), "--data", &s(&data), "--out", &s(&r), "--quiet", "--rank", "4", "--targets", "q,v,down"])
        .args(["--seq-len", "128", "--grad-accum", "2", "--threads", "2", "--lr", "1e-3", "--steps", "4", "--dropout", "0.1"])
        .args(["--resume", &s(&ckpt), "--force"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("different run") && err.contains("dropout=0.1"), "{err}");
}
