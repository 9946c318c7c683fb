//! Never lose a user's files or a finished run (issue 16, part A), on SmolLM2-135M with tiny runs:
//! an output that is an input is refused (symlinks and hard links included) and the input keeps
//! its sha256; an existing output needs --force; output problems and an adapter type that does
//! not fit the rank are found before training; a full disk (`ulimit -f`) leaves no temp file;
//! SIGKILL at seeded random times (each start killed after two steps of its own plus 0–500 ms)
//! then --resume ends on the uninterrupted run's bytes; SIGTERM, SIGINT
//! and SIGHUP write a checkpoint and a partial adapter and exit 143/130/129; a damaged newest
//! checkpoint is skipped for the previous one; old checkpoints are pruned.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bin, tmpdir};
use finetune::adapter::{write_adapter, BaseInfo};
use finetune::gguf::{GgufFile, GgufModel};
use finetune::lora::Target;
use finetune::model::Model;
use finetune::quant::GgmlType;
use finetune::train::trainer::init_lora;
use sha2::{Digest, Sha256};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn sha(p: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).to_vec()
}

/// Every `*.tmp<digits>` file under `dir` (recursively).
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            v.extend(temp_files(&p));
        } else if let Some((_, pid)) = e.file_name().to_string_lossy().rsplit_once(".tmp") {
            if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) {
                v.push(p);
            }
        }
    }
    v
}

/// A private copy of the model (a bug must never damage the shared one) and of the data.
fn inputs(dir: &Path) -> (PathBuf, PathBuf) {
    let (m, d) = (dir.join("m.gguf"), dir.join("d.jsonl"));
    std::fs::copy(common::smollm(), &m).unwrap();
    std::fs::copy(common::root().join("examples/style_degozaru.jsonl"), &d).unwrap();
    (m, d)
}

/// A valid adapter for SmolLM2 (written through the library).
fn adapter(model: &Path, out: &Path) {
    let g = GgufModel::open(model).unwrap();
    let m = Model::load(&g).unwrap();
    let lora = init_lora(&m, &[Target::Q, Target::V], 4, 8.0, 3);
    write_adapter(out, &BaseInfo::from_gguf(g.main()), &lora, GgmlType::F32).unwrap();
}

/// The tiny training run: `--model m --data d --out out` plus `extra`.
fn train_args(m: &Path, d: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["--model", s(m), "--data", s(d), "--out", s(out), "--quiet"].iter().map(|x| x.to_string()).collect();
    for [flag, value] in [["--rank", "4"], ["--targets", "q,v"], ["--seq-len", "64"], ["--grad-accum", "1"], ["--threads", "1"]] {
        if !extra.contains(&flag) {
            v.extend([flag.to_string(), value.to_string()]);
        }
    }
    v.extend(extra.iter().map(|x| x.to_string()));
    v
}

fn train(m: &Path, d: &Path, out: &Path, extra: &[&str]) -> Output {
    let a = train_args(m, d, out, extra);
    run(&a.iter().map(String::as_str).collect::<Vec<_>>())
}

fn spawn_train(m: &Path, d: &Path, out: &Path, extra: &[&str]) -> Child {
    Command::new(bin()).args(train_args(m, d, out, extra)).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap()
}

/// A refusal: exit 1, `needles` in the message, no panic.
fn refused(o: &Output, needles: &[&str]) -> String {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(1), "expected exit 1:\n{e}");
    for n in needles {
        assert!(e.contains(n), "expected {n:?} in:\n{e}");
    }
    assert!(!e.contains("panicked") && !e.contains("step 1/"), "{e}");
    e
}

