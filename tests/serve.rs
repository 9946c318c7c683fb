//! `finetune serve` against the official OpenAI Python client (PyPI `openai`, in the oracle
//! venv): tests/oracle/serve_client.py drives the server on loopback and reports what it got;
//! every answer is compared here with `finetune generate` run on the same adapter(s), prompt and
//! token count (greedy), so a request answered with another request's adapters fails.
mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{bin, python, root, smollm, tmpdir};
use finetune::adapter::{write_adapter, BaseInfo};
use finetune::gguf::GgufModel;
use finetune::lora::Target;
use finetune::model::Model;
use finetune::quant::GgmlType;
use serde_json::{json, Value};

const N: usize = 8;
const PROMPTS: [&str; 3] = ["Tell me about the sea.", "Write a haiku about rain.", "Describe a cat."];
/// Model-name suffixes: base, a, b (served with scale 0.5), both stacked.
const COMBOS: [&str; 4] = ["", "a", "b", "a+b"];
const COMPLETION_PROMPT: &str = "Once upon a time";
const STREAM_N: usize = 40;

/// A random adapter on every layer (B uniform ±b_scale): strong enough that 8 greedy tokens differ.
fn adapter(model: &Path, dir: &Path, name: &str, seed: u64, b_scale: f32) -> PathBuf {
    let g = GgufModel::open(model).unwrap();
    let m = Model::load(&g).unwrap();
    let lora = common::lora::random_lora(&m, &[Target::Q, Target::V, Target::O, Target::Up, Target::Down], 8, 16.0, b_scale, seed);
    let path = dir.join(format!("{name}.gguf"));
    write_adapter(&path, &BaseInfo::from_gguf(g.main()), &lora, GgmlType::F32).unwrap();
    path
}

