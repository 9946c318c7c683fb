//! Hostile input (issue 16, part B): each case the probe found, run as the binary under an
//! address-space limit (`ulimit -v`) and a time limit, must end with a clear error (exit code 1)
//! or a bounded success — never an abort, a hang, NaN output or raw control bytes on stderr.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{bin, tmpdir};
use finetune::adapter::{write_adapter, BaseInfo};
use finetune::gguf::{GgufFile, GgufModel, GgufWriter, Value};
use finetune::lora::Target;
use finetune::model::Model;
use finetune::quant::GgmlType;
use finetune::train::trainer::init_lora;

/// Address-space limit of every hostile run (KiB), as the issue's probe: 4 GB.
const VLIMIT_KB: u64 = 4_000_000;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
    /// Peak resident size (VmHWM) last seen while it ran, in bytes.
    peak_rss: u64,
}

fn vm_hwm(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// Run the binary with `args` under `ulimit -v vlimit_kb`, killed after `secs` (then the exit
/// code is None); its peak RSS is sampled every 20 ms.
fn run_limited(args: &[&str], vlimit_kb: u64, secs: u64) -> Run {
    use std::io::Read;
    use std::process::Stdio;
    let t0 = Instant::now();
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(r#"ulimit -v "$1" || exit 99; shift; exec "$@""#)
        .arg("bash")
        .arg(vlimit_kb.to_string())
        .arg(bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        out.read_to_end(&mut v).unwrap();
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        err.read_to_end(&mut v).unwrap();
        v
    });
    let mut peak = 0;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        peak = peak.max(vm_hwm(child.id()).unwrap_or(0));
        if t0.elapsed() > Duration::from_secs(secs) {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let r = Run {
        code: status.and_then(|s| s.code()),
        stdout: String::from_utf8_lossy(&t_out.join().unwrap()).into(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap()).into(),
        took: t0.elapsed(),
        peak_rss: peak,
    };
    assert_ne!(r.code, Some(99), "ulimit -v failed");
    r
}

fn run(args: &[&str]) -> Run {
    run_limited(args, VLIMIT_KB, 120)
}

/// The run failed with exit code 1 and a message containing every `needles`.
fn assert_error(r: &Run, needles: &[&str], what: &str) {
    assert_eq!(r.code, Some(1), "{what}: expected exit code 1, got {:?} after {:?}\nstderr: {}", r.code, r.took, r.stderr);
    assert!(r.stderr.contains("error: "), "{what}: {}", r.stderr);
    for n in needles {
        assert!(r.stderr.contains(n), "{what}: stderr lacks {n:?}:\n{}", r.stderr);
    }
    assert!(!r.stderr.contains("panicked"), "{what}: {}", r.stderr);
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn chat_data(dir: &Path, n: usize) -> PathBuf {
    let p = dir.join(format!("chat{n}.jsonl"));
    let line = r#"{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}"#;
    std::fs::write(&p, format!("{line}\n").repeat(n)).unwrap();
    p
}

const DOUBLING: &str = "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}";
const NESTED: &str = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}";

#[test]
fn doubling_template_is_bounded_in_generate_and_training() {
    let dir = tmpdir("hostile-doubling");
    let tmpl = dir.join("double.jinja");
    std::fs::write(&tmpl, DOUBLING).unwrap();
    let m = common::smollm();
    let r = run(&["generate", "--model", s(&m), "--chat", "--chat-template", s(&tmpl), "--prompt", "hi", "-n", "1", "--threads", "2"]);
    assert_error(&r, &["chat template render error", "budget"], "generate");
    assert!(r.took < Duration::from_secs(20), "generate took {:?}", r.took);
    // Training renders records in parallel: still bounded, and stopped at the first record.
    let data = chat_data(&dir, 324);
    let out = dir.join("out.gguf");
    let r = run(&["--model", s(&m), "--data", s(&data), "--chat-template", s(&tmpl), "--steps", "1", "--out", s(&out), "--threads", "2"]);
    assert_error(&r, &[s(&data), "budget", "the template is at fault"], "train");
    assert!(r.took < Duration::from_secs(20), "train took {:?}", r.took);
    assert!(!out.exists());
    // --skip-bad-lines does not skip a template that is at fault on every record.
    let r = run(&[
        "--model",
        s(&m),
        "--data",
        s(&data),
        "--chat-template",
        s(&tmpl),
        "--steps",
        "1",
        "--skip-bad-lines",
        "--out",
        s(&out),
        "--threads",
        "2",
    ]);
    assert_error(&r, &["budget"], "train --skip-bad-lines");
    assert!(r.took < Duration::from_secs(20), "train --skip-bad-lines took {:?}", r.took);
}

#[test]
fn nested_loop_template_stops_training_at_the_first_record() {
    let dir = tmpdir("hostile-nested");
    let tmpl = dir.join("nested.jinja");
    std::fs::write(&tmpl, NESTED).unwrap();
    let data = chat_data(&dir, 324);
    let m = common::smollm();
    // Was ≈1.5 s per record (8 minutes for 324 records) before the first error.
    let r = run(&[
        "--model",
        s(&m),
        "--data",
        s(&data),
        "--chat-template",
        s(&tmpl),
        "--steps",
        "1",
        "--threads",
        "2",
        "--out",
        s(&dir.join("o.gguf")),
    ]);
    assert_error(&r, &["ran too long", ":1:"], "train");
    assert!(r.took < Duration::from_secs(15), "took {:?}", r.took);
}

/// A copy of SmolLM2 with `tokenizer.chat_template` replaced.
fn smollm_with_template(dir: &Path, template: &str) -> PathBuf {
    let src = GgufFile::open(common::smollm()).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in &src.metadata {
        w.set(k.clone(), v.clone());
    }
    w.set("tokenizer.chat_template", Value::String(template.into()));
    for t in &src.tensors {
        w.add_tensor(&t.name, t.ty, &t.dims).unwrap();
    }
    let path = dir.join("broken-template.gguf");
    let mut sink = w.create(&path).unwrap();
    for t in &src.tensors {
        sink.write_tensor(src.view(t).data).unwrap();
    }
    sink.finish().unwrap();
    path
}

#[test]
fn broken_model_template_in_training_reports_the_syntax_error() {
    let dir = tmpdir("hostile-broken-template");
    let m = smollm_with_template(&dir, "{% for m in messages %}{{ m.content }");
    let data = chat_data(&dir, 4);
    // generate gives the real syntax error …
    let r = run(&["generate", "--model", s(&m), "--chat", "--prompt", "hi", "-n", "1"]);
    assert_error(&r, &["syntax error"], "generate");
    // … and so does training (it used to say "the model has none").
    let r = run(&["--model", s(&m), "--data", s(&data), "--steps", "1", "--out", s(&dir.join("o.gguf"))]);
    assert_error(&r, &[s(&m), "chat template", "syntax error", "--chat-template"], "train");
    assert!(!r.stderr.contains("has none"), "{}", r.stderr);
    // Raw-text data does not need the template: training runs.
    let text = dir.join("text.jsonl");
    std::fs::write(&text, "{\"text\":\"The quick brown fox jumps over the lazy dog.\"}\n".repeat(4)).unwrap();
    let out = dir.join("text.gguf");
    let r = run(&[
        "--model",
        s(&m),
        "--data",
        s(&text),
        "--steps",
        "1",
        "--rank",
        "2",
        "--targets",
        "q",
        "--seq-len",
        "32",
        "--grad-accum",
        "1",
        "--out",
        s(&out),
        "--threads",
        "2",
        "--quiet",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(out.exists());
}

#[test]
fn one_long_word_is_tokenized_in_bounded_memory_and_time() {
    let dir = tmpdir("hostile-word");
    let m = common::smollm();
    // 20 MB "word": took 1.17 GB and 11.7 s in `Bpe::encode_word` (a 200 MB one asked for 5 GiB).
    let word = dir.join("word.txt");
    std::fs::write(&word, "a".repeat(20_000_000)).unwrap();
    let r = run_limited(&["tokenize", "--model", s(&m), "--file", s(&word), "--no-special", "--threads", "2"], VLIMIT_KB, 120);
    assert_eq!(r.code, Some(0), "{:?} {}", r.took, r.stderr);
    assert!(r.peak_rss < 400 << 20, "peak RSS {} MiB", r.peak_rss >> 20);
    let ids: Vec<u32> = r.stdout.split_whitespace().map(|t| t.parse().unwrap()).collect();
    assert!(ids.len() > 20_000_000 / 64, "{} ids", ids.len());
    // The rule: a pre-token over 64 KiB is merged in consecutive 64 KiB chunks; the ids are those
    // of the chunks tokenized one by one.
    let long = "b".repeat(100_000);
    let whole = run(&["tokenize", "--model", s(&m), "--text", &long, "--no-special"]);
    let head = run(&["tokenize", "--model", s(&m), "--text", &long[..65_536], "--no-special"]);
    let tail = run(&["tokenize", "--model", s(&m), "--text", &long[65_536..], "--no-special"]);
    assert_eq!(whole.code, Some(0), "{}", whole.stderr);
    assert_eq!(whole.stdout.trim(), format!("{} {}", head.stdout.trim(), tail.stdout.trim()));
}

#[test]
fn non_regular_and_oversized_inputs_are_refused_before_reading() {
    let dir = tmpdir("hostile-files");
    let m = common::smollm();
    let fifo = dir.join("fifo");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    let big = dir.join("big.jsonl");
    std::fs::write(&big, "{\"text\":\"hello world\"}\n".repeat(100_000)).unwrap(); // 2.3 MB
    let out = dir.join("o.gguf");
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["--model", s(&m), "--data", "/dev/zero", "--out", s(&out)], vec!["/dev/zero", "a character device, not a regular file"]),
        (vec!["--model", s(&m), "--data", s(&fifo), "--out", s(&out)], vec!["FIFO"]),
        (vec!["--model", s(&m), "--data", s(&dir), "--out", s(&out)], vec!["a directory"]),
        (
            vec!["--model", s(&m), "--data", s(&big), "--max-data-size", "1M", "--out", s(&out)],
            vec![s(&big), "more than the input limit", "--max-data-size"],
        ),
        (vec!["tokenize", "--model", s(&m), "--file", "/dev/zero"], vec!["/dev/zero", "character device"]),
        (vec!["perplexity", "--model", s(&m), "--file", s(&fifo)], vec!["FIFO"]),
        (vec!["tokenize", "--model", s(&m), "--file", s(&big), "--max-data-size", "1M"], vec!["more than the input limit"]),
        (vec!["generate", "--model", s(&m), "--file", "/dev/zero"], vec!["character device"]),
    ];
    for (args, needles) in cases {
        let r = run_limited(&args, VLIMIT_KB, 30);
        assert_error(&r, &needles, &args.join(" "));
        assert!(r.took < Duration::from_secs(10), "{args:?} took {:?}", r.took);
    }
    assert!(!out.exists());
}

/// A valid adapter for SmolLM2 with `edit` applied to its pairs.
fn adapter_with(path: &Path, alpha: f32, edit: impl Fn(&mut finetune::lora::LoraSet)) {
    let g = GgufModel::open(common::smollm()).unwrap();
    let m = Model::load(&g).unwrap();
    let mut lora = init_lora(&m, &[Target::Q, Target::V], 2, alpha, 1);
    edit(&mut lora);
    write_adapter(path, &BaseInfo::from_gguf(g.main()), &lora, GgmlType::F32).unwrap();
}

#[test]
fn non_finite_adapters_and_scales_are_refused() {
    let dir = tmpdir("hostile-nan");
    let m = common::smollm();
    let nan = dir.join("nan.gguf");
    adapter_with(&nan, 4.0, |l| l.layers[3][1].1.b[7] = f32::NAN);
    let inf = dir.join("inf.gguf");
    adapter_with(&inf, 4.0, |l| l.layers[0][0].1.a[0] = f32::INFINITY);
    let nan_alpha = dir.join("nan-alpha.gguf");
    adapter_with(&nan_alpha, f32::NAN, |_| {});
    let inf_alpha = dir.join("inf-alpha.gguf");
    adapter_with(&inf_alpha, f32::INFINITY, |_| {});
    let good = dir.join("good.gguf");
    adapter_with(&good, 4.0, |_| {});
    let text = dir.join("t.txt");
    std::fs::write(&text, "The quick brown fox jumps over the lazy dog. ".repeat(30)).unwrap();
    let merged = dir.join("merged.gguf");
    let peft = dir.join("peft");
    let combined = dir.join("combined.gguf");
    let bad_files = [(&nan, "blk.3.attn_v.weight.lora_b", "NaN"), (&inf, "blk.0.attn_q.weight.lora_a", "inf")];
    for (f, tensor, value) in bad_files {
        let what = |cmd: &str| format!("{cmd} {}", f.display());
        for args in [
            vec!["generate", "--model", s(&m), "--lora", s(f), "--prompt", "hi", "-n", "2"],
            vec!["perplexity", "--model", s(&m), "--lora", s(f), "--file", s(&text), "--ctx", "64"],
            vec!["merge", "--model", s(&m), "--lora", s(f), "--out", s(&merged)],
            vec!["export", "--peft", s(&peft), "--model", s(&m), "--lora", s(f)],
            vec!["export", "--merge-adapters", s(f), s(&good), "--out", s(&combined)],
        ] {
            let r = run(&args);
            assert_error(&r, &[s(f), tensor, "non-finite", value], &what(args[0]));
        }
    }
    for f in [&nan_alpha, &inf_alpha] {
        for args in [
            vec!["generate", "--model", s(&m), "--lora", s(f), "--prompt", "hi", "-n", "2"],
            vec!["perplexity", "--model", s(&m), "--lora", s(f), "--file", s(&text), "--ctx", "64"],
            vec!["merge", "--model", s(&m), "--lora", s(f), "--out", s(&merged)],
            vec!["export", "--peft", s(&peft), "--model", s(&m), "--lora", s(f)],
            vec!["export", "--merge-adapters", s(f), s(&good), "--out", s(&combined)],
        ] {
            let r = run(&args);
            assert_error(&r, &[s(f), "adapter.lora.alpha", "finite"], args[0]);
        }
    }
    assert!(!merged.exists() && !peft.exists() && !combined.exists());
    // Scales on the command line.
    for scale in ["nan", "inf", "-1e30"] {
        let spec = format!("{}:{scale}", good.display());
        for args in [
            vec!["generate", "--model", s(&m), "--lora", &spec, "--prompt", "hi", "-n", "2"],
            vec!["perplexity", "--model", s(&m), "--lora", &spec, "--file", s(&text), "--ctx", "64"],
            vec!["merge", "--model", s(&m), "--lora", &spec, "--out", s(&merged)],
            vec!["export", "--merge-adapters", &spec, "--out", s(&combined)],
        ] {
            let r = run(&args);
            assert_error(&r, &["--lora", "scale", "finite"], &format!("{} {spec}", args[0]));
        }
    }
    // The good adapter still works: perplexity is a finite number.
    let r = run(&["perplexity", "--model", s(&m), "--lora", &format!("{}:0.5", good.display()), "--file", s(&text), "--ctx", "64"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let ppl: f64 = r.stdout.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(ppl.is_finite() && ppl > 1.0, "{}", r.stdout);
}

#[test]
fn out_of_range_training_numbers_are_refused_before_work() {
    let dir = tmpdir("hostile-numbers");
    let m = common::smollm();
    let data = common::root().join("examples/style_degozaru.jsonl");
    let out = dir.join("o.gguf");
    let cases: [(&[&str], &str); 12] = [
        (&["--lr=-1"], "--lr"),
        (&["--lr", "nan"], "--lr"),
        (&["--lr", "inf"], "--lr"),
        (&["--alpha", "nan"], "--alpha"),
        (&["--alpha", "inf"], "--alpha"),
        (&["--beta1", "1"], "--beta1"),
        (&["--beta2", "nan"], "--beta2"),
        (&["--adam-eps", "0"], "--adam-eps"),
        (&["--epochs", "0"], "--epochs"),
        (&["--steps", "0"], "--steps"),
        (&["--weight-decay", "nan"], "--weight-decay"),
        (&["--grad-accum", "0"], "--grad-accum"),
    ];
    for (extra, flag) in cases {
        let mut args = vec!["--model", s(&m), "--data", s(&data), "--out", s(&out)];
        args.extend_from_slice(extra);
        let r = run(&args);
        assert_error(&r, &[flag], &extra.join(" "));
        assert!(r.took < Duration::from_secs(10), "{extra:?} took {:?}", r.took);
        assert!(!out.exists(), "{extra:?} wrote an adapter");
    }
    // --threads 100000 used to fail after 20 s with EAGAIN: now capped with a warning.
    let r = run(&["tokenize", "--model", s(&m), "--text", "hello", "--threads", "100000"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("warning: --threads 100000"), "{}", r.stderr);
    assert!(r.took < Duration::from_secs(10), "took {:?}", r.took);
}

#[test]
fn memory_plan_is_enforced_before_the_run() {
    let dir = tmpdir("hostile-plan");
    let m = common::smollm();
    let data = common::root().join("examples/style_degozaru.jsonl");
    let out = dir.join("o.gguf");
    // --rank 100000 printed a 455 GiB plan and started anyway (then aborted).
    let r = run(&["--model", s(&m), "--data", s(&data), "--rank", "100000", "--out", s(&out)]);
    assert_error(&r, &["planned peak memory", "physical memory"], "--rank 100000");
    assert!(r.took < Duration::from_secs(20), "took {:?}", r.took);
    // A 200 MB text under --max-ram 400M reached 1.19 GiB: refused before reading it.
    let text = dir.join("big.jsonl");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&text).unwrap());
        let line = format!("{{\"text\":\"{}\"}}\n", "lorem ipsum dolor sit amet ".repeat(37));
        for _ in 0..200_000 {
            f.write_all(line.as_bytes()).unwrap();
        }
    }
    assert!(std::fs::metadata(&text).unwrap().len() > 200_000_000);
    let r = run(&["--model", s(&m), "--data", s(&text), "--max-ram", "400M", "--out", s(&out)]);
    assert_error(&r, &["exceeds --max-ram", "before reading"], "--max-ram 400M");
    assert!(r.took < Duration::from_secs(10), "took {:?}", r.took);
    std::fs::remove_file(&text).unwrap();
    // 10^6 small records under --max-ram 900M (ran at 1.33 GiB): either refused by the plan, or
    // the run stays under the limit (the trainer checks its resident size after each step).
    let many = dir.join("many.jsonl");
    std::fs::write(&many, "{\"text\":\"hello world, hello\"}\n".repeat(1_000_000)).unwrap();
    let r = run(&[
        "--model",
        s(&m),
        "--data",
        s(&many),
        "--max-ram",
        "900M",
        "--steps",
        "1",
        "--grad-accum",
        "1",
        "--out",
        s(&out),
        "--threads",
        "2",
    ]);
    match r.code {
        Some(0) => assert!(r.peak_rss > 0 && r.peak_rss <= 900 << 20, "peak RSS {} over --max-ram 900M: {}", r.peak_rss, r.stderr),
        _ => assert_error(&r, &["--max-ram"], "10^6 records"),
    }
    assert!(!out.exists() || r.code == Some(0));
}

#[test]
fn trainer_stops_with_a_checkpoint_when_its_memory_exceeds_max_ram() {
    use finetune::train::data::{DataOptions, Dataset};
    use finetune::train::optim::{AdamWConfig, Schedule};
    use finetune::train::trainer::{train, TrainOptions};
    let dir = tmpdir("hostile-rss");
    let g = GgufModel::open(common::smollm()).unwrap();
    let m = Model::load(&g).unwrap();
    let tok = finetune::tokenizer::Tokenizer::from_gguf(g.main()).unwrap();
    let data_path = dir.join("d.jsonl");
    std::fs::write(&data_path, "{\"text\":\"The quick brown fox jumps over the lazy dog.\"}\n".repeat(8)).unwrap();
    let data = Dataset::load(&data_path, None, &tok, None, &DataOptions { seq_len: 32, ..DataOptions::default() }).unwrap();
    let ckdir = dir.join("ck");
    let opts = TrainOptions {
        rank: 2,
        alpha: 4.0,
        rslora: false,
        dropout: 0.0,
        keep_bytes: 0,
        targets: vec![Target::Q],
        lr: 1e-3,
        schedule: Schedule::parse("constant").unwrap(),
        warmup: 0,
        adam: AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 },
        grad_accum: 1,
        max_grad_norm: 1.0,
        epochs: 1.0,
        steps: Some(4),
        seed: 1,
        eval_every: 0,
        save_every: 0,
        keep_checkpoints: 3,
        checkpoint_dir: ckdir.clone(),
        log: None,
        progress: false,
        // Far below what this process already holds: the check after step 1 must trip.
        max_rss: Some(1 << 20),
        matmul: Default::default(),
    };
    let e = train(&m, &data, &opts, None, None).unwrap_err().to_string();
    assert!(e.contains("exceeds --max-ram") && e.contains("after step 1") && e.contains("--resume"), "{e}");
    let saved: Vec<_> = std::fs::read_dir(&ckdir).unwrap().collect();
    assert_eq!(saved.len(), 1, "one checkpoint expected in {}", ckdir.display());
    // With a limit it does not reach, the same run finishes.
    let ok = train(&m, &data, &TrainOptions { max_rss: Some(1 << 40), checkpoint_dir: dir.join("ck2"), ..opts }, None, None).unwrap();
    assert_eq!(ok.history.len(), 4);
}

/// A tiny GGUF header: version 3, no tensors, the given key/value pairs (u32 values, type 4).
fn gguf_with_keys(keys: &[&[u8]]) -> Vec<u8> {
    let mut v = b"GGUF".to_vec();
    v.extend_from_slice(&3u32.to_le_bytes());
    v.extend_from_slice(&0u64.to_le_bytes());
    v.extend_from_slice(&(keys.len() as u64).to_le_bytes());
    for k in keys {
        v.extend_from_slice(&(k.len() as u64).to_le_bytes());
        v.extend_from_slice(k);
        v.extend_from_slice(&4u32.to_le_bytes());
        v.extend_from_slice(&7u32.to_le_bytes());
    }
    v
}

#[test]
fn file_strings_in_messages_are_escaped_and_capped() {
    let dir = tmpdir("hostile-messages");
    // A 49 KB key full of NUL bytes, twice (a duplicate key error quotes it).
    let mut long = b"key".to_vec();
    long.extend(std::iter::repeat_n(0u8, 49_000));
    let f1 = dir.join("nul.gguf");
    std::fs::write(&f1, gguf_with_keys(&[&long, &long])).unwrap();
    // Terminal escape sequences in a key.
    let esc = b"evil\x1b[2J\x1b]0;title\x07key".to_vec();
    let f2 = dir.join("esc.gguf");
    std::fs::write(&f2, gguf_with_keys(&[&esc, &esc])).unwrap();
    for (f, needle) in [(&f1, "bytes more"), (&f2, "\\x1b[2J")] {
        for args in
            [vec!["inspect", s(f)], vec!["tokenize", "--model", s(f), "--text", "x"], vec!["generate", "--model", s(f), "--prompt", "x"]]
        {
            let r = run(&args);
            assert_error(&r, &["duplicate metadata key", needle], &args.join(" "));
            assert!(r.stderr.len() < 2000, "{} bytes of stderr", r.stderr.len());
            assert!(!r.stderr.chars().any(|c| c.is_control() && c != '\n'), "control characters in {:?}", r.stderr);
        }
    }
    // Data-file text: unknown keys with escapes, a role of 100 kB.
    let data = dir.join("d.jsonl");
    let role = "r".repeat(100_000);
    std::fs::write(
        &data,
        format!(
            "{{\"messages\":[{{\"role\":\"{role}\",\"content\":\"x\"}},{{\"role\":\"assistant\",\"content\":\"y\"}}]}}\n{{\"\\u001b[2Jk\":1}}\n"
        ),
    )
    .unwrap();
    let m = common::smollm();
    let r = run(&["--model", s(&m), "--data", s(&data), "--out", s(&dir.join("o.gguf"))]);
    assert_error(&r, &["has role", "bytes more", "accepted roles"], "long role");
    assert!(r.stderr.len() < 2000, "{} bytes", r.stderr.len());
    std::fs::write(&data, "{\"\\u001b[2Jk\":1}\n").unwrap();
    let r = run(&["--model", s(&m), "--data", s(&data), "--out", s(&dir.join("o.gguf"))]);
    assert_error(&r, &["unknown record format", "\\x1b[2Jk"], "escape key");
    assert!(!r.stderr.chars().any(|c| c.is_control() && c != '\n'), "{:?}", r.stderr);
}

/// Inputs the fuzz targets (`bash tests/fuzz.sh`) found crashing, kept as regression tests.
#[test]
fn fuzz_regressions() {
    // template: `{%}` in a template that mentions "generation" panicked in the rewrite of
    // `{% generation %}` tags (a reversed string range).
    let dir = tmpdir("hostile-fuzz");
    let tmpl = dir.join("t.jinja");
    std::fs::write(&tmpl, "{{%}{% if add_generation_prompt %}ndif %}").unwrap();
    let m = common::smollm();
    let r = run(&["generate", "--model", s(&m), "--chat", "--chat-template", s(&tmpl), "--prompt", "hi", "-n", "1"]);
    assert_error(&r, &[s(&tmpl), "chat template syntax error"], "{%}");
}

#[test]
fn garbage_flag_values_and_missing_files_are_named() {
    let dir = tmpdir("hostile-flags");
    let m = common::smollm();
    let good = dir.join("tuned.gguf");
    adapter_with(&good, 4.0, |_| {});
    let ollama = dir.join("ollama");
    // A version that is not one: refused before anything is written.
    let r = run(&["export", "--ollama", s(&ollama), "--model", s(&m), "--lora", s(&good), "--ollama-version", "banana"]);
    assert_error(&r, &["banana"], "--ollama-version banana");
    assert!(!ollama.exists(), "--ollama-version banana created {}", ollama.display());
    // A global size that does not parse.
    let r = run(&["--max-data-size", "lots", "tokenize", "--model", s(&m), "--text", "hi"]);
    assert_error(&r, &["lots"], "--max-data-size lots");
    // Global flags go before a subcommand too; training flags do not go with one.
    let r = run(&["--threads", "1", "--force", "tokenize", "--model", s(&m), "--text", "hi"]);
    assert_eq!(r.code, Some(0), "global flags before a subcommand: {}", r.stderr);
    let r = run(&["--steps", "5", "tokenize", "--model", s(&m), "--text", "hi"]);
    assert_eq!(r.code, Some(2), "a training flag with a subcommand: {}", r.stderr);
    assert!(r.stderr.contains("--steps is a training flag"), "{}", r.stderr);
    // serve with an adapter file that is not there: an error naming it, before listening.
    let missing = dir.join("nowhere.gguf");
    let spec = format!("a={}", missing.display());
    let r = run_limited(&["serve", "--model", s(&m), "--lora", &spec, "--port", "0"], VLIMIT_KB, 30);
    assert_error(&r, &["nowhere.gguf"], "serve --lora missing");
    // export --ollama --merge whose merged GGUF would be the base model itself (DIR/<adapter stem>.gguf):
    // refused even with --force, and the base is left as it was.
    std::fs::create_dir_all(&ollama).unwrap();
    let base = ollama.join("tuned.gguf");
    std::fs::copy(&m, &base).unwrap();
    let before = std::fs::read(&base).unwrap();
    let r = run(&["--force", "export", "--ollama", s(&ollama), "--merge", "--model", s(&base), "--lora", s(&good)]);
    assert_error(&r, &["tuned.gguf"], "export --ollama --merge onto its base");
    assert!(std::fs::read(&base).unwrap() == before, "the base model was changed");
    assert!(!ollama.join("Modelfile.merged").exists());
}