#[test]
fn an_output_that_is_an_input_is_refused_and_the_input_untouched() {
    let dir = tmpdir("safety-inputs");
    let (m, d) = inputs(&dir);
    let a = dir.join("a.gguf");
    adapter(&m, &a);
    let hard = dir.join("hard.gguf");
    std::fs::hard_link(&m, &hard).unwrap();
    let sym = dir.join("sym.gguf");
    std::os::unix::fs::symlink(&m, &sym).unwrap();
    let peft = dir.join("peft");
    std::fs::create_dir(&peft).unwrap();
    let before: Vec<Vec<u8>> = [&m, &d, &a].iter().map(|p| sha(p)).collect();
    let n = dir.join("new.gguf");
    let v = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<String>>();
    let cases: Vec<Vec<String>> = vec![
        // --log equal to the model used to truncate it (SIGBUS), the others replaced it with rc 0.
        train_args(&m, &d, &n, &["--log", s(&m)]),
        train_args(&m, &d, &m, &[]),
        train_args(&m, &d, &d, &[]),
        train_args(&m, &d, &n, &["--log", s(&d)]),
        train_args(&m, &d, &hard, &["--force"]),
        train_args(&m, &d, &sym, &["--force"]),
        train_args(&m, &d, &n, &["--log", s(&n)]),
        // The loss curve beside --out is an output too.
        train_args(&m, &d, &n, &["--log", s(&dir.join("new.loss.svg"))]),
        v(&["merge", "--model", s(&m), "--lora", s(&a), "--out", s(&m)]),
        v(&["merge", "--model", s(&m), "--lora", s(&a), "--out", s(&hard), "--force"]),
        v(&["merge", "--model", s(&m), "--lora", &format!("{}:0.5", s(&a)), "--out", s(&a), "--force"]),
        v(&["import", "--peft", s(&peft), "--model", s(&m), "--out", s(&m), "--force"]),
        v(&["inspect", s(&m), "--tensor", "blk.0.attn_q.weight", "--out", s(&m), "--force"]),
        v(&["inspect", s(&m), "--tensor", "blk.0.attn_q.weight", "--out", s(&sym), "--force"]),
        v(&["export", "--merge-adapters", s(&a), s(&a), "--out", s(&a), "--force"]),
    ];
    for args in &cases {
        let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        refused(&o, &["is the same file as", "nothing was written"]);
        let after: Vec<Vec<u8>> = [&m, &d, &a].iter().map(|p| sha(p)).collect();
        assert!(after == before, "{args:?} changed an input");
        assert!(temp_files(&dir).is_empty(), "{args:?} left {:?}", temp_files(&dir));
    }
    assert!(!n.exists());
}

