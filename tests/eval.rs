//! `finetune eval` and `finetune data stats` end to end, against real references:
//! - generation: the base model's outputs equal llama.cpp's greedy answers to the same
//!   conversations (tests/oracle/template_oracle.py greedy), so the base scores are the scores
//!   of llama.cpp's texts;
//! - `nll`: equals training's validation loss for the same records and adapter;
//! - `--normalize`: the tables agree with Python's `unicodedata`, and training, `data stats` and
//!   `eval` on raw text with `--normalize` see exactly what they see on text normalised by an
//!   independent Python implementation (tests/oracle/unicode_oracle.py);
//! - bad input: unknown metric, a regex that does not compile, records without a reference →
//!   errors naming the metric or file:line, exit code 1.
//!
//! The metric rules themselves are unit-tested in src/eval/ (metric.rs, structured.rs).
mod common;

use std::path::Path;
use std::process::Command;

use common::tmpdir;
use serde_json::{json, Value};

fn run(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(common::bin()).args(args).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

fn write_jsonl(path: &Path, records: &[Value]) {
    let text: String = records.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect();
    std::fs::write(path, text).unwrap();
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// llama.cpp's greedy answers (tests/oracle/template_oracle.py greedy) to `(system, user)` pairs.
fn llama_greedy(model: &Path, convs: &[(Option<&str>, &str)], n: usize) -> Vec<Value> {
    let dir = tmpdir("eval-greedy");
    let cases: Vec<Value> = convs
        .iter()
        .map(|(s, u)| {
            let mut msgs = Vec::new();
            if let Some(s) = s {
                msgs.push(json!({"role": "system", "content": s}));
            }
            msgs.push(json!({"role": "user", "content": u}));
            json!({"messages": msgs, "n": n})
        })
        .collect();
    let f = dir.join("cases.json");
    std::fs::write(&f, serde_json::to_vec(&cases).unwrap()).unwrap();
    let out = Command::new(common::python())
        .arg(common::root().join("tests/oracle/template_oracle.py"))
        .args(["greedy", model.to_str().unwrap(), f.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "greedy oracle failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

const TERSE: &str = "You are a helpful assistant. Answer in one short sentence.";

/// Evaluate `(system, question, reference)` records on `model` and check every output against
/// llama.cpp's greedy answer, and the `contains` / `exact` / `ends-with` scores against those
/// texts.
fn base_equals_llama(model: &Path, recs: &[(Option<&str>, &str, &str)], n: usize) {
    let dir = tmpdir("eval-base");
    let data = dir.join("held.jsonl");
    let records: Vec<Value> = recs
        .iter()
        .map(|(s, q, r)| match s {
            Some(s) => json!({"system": s, "prompt": q, "response": r}),
            None => json!({"prompt": q, "response": r}),
        })
        .collect();
    write_jsonl(&data, &records);
    let out = dir.join("results.jsonl");
    let ns = n.to_string();
    let (ok, stdout, err) = run(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--metric",
        "contains",
        "--metric",
        "exact",
        "--metric",
        r"regex:\.$",
        "-n",
        &ns,
        "--threads",
        "2",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{err}");
    let want = llama_greedy(model, &recs.iter().map(|(s, q, _)| (*s, *q)).collect::<Vec<_>>(), n);
    let got = read_jsonl(&out);
    assert_eq!(got.len(), recs.len());
    let (mut contains, mut exact) = (0, 0);
    // llama.cpp's AVX2 build parts from ours at near ties (see common::llama_cpp_is_its_avx512_build):
    // there at most half the answers may differ, each from its first word on at the earliest, and
    // the scores checked are those of our texts.
    let exact_build = common::llama_cpp_is_its_avx512_build();
    let mut parted = 0;
    for ((g, w), (_, q, r)) in got.iter().zip(&want).zip(recs) {
        let text = g["output"].as_str().unwrap();
        let theirs = w["text"].as_str().unwrap();
        if !exact_build && text != theirs {
            // Short answers part early at a near tie; the first word must still agree.
            assert_eq!(text.split_whitespace().next(), theirs.split_whitespace().next(), "{q}: {text:?} vs llama.cpp {theirs:?}");
            parted += 1;
        }
        if exact_build {
            assert_eq!(text, theirs, "{q}: finetune eval vs llama.cpp greedy");
            assert_eq!(g["output_tokens"].as_u64().unwrap() as usize, w["ids"].as_array().unwrap().len(), "{q}");
        }
        assert_eq!(g["reference"], *r);
        // The scores of the text (llama.cpp's, on its AVX-512 build), computed here from the rules.
        let c = text.contains(r.trim());
        let e = text.trim() == r.trim();
        assert_eq!(g["scores"]["contains"], json!(u8::from(c)), "{q}: {text:?}");
        assert_eq!(g["scores"]["exact"], json!(u8::from(e)), "{q}: {text:?}");
        assert_eq!(g["scores"][r"regex:\.$"], json!(u8::from(text.ends_with('.'))), "{q}: {text:?}");
        contains += usize::from(c);
        exact += usize::from(e);
    }
    if !exact_build {
        common::note_not_bit_identical(&format!("eval greedy answers: {parted} of {} part from llama.cpp's", recs.len()));
        assert!(2 * parted <= recs.len(), "{parted} of {} answers differ from llama.cpp's", recs.len());
    }
    let s: Value = serde_json::from_str(&stdout).unwrap();
    let m = &s["configs"][0]["metrics"];
    assert_eq!(m["contains"]["pass"], json!(contains));
    assert_eq!(m["exact"]["pass"], json!(exact));
    assert_eq!(s["records"], json!(recs.len()));
    let generated: usize = if exact_build {
        want.iter().map(|w| w["ids"].as_array().unwrap().len()).sum()
    } else {
        got.iter().map(|g| g["output_tokens"].as_u64().unwrap() as usize).sum()
    };
    assert_eq!(s["configs"][0]["generated_tokens"], json!(generated));
    assert!(s["configs"][0]["gen_tok_per_s"].as_f64().unwrap() > 0.0);
    // At least one answer passes `contains`, so the test can tell scores apart.
    assert!(contains > 0 && contains < recs.len() + 1, "{contains}");
}

#[test]
fn base_outputs_equal_llama_cpp_greedy_smollm2() {
    base_equals_llama(
        &common::smollm(),
        &[
            (Some(TERSE), "What is the capital of France?", "Paris"),
            (Some(TERSE), "How many legs does a spider have?", "eight"),
            (Some(TERSE), "What color is the sky on a clear day?", "blue"),
            (Some(TERSE), "Who wrote Romeo and Juliet?", "Shakespeare"),
            (Some(TERSE), "Translate 'thank you' into French.", "Merci"),
        ],
        32,
    );
}

#[test]
fn base_outputs_equal_llama_cpp_greedy_gemma3() {
    base_equals_llama(
        &common::gemma(),
        // (gemma-3-270m is a base model: it repeats the question, so that is what `contains` finds.)
        &[(None, "What is the capital of Japan?", "capital of Japan"), (None, "日本の首都はどこですか？", "東京")],
        24,
    );
}

/// Train briefly with a validation file; `eval --metric nll` with the adapter equals the
/// trainer's last validation loss, and `--compare` shows the base beside it.
#[test]
fn nll_equals_training_validation_loss() {
    let dir = tmpdir("eval-nll");
    let held = dir.join("held.jsonl");
    let lines: Vec<&str> = include_str!("../examples/style_degozaru_eval.jsonl").lines().take(6).collect();
    std::fs::write(&held, lines.join("\n") + "\n").unwrap();
    let adapter = dir.join("a.gguf");
    let log = dir.join("log.jsonl");
    let m = common::smollm();
    let ms = m.to_str().unwrap();
    let (ok, _, err) = run(&[
        "--model",
        ms,
        "--data",
        common::root().join("examples/style_degozaru.jsonl").to_str().unwrap(),
        "--val-data",
        held.to_str().unwrap(),
        "--steps",
        "2",
        "--grad-accum",
        "2",
        "--lr",
        "1e-3",
        "--seq-len",
        "64",
        "--out",
        adapter.to_str().unwrap(),
        "--log",
        log.to_str().unwrap(),
        "--threads",
        "2",
        "--quiet",
    ]);
    assert!(ok, "{err}");
    let val = read_jsonl(&log).last().unwrap()["val_loss"].as_f64().unwrap();
    let (ok, stdout, err) = run(&[
        "eval",
        "--model",
        ms,
        "--lora",
        adapter.to_str().unwrap(),
        "--compare",
        "--data",
        held.to_str().unwrap(),
        "--metric",
        "nll",
        "--seq-len",
        "64",
        "--json",
        "--threads",
        "2",
    ]);
    assert!(ok, "{err}");
    let s: Value = serde_json::from_str(&stdout).unwrap();
    let names: Vec<&str> = s["configs"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["base", "a"]);
    let nll = |i: usize| s["configs"][i]["metrics"]["nll"]["nll"].as_f64().unwrap();
    assert!((nll(1) - val).abs() <= 1e-9 * val.abs(), "eval nll {} vs training val_loss {val}", nll(1));
    assert!((s["configs"][1]["metrics"]["nll"]["ppl"].as_f64().unwrap() - val.exp()).abs() < 1e-9 * val.exp());
    assert!(nll(0) > nll(1), "two steps at lr 1e-3 lower the held-out loss: base {} vs adapter {}", nll(0), nll(1));
}

fn python_oracle(args: &[&str]) -> Value {
    let out = Command::new(common::python()).arg(common::root().join("tests/oracle/unicode_oracle.py")).args(args).output().unwrap();
    assert!(out.status.success(), "unicode oracle {args:?}:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn arabic_tables_agree_with_unicode_data() {
    use finetune::normalize::{ALEF, ARABIC_ALEFS, ARABIC_STRIP, HAA_MAP, YAA_MAP};
    let dir = tmpdir("eval-unicode");
    let cps: Vec<u32> = ARABIC_STRIP
        .iter()
        .chain(&ARABIC_ALEFS)
        .chain([&ALEF, &YAA_MAP.0, &YAA_MAP.1, &HAA_MAP.0, &HAA_MAP.1])
        .map(|&c| c as u32)
        .collect();
    let f = dir.join("cps.json");
    std::fs::write(&f, serde_json::to_vec(&cps).unwrap()).unwrap();
    let props = python_oracle(&["props", f.to_str().unwrap()]);
    let p = |c: char| props.as_array().unwrap().iter().find(|x| x["cp"] == json!(c as u32)).unwrap().clone();
    for &c in &ARABIC_STRIP {
        let x = p(c);
        let name = x["name"].as_str().unwrap();
        if c == '\u{0640}' {
            assert_eq!((name, x["category"].as_str().unwrap()), ("ARABIC TATWEEL", "Lm"));
        } else {
            assert_eq!(x["category"], "Mn", "U+{:04X} {name} is stripped as a combining mark", c as u32);
        }
    }
    for &c in &ARABIC_ALEFS {
        let x = p(c);
        let name = x["name"].as_str().unwrap();
        assert!(name.starts_with("ARABIC LETTER ALEF"), "{name}");
        assert!(x["decomposition"].as_str().unwrap().starts_with("0627 ") || name == "ARABIC LETTER ALEF WASLA", "{x}");
    }
    assert_eq!(p(ALEF)["name"], "ARABIC LETTER ALEF");
    assert_eq!(
        (p(YAA_MAP.0)["name"].clone(), p(YAA_MAP.1)["name"].clone()),
        (json!("ARABIC LETTER ALEF MAKSURA"), json!("ARABIC LETTER YEH"))
    );
    assert_eq!(
        (p(HAA_MAP.0)["name"].clone(), p(HAA_MAP.1)["name"].clone()),
        (json!("ARABIC LETTER TEH MARBUTA"), json!("ARABIC LETTER HEH"))
    );
    // The oracle derives the same tables from the Unicode data alone.
    let raw = common::root().join("tests/data/eval_arabic.jsonl");
    let t = python_oracle(&["normalize", "arabic", raw.to_str().unwrap(), dir.join("x.jsonl").to_str().unwrap()]);
    let mut strip: Vec<u32> = ARABIC_STRIP.iter().map(|&c| c as u32).collect();
    strip.sort_unstable();
    let mut alefs: Vec<u32> = ARABIC_ALEFS.iter().map(|&c| c as u32).collect();
    alefs.sort_unstable();
    assert_eq!((t["strip"].clone(), t["alefs"].clone()), (json!(strip), json!(alefs)));
    // Every normalisation equals Python's on every string of the Arabic test set.
    for spec in ["nfkc", "arabic", "arabic+yaa", "arabic+haa", "nfkc+arabic+yaa+haa"] {
        let out = dir.join(format!("{spec}.jsonl"));
        python_oracle(&["normalize", spec, raw.to_str().unwrap(), out.to_str().unwrap()]);
        let n = finetune::normalize::Normalize::parse(spec).unwrap();
        for (a, b) in read_jsonl(&raw).iter().zip(read_jsonl(&out)) {
            for (k, v) in a.as_object().unwrap() {
                assert_eq!(n.apply(v.as_str().unwrap()), b[k].as_str().unwrap(), "{spec} on {v}");
            }
        }
    }
}

/// `--normalize` on raw text gives training, `data stats` and `eval` exactly what they get on
/// text normalised by the Python oracle.
#[test]
fn normalize_applies_identically_at_train_and_eval_time() {
    let dir = tmpdir("eval-normalize");
    let spec = "nfkc+arabic+yaa+haa";
    let raw = common::root().join("tests/data/eval_arabic.jsonl");
    let pre = dir.join("pre.jsonl");
    python_oracle(&["normalize", spec, raw.to_str().unwrap(), pre.to_str().unwrap()]);
    let m = common::smollm();
    let ms = m.to_str().unwrap();
    let stats = |data: &Path, norm: Option<&str>| {
        let mut args = vec!["data", "stats", "--model", ms, "--data", data.to_str().unwrap(), "--seq-len", "160", "--json"];
        if let Some(n) = norm {
            args.extend(["--normalize", n]);
        }
        let (ok, out, err) = run(&args);
        assert!(ok, "{err}");
        let mut v: Value = serde_json::from_str(&out).unwrap();
        v.as_object_mut().unwrap().remove("data");
        v
    };
    let a = stats(&raw, Some(spec));
    assert_eq!(a, stats(&pre, None));
    assert_ne!(a["tokens"], stats(&raw, None)["tokens"], "the normalisation changes the tokens");
    // Training: the first step's loss is the same.
    let train = |data: &Path, norm: Option<&str>, tag: &str| {
        let log = dir.join(format!("{tag}.log.jsonl"));
        let out = dir.join(format!("{tag}.gguf"));
        let mut args = vec![
            "--model",
            ms,
            "--data",
            data.to_str().unwrap(),
            "--steps",
            "1",
            "--grad-accum",
            "2",
            "--seq-len",
            "160",
            "--out",
            out.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
            "--threads",
            "2",
            "--quiet",
        ];
        if let Some(n) = norm {
            args.extend(["--normalize", n]);
        }
        let (ok, _, err) = run(&args);
        assert!(ok, "{err}");
        (read_jsonl(&log)[0]["loss"].as_f64().unwrap(), std::fs::read(&out).unwrap())
    };
    let (l1, a1) = train(&raw, Some(spec), "raw");
    let (l2, a2) = train(&pre, None, "pre");
    assert_eq!(l1, l2);
    assert_eq!(a1, a2, "same adapter bytes");
    // Eval: same NLL and choice predictions.
    let eval = |data: &Path, norm: Option<&str>| {
        let mut args = vec![
            "eval",
            "--model",
            ms,
            "--data",
            data.to_str().unwrap(),
            "--metric",
            "nll",
            "--metric",
            "contains",
            "-n",
            "8",
            "--json",
            "--threads",
            "2",
            "--quiet",
        ];
        if let Some(n) = norm {
            args.extend(["--normalize", n]);
        }
        let (ok, out, err) = run(&args);
        assert!(ok, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        v["configs"][0]["metrics"]["nll"].clone()
    };
    assert_eq!(eval(&raw, Some(spec)), eval(&pre, None));
}

#[test]
fn data_stats_histogram() {
    let m = common::smollm();
    let data = common::root().join("examples/style_degozaru.jsonl");
    let (ok, out, err) =
        run(&["data", "stats", "--model", m.to_str().unwrap(), "--data", data.to_str().unwrap(), "--seq-len", "48", "--json"]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let n = std::fs::read_to_string(&data).unwrap().lines().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(v["records"], json!(n));
    let hist = v["histogram"].as_array().unwrap();
    assert_eq!(hist.iter().map(|h| h["records"].as_u64().unwrap()).sum::<u64>(), n as u64);
    let above: u64 = hist[8..].iter().map(|h| h["records"].as_u64().unwrap()).sum();
    assert_eq!(json!(above), v["truncated"]);
    assert_eq!(hist[7]["to"], json!(48));
    assert_eq!(hist[8]["from"], json!(49));
    assert!(v["truncated"].as_u64().unwrap() > 0 && v["truncated"].as_u64().unwrap() < n as u64, "{v}");
    // Training on the same data at the same length counts the same truncations and tokens.
    let dir = tmpdir("eval-stats");
    let (ok, _, err) = run(&[
        "--model",
        m.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--seq-len",
        "100000",
        "--steps",
        "1",
        "--rank",
        "1",
        "--targets",
        "q",
        "--out",
        dir.join("x.gguf").to_str().unwrap(),
        "--threads",
        "2",
    ]);
    let want = format!("{} tokens, {} trained", v["tokens"], v["response_tokens"]);
    assert!(err.contains(&want), "training's data line should say '{want}' (ok={ok}):\n{err}");
    let (ok, text, _) = run(&["data", "stats", "--model", m.to_str().unwrap(), "--data", data.to_str().unwrap(), "--seq-len", "48"]);
    assert!(ok && text.contains("would be truncated") && text.contains("█"), "{text}");
}

#[test]
fn bad_input_names_the_record() {
    let dir = tmpdir("eval-bad");
    let m = common::smollm();
    let ms = m.to_str().unwrap();
    let data = dir.join("held.jsonl");
    write_jsonl(&data, &[json!({"prompt": "a", "response": "{\"x\": 1}"}), json!({"prompt": "b", "response": "not json"})]);
    let ds = data.to_str().unwrap();
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", "--model", ms, "--data", ds, "--threads", "2"];
        args.extend(extra);
        let (ok, out, err) = run(&args);
        assert!(!ok, "{out}");
        assert!(err.starts_with("error: ") && !err.contains("panicked"), "{err}");
        err
    };
    let e = eval(&["--metric", "bleu"]);
    assert!(e.contains("unknown metric 'bleu'") && e.contains("ends-with"), "{e}");
    let e = eval(&["--metric", "regex:(unclosed"]);
    assert!(e.contains("regex:(unclosed") && e.contains("does not compile"), "{e}");
    let e = eval(&["--metric", "json"]);
    assert!(e.contains(&format!("{ds}:2: the reference answer is not valid json")), "{e}");
    let e = eval(&["--metric", "choice", "--choices", "{\"x\": 1},yes"]);
    assert!(e.contains(&format!("{ds}:2:")) && e.contains("not one of --choices"), "{e}");
    let bad = |tag: &str, records: &[Value], want: &str| {
        let f = dir.join(format!("{tag}.jsonl"));
        write_jsonl(&f, records);
        let (ok, _, err) = run(&["eval", "--model", ms, "--data", f.to_str().unwrap(), "--metric", "exact"]);
        assert!(!ok && err.contains(&format!("{}:{want}", f.display())), "{tag}: {err}");
    };
    bad("text", &[json!({"text": "x"})], "1: a raw {\"text\"} record has no reference answer");
    bad("empty", &[json!({"prompt": "a", "response": "b"}), json!({"prompt": "c", "response": "  "})], "2: the reference answer");
    bad(
        "chat",
        &[json!({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]})],
        "1: the last message must be the assistant's reference answer",
    );
    bad("missing", &[json!({"prompt": "a", "response": "b"}), json!({"prompt": "c"})], "2: missing field");
    // --out never overwrites an input.
    let (ok, _, err) = run(&["eval", "--model", ms, "--data", ds, "--metric", "exact", "--out", ds]);
    assert!(!ok && err.contains("is the same file as --data"), "{err}");
}

#[test]
fn help_has_examples() {
    let (ok, out, _) = run(&["eval", "--help"]);
    assert!(ok && out.contains("finetune eval --model models/") && out.contains("ends-with") && out.contains("1 = 1.0 = 1e0"), "{out}");
    let (ok, out, _) = run(&["data", "stats", "--help"]);
    assert!(ok && out.contains("finetune data stats --model models/"), "{out}");
}

/// The bundled conversion example (examples/make_convert.py): every reference parses under its
/// metric, and where source and answer hold the same values (JSON ↔ YAML, TOML → JSON) the two
/// documents — written by the generator's own emitters — are equal under the metric's rules.
#[test]
fn bundled_conversion_pairs_parse_and_agree() {
    use finetune::eval::{load_items, Metrics, Structured};
    use finetune::normalize::Normalize;
    use finetune::train::data::Format;
    let tasks = [
        ("json_to_yaml", Structured::Json, Structured::Yaml),
        ("yaml_to_json", Structured::Yaml, Structured::Json),
        ("toml_to_json", Structured::Toml, Structured::Json),
        ("csv_to_json", Structured::Csv, Structured::Json),
        ("json_to_xml", Structured::Json, Structured::Xml),
    ];
    let train = read_jsonl(&common::root().join("examples/convert_train.jsonl"));
    assert_eq!(train.len(), 320);
    for (task, from, to) in tasks {
        let path = common::root().join(format!("examples/convert_test_{task}.jsonl"));
        let items = load_items(&path, Format::Auto, &Normalize::default(), None).unwrap();
        assert_eq!(items.len(), 16);
        // Every reference parses (prepare fails naming the record otherwise).
        Metrics::prepare(&[to.to_string()], None, &Normalize::default(), &items, &path).unwrap();
        let records: Vec<Value> = read_jsonl(&path).into_iter().chain(train.iter().filter(|r| r["task"] == task).cloned()).collect();
        assert_eq!(records.len(), 80, "{task}");
        let held: Vec<&str> = records[..16].iter().map(|r| r["prompt"].as_str().unwrap()).collect();
        for r in &records {
            let (_, src) = r["prompt"].as_str().unwrap().split_once("\n\n").unwrap();
            let a = from.parse(src).unwrap_or_else(|e| panic!("{task} source: {e}\n{src}"));
            let b = to.parse(r["response"].as_str().unwrap()).unwrap_or_else(|e| panic!("{task} answer: {e}\n{r}"));
            if !matches!(task, "csv_to_json" | "json_to_xml") {
                assert_eq!(a, b, "{task}: {r}");
            }
        }
        assert!(train.iter().all(|r| !held.contains(&r["prompt"].as_str().unwrap())), "{task}: a held-out prompt is in the training file");
    }
}

/// The bundled Japanese style and Arabic examples load as eval items, every Japanese answer
/// passes the documented `ends-with` metric, and under `--normalize arabic` the Arabic choice
/// references reduce to the four labels of each task.
#[test]
fn bundled_style_and_arabic_sets_load() {
    use finetune::eval::metric::{score, Metric, Score};
    use finetune::eval::{load_items, Metrics};
    use finetune::normalize::Normalize;
    use finetune::train::data::Format;
    let none = Normalize::default();
    let ends = Metric::parse("ends-with:でござる|でござるよ|でござるな", &none).unwrap();
    let mut n = 0;
    for f in ["gozaru_ja.json", "gozaru_ja_eval.json"] {
        let items = load_items(&common::root().join("examples").join(f), Format::Auto, &none, None).unwrap();
        for it in &items {
            assert_eq!(score(&ends, &it.reference, "", None, &[]), Score::Pass(true), "{f}:{}", it.line);
        }
        n += items.len();
    }
    assert!(n >= 300, "{n} Japanese records");
    let arabic = Normalize::parse("arabic").unwrap();
    for (task, labels) in [("topic", "رياضة,سياسة,اقتصاد,صحة"), ("dialect", "فصحى,مصري,شامي,خليجي")] {
        let path = common::root().join(format!("examples/arabic_test_{task}.jsonl"));
        let items = load_items(&path, Format::Auto, &arabic, None).unwrap();
        let m = Metrics::prepare(&["choice".to_string()], Some(labels), &arabic, &items, &path).unwrap();
        assert_eq!(m.labels.len(), 4);
        let auto = Metrics::prepare(&["choice".to_string()], None, &arabic, &items, &path).unwrap();
        assert_eq!(auto.labels.len(), 4, "{task}: {:?}", auto.labels);
    }
    let path = common::root().join("examples/arabic_test_capital.jsonl");
    let raw = std::fs::read_to_string(&path).unwrap();
    assert!(raw.chars().any(|c| ('\u{064B}'..='\u{0652}').contains(&c)), "the test set carries tashkeel");
    let items = load_items(&path, Format::Auto, &arabic, None).unwrap();
    assert!(items.iter().all(|it| !it.reference.chars().any(|c| ('\u{064B}'..='\u{0652}').contains(&c))));
}