/// `finetune generate` (greedy, `n` tokens); its stdout ends with one newline after the text.
fn generate(model: &Path, prompt: &str, chat: bool, n: usize, loras: &[String]) -> String {
    let mut c = Command::new(bin());
    c.arg("generate").arg("--model").arg(model).args(["--prompt", prompt, "-n", &n.to_string(), "--temp", "0"]);
    if chat {
        c.arg("--chat");
    }
    for l in loras {
        c.args(["--lora", l]);
    }
    let out = c.output().unwrap();
    assert!(out.status.success(), "generate failed: {}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8(out.stdout).unwrap();
    s.strip_suffix('\n').unwrap_or(&s).to_string()
}

/// The `--lora` arguments of `generate` for a combo.
fn combo_loras(combo: &str, a: &Path, b: &Path) -> Vec<String> {
    combo
        .split('+')
        .filter(|s| !s.is_empty())
        .map(|s| match s {
            "a" => a.display().to_string(),
            "b" => format!("{}:0.5", b.display()),
            _ => unreachable!(),
        })
        .collect()
}

fn check_error(name: &str, e: &Value, status: u64, code: &str) {
    assert_eq!(e["status"].as_u64(), Some(status), "{name}: {e}");
    let err = &e["body"]["error"];
    let msg = err["message"].as_str().unwrap_or("");
    assert!(!msg.is_empty() && err["type"].is_string(), "{name}: no OpenAI-style error: {e}");
    assert_eq!(err["code"].as_str(), Some(code), "{name}: {e}");
}

#[test]
fn openai_client_per_request_adapters_stacks_load_errors_shutdown() {
    let dir = tmpdir("serve");
    let model = smollm();
    let a = adapter(&model, &dir, "a", 11, 0.18);
    let b = adapter(&model, &dir, "b", 22, 0.5);

    // References: `finetune generate` per prompt and adapter stack.
    let mut expected = std::collections::BTreeMap::new();
    for (i, p) in PROMPTS.iter().enumerate() {
        let answers: Vec<String> = COMBOS.iter().map(|c| generate(&model, p, true, N, &combo_loras(c, &a, &b))).collect();
        for (k, c) in COMBOS.iter().enumerate() {
            assert!(!answers[k].is_empty(), "prompt {i} {c:?}: empty reference");
            for l in 0..k {
                assert_ne!(
                    answers[k], answers[l],
                    "prompt {i}: '{c}' and '{}' answer alike; the adapters are too weak to tell apart",
                    COMBOS[l]
                );
            }
            expected.insert(format!("{c}|{i}"), answers[k].clone());
        }
    }
    let lora_list = json!([{"name": "b", "scale": 0.25}, {"id": 0, "scale": 1.0}]);
    let want_list = generate(&model, PROMPTS[0], true, N, &[format!("{}:0.25", b.display()), a.display().to_string()]);
    let want_completion = generate(&model, COMPLETION_PROMPT, false, N, &[a.display().to_string()]);
    let want_stream_base = generate(&model, COMPLETION_PROMPT, false, STREAM_N, &[]);

    // The server: free port, small context, queue of 4, 16 KiB body limit.
    let mut child = Command::new(bin())
        .arg("serve")
        .arg("--model")
        .arg(&model)
        .arg("--lora")
        .arg(format!("a={}", a.display()))
        .arg("--lora")
        .arg(format!("b={}:0.5", b.display()))
        .args(["--port", "0", "--ctx", "128", "--queue", "4", "--max-body", "16384"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    let url = loop {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            panic!("serve exited before listening:\n{log}{:?}", child.wait());
        }
        log += &line;
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let drain = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = err.read_to_string(&mut rest);
        rest
    });
    let base = "SmolLM2-135M-Instruct.Q4_1";
    let spec = json!({
        "base": base, "prompts": PROMPTS, "combos": COMBOS, "max_tokens": N, "lora_list": lora_list,
        "completion_prompt": COMPLETION_PROMPT, "stream_max_tokens": STREAM_N,
        "long_prompt": "hello ".repeat(300), "max_body": 16384,
        "load": {"requests": 200, "clients": 8, "seed": 5},
    });
    let spec_path = dir.join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let out = Command::new(python())
        .arg(root().join("tests/oracle/serve_client.py"))
        .arg(&url)
        .arg(child.id().to_string())
        .arg(&spec_path)
        .output()
        .unwrap();
    let status = child.wait().unwrap();
    log += &drain.join().unwrap();
    assert!(out.status.success(), "serve_client.py failed:\n{}\nserver log:\n{log}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    println!(
        "openai {} — load: {:.1} s, {} answers, {} × 503",
        r["openai_version"],
        r["load"]["secs"],
        r["load"]["results"].as_array().unwrap().len(),
        r["load"]["busy_codes"].as_array().unwrap().len()
    );

    // /v1/models: the base and base+name per adapter.
    assert_eq!(r["models"], json!([base, format!("{base}+a"), format!("{base}+b")]));
    // Per-request adapters and stacks, each equal to generate with the same adapters.
    for (k, want) in &expected {
        assert_eq!(r["chat"][k].as_str(), Some(want.as_str()), "chat answer {k} ≠ finetune generate");
    }
    let meta = &r["chat_meta"];
    assert_eq!(
        (meta["object"].as_str(), meta["model"].as_str(), meta["role"].as_str()),
        (Some("chat.completion"), Some(&*format!("{base}+a+b")), Some("assistant"))
    );
    let u = &meta["usage"];
    assert!(u["completion_tokens"].as_u64().unwrap() <= N as u64 && u["prompt_tokens"].as_u64().unwrap() > 5, "{u}");
    assert_eq!(u["total_tokens"].as_u64(), Some(u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()));
    // Streaming gives the same text in several chunks, a finish reason and the usage.
    let s = &r["stream"];
    assert_eq!(s["text"].as_str(), Some(expected["a+b|0"].as_str()), "streamed ≠ generate");
    assert!(s["chunks"].as_u64().unwrap() >= 3 && s["finish_reason"].is_string() && s["usage"]["completion_tokens"].is_u64(), "{s}");
    assert_eq!(s["usage"], meta["usage"]);
    assert_eq!(r["lora_list"].as_str(), Some(want_list.as_str()), "lora list [b×0.25, a] ≠ generate --lora b:0.25 --lora a");
    assert_eq!(r["completion"]["text"].as_str(), Some(want_completion.as_str()), "/v1/completions ≠ generate --prompt");
    assert_eq!(r["completion"]["object"], "text_completion");

    // Errors: 4xx with an OpenAI-style message, never a crash.
    let e = &r["errors"];
    check_error("unknown adapter", &e["unknown_adapter_in_model"], 404, "model_not_found");
    assert!(e["unknown_adapter_in_model"]["body"]["error"]["message"].as_str().unwrap().contains("'nope'"));
    assert_eq!(e["unknown_adapter_in_model"]["class"], "NotFoundError");
    check_error("unknown base", &e["unknown_base"], 404, "model_not_found");
    check_error("unknown lora name", &e["unknown_lora_name"], 400, "invalid_lora");
    check_error("prompt beyond the context", &e["prompt_beyond_context"], 400, "context_length_exceeded");
    assert_eq!(e["prompt_beyond_context"]["class"], "BadRequestError");
    check_error("malformed JSON", &e["malformed_json"], 400, "invalid_json");
    check_error("not an object", &e["not_an_object"], 400, "invalid_json");
    check_error("oversize body", &e["oversize_body"], 413, "body_too_large");

    // Load: every answer is its adapter's single-request greedy answer; the only other answer
    // is the documented 503 (queue full), which does occur with 8 clients and --queue 4.
    let load = &r["load"];
    assert_eq!(load["other_errors"], json!([]), "errors other than 503 under load");
    let results = load["results"].as_array().unwrap();
    assert_eq!(results.len(), 200);
    for x in results {
        let key = format!("{}|{}", x[0].as_str().unwrap(), x[1]);
        assert_eq!(x[2].as_str(), Some(expected[&key].as_str()), "under load, {key} got another answer");
    }
    let busy = load["busy_codes"].as_array().unwrap();
    assert!(!busy.is_empty(), "8 clients on a queue of 4 never saw a 503");
    assert!(busy.iter().all(|c| c == "queue_full"), "{busy:?}");

    // SIGTERM during a streamed answer: it completes, a new request is refused, exit 0.
    let sd = &r["shutdown"];
    assert_eq!(sd["inflight_text"].as_str(), Some(want_stream_base.as_str()), "the in-flight answer was cut by SIGTERM");
    let refused = sd["new_request"]["refused"].is_string() || sd["new_request"]["status"] == 503;
    assert!(refused, "a request after SIGTERM was served: {sd}");
    assert!(status.success(), "serve exited with {status}:\n{log}");
    assert!(log.contains("stopped"), "{log}");
}

#[test]
fn bad_serve_options_are_clear_errors() {
    let dir = tmpdir("serve-bad");
    let model = smollm();
    let garbage = dir.join("garbage.gguf");
    std::fs::write(&garbage, b"not a gguf at all").unwrap();
    let missing = dir.join("missing.gguf");
    let a = adapter(&model, &dir, "a", 1, 0.1);
    let cases: Vec<(Vec<String>, String)> = vec![
        (vec!["--lora".into(), format!("x={}", missing.display())], missing.display().to_string()),
        (vec!["--lora".into(), format!("x={}", garbage.display())], garbage.display().to_string()),
        (vec!["--lora".into(), format!("x={}", model.display())], "x=".into()),
        (vec!["--lora".into(), format!("a+b={}", a.display())], "no '+'".into()),
        (vec!["--lora".into(), format!("a={}", a.display()), "--lora".into(), format!("a={}", a.display())], "given twice".into()),
        (vec!["--queue".into(), "0".into()], "--queue".into()),
        (vec!["--max-body".into(), "lots".into()], "lots".into()),
    ];
    for (args, want) in cases {
        let out = Command::new(bin()).arg("serve").arg("--model").arg(&model).args(["--port", "0"]).args(&args).output().unwrap();
        let e = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {e}");
        assert!(e.contains("error:") && e.contains(&want) && !e.contains("panicked"), "{args:?}: {e}");
    }
}