#[test]
fn an_existing_output_is_replaced_only_with_force() {
    let dir = tmpdir("safety-force");
    let (m, d) = inputs(&dir);
    let a = dir.join("a.gguf");
    adapter(&m, &a);
    let old = b"an older file".to_vec();
    let existing = |name: &str| {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &old).unwrap();
        p
    };
    let out = existing("out.gguf");
    let log = existing("log.jsonl");
    let npy = existing("q.npy");
    let merged = existing("merged.gguf");
    let modelfile = existing("ollama/Modelfile");
    let peft_cfg = existing("peft/adapter_config.json");
    let fresh = dir.join("fresh.gguf");
    let ckdir = dir.join("ck");
    std::fs::create_dir(&ckdir).unwrap();
    std::fs::copy(&a, ckdir.join("checkpoint-000002.gguf")).unwrap();
    let args: Vec<Vec<String>> = vec![
        train_args(&m, &d, &out, &[]),
        train_args(&m, &d, &fresh, &["--log", s(&log)]),
        train_args(&m, &d, &fresh, &["--checkpoint-dir", s(&ckdir)]),
        ["merge", "--model", s(&m), "--lora", s(&a), "--out", s(&merged)].map(String::from).to_vec(),
        ["inspect", s(&m), "--tensor", "blk.0.attn_q.weight", "--out", s(&npy)].map(String::from).to_vec(),
        ["export", "--ollama", s(modelfile.parent().unwrap()), "--model", s(&m), "--lora", s(&a)].map(String::from).to_vec(),
        ["export", "--peft", s(peft_cfg.parent().unwrap()), "--model", s(&m), "--lora", s(&a)].map(String::from).to_vec(),
        ["import", "--peft", s(peft_cfg.parent().unwrap()), "--model", s(&m), "--out", s(&out)].map(String::from).to_vec(),
        ["export", "--merge-adapters", s(&a), s(&a), "--out", s(&out)].map(String::from).to_vec(),
    ];
    for a in &args {
        let o = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
        let e = refused(&o, &["--force"]);
        assert!(e.contains("exists") || e.contains("holds checkpoints of an earlier run"), "{e}");
        for p in [&out, &log, &npy, &merged, &modelfile, &peft_cfg] {
            assert_eq!(std::fs::read(p).unwrap(), old, "{a:?} changed {}", p.display());
        }
        assert!(!fresh.exists());
    }
    // With --force they are replaced.
    let o = run(&["inspect", s(&m), "--tensor", "blk.0.attn_q.weight", "--out", s(&npy), "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(&npy).unwrap().starts_with(b"\x93NUMPY"));
    let o = train(&m, &d, &out, &["--steps", "1", "--log", s(&log), "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(GgufFile::open(&out).unwrap().get_str("general.type"), Some("adapter"));
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1);
    assert!(temp_files(&dir).is_empty(), "{:?}", temp_files(&dir));
}

#[test]
fn output_problems_are_found_before_training() {
    let dir = tmpdir("safety-early");
    let (m, d) = inputs(&dir);
    let t = Instant::now();
    let o = train(&m, &d, Path::new("/nonexistent/a.gguf"), &["--steps", "1"]);
    refused(&o, &["/nonexistent", "does not exist"]);
    // /proc takes no new files, for root as well.
    let o = train(&m, &d, Path::new("/proc/a.gguf"), &["--steps", "1"]);
    refused(&o, &["cannot write in /proc"]);
    let o = train(&m, &d, &dir.join("a.gguf"), &["--steps", "1", "--log", "/proc/log.jsonl"]);
    refused(&o, &["--log", "cannot write in /proc"]);
    let o = train(&m, &d, &dir.join("a.gguf"), &["--steps", "1", "--checkpoint-dir", "/proc/ck"]);
    refused(&o, &["--checkpoint-dir", "cannot write in /proc"]);
    let o = run(&["merge", "--model", s(&m), "--lora", s(&m), "--out", "/proc/merged.gguf"]);
    refused(&o, &["cannot write in /proc"]);
    // A read-only folder (this check means something only when we are not root).
    let ro = dir.join("ro");
    std::fs::create_dir(&ro).unwrap();
    let mut perm = std::fs::metadata(&ro).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o555);
    std::fs::set_permissions(&ro, perm).unwrap();
    if std::fs::write(ro.join("probe"), b"x").is_ok() {
        eprintln!("running as root: a mode-555 folder is writable, only /proc tested the read-only case");
        let _ = std::fs::remove_file(ro.join("probe"));
    } else {
        let o = train(&m, &d, &ro.join("a.gguf"), &["--steps", "1"]);
        refused(&o, &["cannot write in", "ro"]);
    }
    // Rank 4 cannot be stored in Q8_0 blocks of 32: said before the data is read.
    let o = train(&m, &d, &dir.join("q8.gguf"), &["--steps", "1", "--adapter-type", "Q8_0"]);
    let e = refused(&o, &["--adapter-type Q8_0", "--rank 4", "multiple of 32"]);
    assert!(!e.contains("data:") && !e.contains("memory plan"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(60), "the refusals took {:?}", t.elapsed());
    assert!(temp_files(&dir).is_empty());
}

/// Run `args` under `ulimit -f` (KiB): writes past it fail with EFBIG.
fn run_limited(kib: u32, args: &[&str]) -> Output {
    Command::new("bash").arg("-c").arg(format!("ulimit -f {kib} && exec \"$0\" \"$@\"")).arg(bin()).args(args).output().unwrap()
}

#[test]
fn a_full_disk_leaves_no_temp_file() {
    let dir = tmpdir("safety-full");
    let (m, d) = inputs(&dir);
    let a = dir.join("a.gguf");
    adapter(&m, &a);
    let peft = dir.join("peft");
    let o = run(&["export", "--peft", s(&peft), "--model", s(&m), "--lora", s(&a)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.join("out.gguf");
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("training", train_args(&m, &d, &out, &["--steps", "1"])),
        ("checkpoint", train_args(&m, &d, &out, &["--steps", "2", "--save-every", "1", "--checkpoint-dir", s(&dir.join("ck"))])),
        ("merge", ["merge", "--model", s(&m), "--lora", s(&a), "--out", s(&out)].map(String::from).to_vec()),
        ("combine", ["export", "--merge-adapters", s(&a), s(&a), "--out", s(&out)].map(String::from).to_vec()),
        ("import", ["import", "--peft", s(&peft), "--model", s(&m), "--out", s(&out)].map(String::from).to_vec()),
        ("inspect", ["inspect", s(&m), "--tensor", "token_embd.weight", "--out", s(&dir.join("e.npy"))].map(String::from).to_vec()),
        ("peft", ["export", "--peft", s(&dir.join("peft2")), "--model", s(&m), "--lora", s(&a)].map(String::from).to_vec()),
    ];
    for (what, args) in &cases {
        let o = run_limited(64, &args.iter().map(String::as_str).collect::<Vec<_>>());
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{what}: expected exit 1 (not a SIGXFSZ death):\n{e}");
        assert!(e.contains("File too large"), "{what}: {e}");
        assert!(!out.exists() && !dir.join("e.npy").exists(), "{what}: a partial output appeared");
        assert!(temp_files(&dir).is_empty(), "{what} left {:?}", temp_files(&dir));
    }
}

fn is_partial(p: &Path) -> Option<u64> {
    let f = GgufFile::open(p).unwrap();
    (f.get("finetune.training.partial").and_then(|v| v.as_bool()) == Some(true)).then(|| f.get_u64("finetune.training.steps_done").unwrap())
}

/// SplitMix64 delays so the kill times are random but the same on every run.
fn delays(seed: u64, n: usize, lo_ms: u64, hi_ms: u64) -> Vec<Duration> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            Duration::from_millis(lo_ms + (z ^ (z >> 31)) % (hi_ms - lo_ms))
        })
        .collect()
}

