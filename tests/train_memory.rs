//! The planner and `--keep-activations` / `--max-ram` through the CLI on SmolLM2-135M: the plan
//! counts the kept intermediates; a `--max-ram` between the plan without them and the plan with
//! them shrinks what is kept to fit and trains; below the plan without them it refuses before
//! training; the adapter does not depend on what was kept.
mod common;

use std::path::Path;
use std::process::Command;

use common::tmpdir;

/// Run one training step; returns (success, stderr).
fn run(out: &Path, extra: &[&str]) -> (bool, String) {
    let data = common::root().join("examples/style_degozaru.jsonl");
    let o = Command::new(common::bin())
        .args(["--model", common::smollm().to_str().unwrap(), "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(["--steps", "1", "--grad-accum", "1", "--threads", "2", "--rank", "4", "--targets", "q,v,down"])
        .args(extra)
        .output()
        .unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// (total MiB, kept MiB, kept blocks) from the "memory plan:" line.
fn plan_line(err: &str) -> (f64, f64, usize) {
    let line = err.lines().find(|l| l.starts_with("memory plan:")).unwrap_or_else(|| panic!("no plan in:\n{err}"));
    let mib = |s: &str| -> f64 {
        let mut it = s.split_whitespace();
        let v: f64 = it.next().unwrap().parse().unwrap();
        match it.next().unwrap() {
            "GiB" => v * 1024.0,
            "MiB" => v,
            u => panic!("unit {u} in {line}"),
        }
    };
    let total = mib(line.split("≈ ").nth(1).unwrap());
    let kept_part = line.split("kept intermediates ").nth(1).unwrap();
    let kept = mib(kept_part);
    let blocks: usize = kept_part.split('(').nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    (total, kept, blocks)
}

#[test]
fn max_ram_shrinks_kept_intermediates_before_refusing() {
    let dir = tmpdir("train-memory");
    let (a, b, c) = (dir.join("a.gguf"), dir.join("b.gguf"), dir.join("c.gguf"));
    let (ok, err) = run(&a, &["--keep-activations", "256M"]);
    assert!(ok, "{err}");
    let (total, kept, blocks) = plan_line(&err);
    assert!(blocks > 2 && kept > 100.0 && kept <= 256.0, "{err}");
    let (ok, err0) = run(&c, &["--keep-activations", "0"]);
    assert!(ok, "{err0}");
    let (total0, kept0, blocks0) = plan_line(&err0);
    assert!(kept0 == 0.0 && blocks0 == 0, "{err0}");
    assert!((total - total0 - kept).abs() < 0.5, "plan with kept {total} = without {total0} + kept {kept}");

    // Room for about half of what was kept: fewer blocks, within the limit, same adapter.
    let limit = total0 + kept / 2.0;
    let (ok, err) = run(&b, &["--keep-activations", "256M", "--max-ram", &format!("{limit:.0}M")]);
    assert!(ok, "{err}");
    let (total_b, _, blocks_b) = plan_line(&err);
    assert!(blocks_b > 0 && blocks_b < blocks && total_b <= limit + 0.5, "limit {limit} MiB:\n{err}");
    let read = |p: &Path| std::fs::read(p).unwrap();
    assert!(read(&a) == read(&b) && read(&a) == read(&c), "kept intermediates changed the adapter");

    // Below the plan without kept intermediates: a refusal before training.
    let (ok, err) = run(&dir.join("d.gguf"), &["--max-ram", &format!("{:.0}M", total0 - 20.0)]);
    assert!(!ok && err.contains("exceeds --max-ram") && !err.contains("step 1/"), "{err}");
}