#[test]
fn sigkill_at_random_times_then_resume_ends_on_the_same_bytes() {
    let dir = tmpdir("safety-kill");
    let (m, d) = inputs(&dir);
    let steps = ["--steps", "80", "--save-every", "2"];
    let reference = dir.join("ref.gguf");
    let o = train(&m, &d, &reference, &steps);
    assert!(o.status.success(), "{}", stderr(&o));

    let out = dir.join("k.gguf");
    let ck = dir.join("k.gguf.ckpt");
    let log = dir.join("k.jsonl");
    let newest = || {
        std::fs::read_dir(&ck).map_or(0, |r| {
            r.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.strip_prefix("checkpoint-")?.strip_suffix(".gguf")?.parse::<usize>().ok()
                })
                .max()
                .unwrap_or(0)
        })
    };
    let logged = || std::fs::read_to_string(&log).map_or(0, |t| t.lines().count());
    let (mut kills, mut temps_seen, mut resumes) = (0, 0, 0);
    // Each start runs until it has logged two steps of its own, then is killed after a random
    // 0–500 ms: during the checkpoint write that follows the second step or inside the next step.
    for wait in delays(16, 20, 0, 500) {
        let from = newest();
        // The log as the resumed run will keep it (steps up to its checkpoint), so that waiting
        // for a line past `from` waits for a step of this start.
        let kept: String = std::fs::read_to_string(&log).unwrap_or_default().lines().take(from).map(|l| format!("{l}\n")).collect();
        if from == 0 {
            let _ = std::fs::remove_file(&log);
        } else {
            std::fs::write(&log, kept).unwrap();
        }
        let mut a = steps.to_vec();
        a.extend(["--log", s(&log)]);
        if from > 0 {
            a.extend(["--resume", s(&ck)]);
            resumes += 1;
        }
        // A dead process's temp file is removed at start-up, a live one's is not.
        let dead = {
            let mut c = Command::new("true").spawn().unwrap();
            c.wait().unwrap();
            c.id()
        };
        std::fs::create_dir_all(&ck).unwrap();
        let stale = ck.join(format!("checkpoint-000002.gguf.tmp{dead}"));
        let live = ck.join(format!("checkpoint-000002.gguf.tmp{}", std::process::id()));
        std::fs::write(&stale, b"stale").unwrap();
        std::fs::write(&live, b"live").unwrap();
        let mut child = spawn_train(&m, &d, &out, &a);
        let deadline = Instant::now() + Duration::from_secs(120);
        // Two steps of its own: the second one is followed by a checkpoint save.
        while logged() < from + 2 && child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "no step after {from} in 120 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(wait);
        if child.try_wait().unwrap().is_some() {
            let o = child.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", stderr(&o));
            std::fs::remove_file(&live).unwrap();
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        assert!(live.exists(), "the temp file of a running process was removed");
        assert!(!stale.exists(), "the stale temp file of a dead process was kept");
        std::fs::remove_file(&live).unwrap();
        temps_seen += temp_files(&dir).len();
        if out.exists() {
            break; // the run had finished when it was killed
        }
    }
    eprintln!(
        "{kills} kills ({resumes} starts resumed a checkpoint, the last from step {}), {temps_seen} temp files left by them",
        newest()
    );
    if !out.exists() {
        let mut a = steps.to_vec();
        a.extend(["--log", s(&log), "--resume", s(&ck)]);
        let o = train(&m, &d, &out, &a);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert!(temp_files(&dir).is_empty(), "left after the last start: {:?}", temp_files(&dir));
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&reference).unwrap(), "killed and resumed adapter differs");
    assert_eq!(logged(), 80, "the metrics log holds each step once");
    let kept = std::fs::read_dir(&ck).unwrap().count();
    assert!((1..=3).contains(&kept), "{kept} checkpoints kept, --keep-checkpoints defaults to 3");
    assert!(kills >= 20 && resumes >= 19, "only {kills} kills landed, {resumes} resumed (the issue asks for 20)");
}

/// Start a 12-step run, wait until step 1 is logged (plus `extra`), send `sig` (twice: again 30 ms later).
fn signal_run(dir: &Path, m: &Path, d: &Path, name: &str, sig: &str, extra: Duration, twice: bool) -> (Output, PathBuf) {
    let out = dir.join(format!("{name}.gguf"));
    let log = dir.join(format!("{name}.jsonl"));
    let mut child = spawn_train(m, d, &out, &["--steps", "12", "--log", s(&log)]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_to_string(&log).map_or(0, |t| t.lines().count()) < 1 {
        assert!(Instant::now() < deadline && child.try_wait().unwrap().is_none(), "{name}: no step 1");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(extra);
    let kill = |sig: &str| assert!(Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success());
    kill(sig);
    if twice {
        std::thread::sleep(Duration::from_millis(30));
        kill(sig);
    }
    (child.wait_with_output().unwrap(), out)
}

#[test]
fn stop_signals_write_a_checkpoint_and_a_partial_adapter() {
    let dir = tmpdir("safety-signals");
    let (m, d) = inputs(&dir);
    let reference = dir.join("ref.gguf");
    let o = train(&m, &d, &reference, &["--steps", "12"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let waits = delays(143, 3, 0, 400);
    for (i, (sig, name, code)) in [("-TERM", "SIGTERM", 143), ("-INT", "SIGINT", 130), ("-HUP", "SIGHUP", 129)].into_iter().enumerate() {
        let (o, out) = signal_run(&dir, &m, &d, &name.to_lowercase(), sig, waits[i], false);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(code), "{name}:\n{e}");
        assert!(e.contains(&format!("interrupted by {name}")) && e.contains("PARTIAL") && e.contains("--resume"), "{e}");
        let done = is_partial(&out).unwrap_or_else(|| panic!("{name}: the adapter is not marked partial"));
        assert!((1..12).contains(&done), "{name}: {done} steps");
        let ck = PathBuf::from(format!("{}.ckpt", out.display()));
        assert!(ck.join(format!("checkpoint-{done:06}.gguf")).exists(), "{name}: no checkpoint of step {done}");
        assert!(out.with_extension("loss.svg").exists());
        assert!(temp_files(&dir).is_empty());
        if name == "SIGTERM" {
            // --resume replaces the partial adapter (no --force needed) and ends on the same bytes.
            let log = dir.join("sigterm.jsonl");
            let o = train(&m, &d, &out, &["--steps", "12", "--log", s(&log), "--resume", s(&ck)]);
            assert!(o.status.success(), "{}", stderr(&o));
            assert!(is_partial(&out).is_none());
            assert!(std::fs::read(&out).unwrap() == std::fs::read(&reference).unwrap(), "SIGTERM + resume differs from the full run");
            assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 12);
        }
    }
    // A second signal quits at once: no adapter.
    let (o, out) = signal_run(&dir, &m, &d, "twice", "-INT", Duration::ZERO, true);
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(!out.exists(), "the second SIGINT did not quit at once:\n{}", stderr(&o));
}

#[test]
fn a_damaged_newest_checkpoint_falls_back_and_old_ones_are_pruned() {
    let dir = tmpdir("safety-fallback");
    let (m, d) = inputs(&dir);
    let full = dir.join("full.gguf");
    let o = train(&m, &d, &full, &["--steps", "8", "--save-every", "2", "--keep-checkpoints", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ck = dir.join("full.gguf.ckpt");
    let mut names: Vec<String> = std::fs::read_dir(&ck).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["checkpoint-000006.gguf", "checkpoint-000008.gguf"], "--keep-checkpoints 2");
    let newest = ck.join("checkpoint-000008.gguf");
    let good = std::fs::read(&newest).unwrap();
    for (how, bytes) in [
        ("one flipped byte", {
            let mut b = good.clone();
            let i = b.len() - 100;
            b[i] ^= 0x40;
            b
        }),
        ("truncated", good[..good.len() / 2].to_vec()),
    ] {
        std::fs::write(&newest, &bytes).unwrap();
        let out = dir.join("resumed.gguf");
        let o = train(&m, &d, &out, &["--steps", "8", "--save-every", "2", "--keep-checkpoints", "2", "--resume", s(&ck), "--force"]);
        let e = stderr(&o);
        assert!(o.status.success(), "{how}: {e}");
        assert!(e.contains("warning: skipping the checkpoint") && e.contains("checkpoint-000008.gguf"), "{how}: {e}");
        assert!(std::fs::read(&out).unwrap() == std::fs::read(&full).unwrap(), "{how}: resumed from step 6, different bytes");
    }
    // A file given to --resume is used as it is: no silent fallback.
    std::fs::write(&newest, &good[..100]).unwrap();
    let o = train(&m, &d, &dir.join("x.gguf"), &["--steps", "8", "--resume", s(&newest)]);
    refused(&o, &["checkpoint-000008.gguf"]);
}
