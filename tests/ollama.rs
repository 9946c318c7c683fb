//! `finetune export --ollama`: Modelfiles checked against golden files, and their TEMPLATE
//! executed by real Go `text/template` (tests/oracle/gotemplate, which prepares the data as
//! Ollama does) compared with the GGUF chat template rendered by `finetune::chat::ChatTemplate`
//! (itself tested byte-identical to jinja2).
//!
//! What is normalised in the comparison: nothing but a leading BOS token text in the Jinja
//! rendering, removed when the model's tokenizer adds BOS (`tokenizer.ggml.add_bos_token`),
//! because Ollama's tokenizer adds BOS to the prompt itself and the Ollama templates do not write
//! it. The conversations alternate roles and their contents have no leading/trailing
//! whitespace: Ollama merges consecutive same-role messages, and Go templates cannot trim.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{bin, gemma, root, smollm, tmpdir};
use finetune::adapter::ollama::{detect, modelfile, Family, ModelfileSpec, OllamaError};
use finetune::adapter::{write_adapter, BaseInfo};
use finetune::chat::{ChatTemplate, Message};
use finetune::gguf::GgufFile;
use finetune::lora::{LoraPair, LoraSet, Target};
use finetune::quant::GgmlType;

/// Build the Go renderer once per test process into the scratch dir.
fn go_renderer() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let go = std::env::var("GO").unwrap_or_else(|_| "go".into());
            let out = root().join("target/test-tmp/gotemplate-bin").join(format!("render-{}", std::process::id()));
            std::fs::create_dir_all(out.parent().unwrap()).unwrap();
            let st = Command::new(&go)
                .args(["build", "-o"])
                .arg(&out)
                .arg(root().join("tests/oracle/gotemplate/main.go"))
                .env("GO111MODULE", "off")
                .env("GOFLAGS", "")
                .status()
                .unwrap_or_else(|e| {
                    panic!("ORACLE MISSING: cannot run `{go}` ({e}). Run `bash tests/oracle/setup.sh` (installs golang-go).")
                });
            assert!(st.success(), "go build of tests/oracle/gotemplate failed");
            out
        })
        .clone()
}

/// Ollama's prompt for `msgs` under `modelfile` (TEMPLATE/SYSTEM parsed by the Go program).
fn go_render(modelfile: &str, msgs: &[Message]) -> serde_json::Value {
    let req = serde_json::json!({
        "modelfile": modelfile,
        "messages": msgs.iter().map(|m| serde_json::json!({"role": m.role, "content": m.content})).collect::<Vec<_>>(),
    });
    let mut child = Command::new(go_renderer()).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(req.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "Go renderer failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Multi-turn conversations: contents with inner newlines, quotes, braces and non-ASCII text.
fn conversations() -> Vec<Vec<Message>> {
    let turns = vec![
        Message::new("user", "Write a haiku about \"rain\".\nKeep it short."),
        Message::new("assistant", "Grey clouds gather low —\n{{ not a template }} drops\non the tin roof: rain."),
        Message::new("user", "Now translate it to French, s'il vous plaît."),
        Message::new("assistant", "Nuages gris bas,\ngouttes sur le toit de tôle —\nla pluie, enfin là."),
        Message::new("user", "Merci! One word for it?"),
    ];
    let mut with_system = vec![Message::new("system", "You are a poet.\nAnswer in verse when you can.")];
    with_system.extend(turns.iter().cloned());
    vec![turns[..1].to_vec(), turns.clone(), with_system]
}

/// The Jinja rendering Ollama's prompt must equal: the conversation with the Modelfile SYSTEM
/// prepended as Ollama does, generation prompt on, leading BOS text removed when BOS is added
/// by the tokenizer.
fn jinja_expected(t: &ChatTemplate, msgs: &[Message], system: Option<&str>, bos: Option<&str>) -> String {
    let mut all = Vec::new();
    if let Some(s) = system {
        if msgs.first().is_none_or(|m| m.role != "system") {
            all.push(Message::new("system", s));
        }
    }
    all.extend(msgs.iter().cloned());
    let out = t.render(&all, true).unwrap();
    match bos {
        Some(b) => out.strip_prefix(b).map(str::to_string).unwrap_or(out),
        None => out,
    }
}

/// Go's prompts for every conversation equal the Jinja renderings; the parsed stops are the
/// family's.
fn check_against_go(mf: &str, t: &ChatTemplate, system: Option<&str>, bos: Option<&str>, family: &Family) {
    for (i, conv) in conversations().iter().enumerate() {
        let got = go_render(mf, conv);
        assert_eq!(got["uses_messages"], true, "the template must use .Messages (else Ollama uses its legacy path)");
        assert_eq!(got["system"].as_str().unwrap(), system.unwrap_or(""), "SYSTEM as parsed by the Go side");
        let stops: Vec<&str> = got["stops"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(stops, family.stops());
        let want = jinja_expected(t, conv, system, bos);
        assert_eq!(got["prompt"].as_str().unwrap(), want, "{}: conversation {i}: Ollama prompt ≠ chat template", family.name());
    }
}

/// A small LoRA adapter (zeros, layer 0 Q and V) for `model`.
fn adapter_for(model: &Path, dir: &Path, name: &str) -> PathBuf {
    let g = GgufFile::open(model).unwrap();
    let pair = |t: Target| {
        let w = g.tensor_info(&t.tensor_name(0)).unwrap();
        (t, LoraPair::zeros(w.dims[0] as usize, w.dims[1] as usize, 4))
    };
    let set = LoraSet { alpha: 8.0, layers: vec![vec![pair(Target::Q), pair(Target::V)]] };
    let path = dir.join(name);
    write_adapter(&path, &BaseInfo::from_gguf(&g), &set, GgmlType::F32).unwrap();
    path
}

fn canon(p: &Path) -> String {
    std::fs::canonicalize(p).unwrap().to_str().unwrap().to_string()
}

/// The golden Modelfile `tests/data/ollama/NAME` with the placeholders (`{BASE}`, `{ADAPTER}`,
/// `{MERGED}`) filled in with canonical paths. `FINETUNE_UPDATE_GOLDEN=1` rewrites it from
/// `actual` first (review the diff before committing).
fn golden_with(name: &str, subs: &[(&str, &Path)], actual: &str) -> String {
    let p = root().join("tests/data/ollama").join(name);
    if std::env::var_os("FINETUNE_UPDATE_GOLDEN").is_some() {
        let t = subs.iter().fold(actual.to_string(), |t, (k, v)| t.replace(&canon(v), k));
        std::fs::write(&p, t).unwrap();
    }
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    subs.iter().fold(text, |t, (k, v)| t.replace(k, &canon(v)))
}

fn golden(name: &str, base: &Path, adapter: &Path, actual: &str) -> String {
    golden_with(name, &[("{ADAPTER}", adapter), ("{BASE}", base)], actual)
}

fn run_export_with(dir: &Path, model: &Path, lora: &Path, system: Option<&str>, extra: &[&str]) -> std::process::Output {
    let mut c = Command::new(bin());
    c.args(["export", "--ollama"]).arg(dir).arg("--model").arg(model).arg("--lora").arg(lora).args(extra);
    if let Some(s) = system {
        c.args(["--system", s]);
    }
    c.output().unwrap()
}

fn run_export(dir: &Path, model: &Path, lora: &Path, system: Option<&str>) -> std::process::Output {
    run_export_with(dir, model, lora, system, &[])
}

/// Export with the CLI, compare with the golden file and with Go.
fn check_real_model(model: &Path, golden_name: &str, system: Option<&str>, want_family: Family) {
    let dir = tmpdir(&format!("ollama-{golden_name}"));
    let lora = adapter_for(model, &dir, "my-Adapter v1.gguf");
    let out_dir = dir.join("out");
    let out = run_export(&out_dir, model, &lora, system);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "export --ollama failed:\n{stderr}");
    let mf_path = out_dir.join("Modelfile");
    let first_line = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").to_string();
    assert_eq!(first_line, format!("ollama create my-adapter-v1 -f {}", mf_path.display()), "the printed ollama create line");
    let mf = std::fs::read_to_string(&mf_path).unwrap();
    assert_eq!(mf, golden(golden_name, model, &lora, &mf), "Modelfile differs from tests/data/ollama/{golden_name}");
    let g = GgufFile::open(model).unwrap();
    let t = ChatTemplate::from_gguf_file(&g).unwrap();
    let bos_id = g.get_u64("tokenizer.ggml.bos_token_id").unwrap() as usize;
    let bos = g.get("tokenizer.ggml.tokens").unwrap().as_array().unwrap()[bos_id].as_str().unwrap().to_string();
    let add_bos = g.get("tokenizer.ggml.add_bos_token").and_then(|v| v.as_bool()).unwrap_or(false);
    let family = detect(&t, add_bos.then_some(bos.as_str()), model, "test").unwrap();
    assert_eq!(family, want_family);
    check_against_go(&mf, &t, system, add_bos.then_some(bos.as_str()), &family);
}

#[test]
fn smollm2_modelfile_matches_golden_and_go_renders_the_chat_template() {
    let default = "You are a helpful AI assistant named SmolLM, trained by Hugging Face".to_string();
    check_real_model(&smollm(), "smollm2.Modelfile", None, Family::ChatMl { default_system: Some(default.clone()) });
    check_real_model(
        &smollm(),
        "smollm2-system.Modelfile",
        Some("You answer like a pirate.\nAlways."),
        Family::ChatMl { default_system: Some(default) },
    );
}

/// `--merge` (or what the architecture / `--ollama-version` needs): `Modelfile.merged` FROM the
/// merged GGUF, no ADAPTER, same TEMPLATE (Go-checked); the merged model keeps the chat template.
/// Returns the stdout lines.
fn check_merged(model: &Path, golden_name: &str, extra: &[&str], want_adapter_modelfile: bool) -> Vec<String> {
    let dir = tmpdir(&format!("ollama-merged-{golden_name}"));
    let lora = adapter_for(model, &dir, "my-Adapter v1.gguf");
    let out_dir = dir.join("out");
    let out = run_export_with(&out_dir, model, &lora, None, extra);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "export --ollama {extra:?} failed:\n{stderr}");
    let merged = out_dir.join("my-adapter-v1.gguf");
    let mf_path = out_dir.join("Modelfile.merged");
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines.last().unwrap(), &format!("ollama create my-adapter-v1 -f {}", mf_path.display()), "{lines:?}");
    assert_eq!(out_dir.join("Modelfile").exists(), want_adapter_modelfile, "{stderr}");
    assert_eq!(lines.len(), 1 + want_adapter_modelfile as usize, "{lines:?}");
    let mf = std::fs::read_to_string(&mf_path).unwrap();
    assert!(!mf.contains("ADAPTER"), "{mf}");
    assert_eq!(
        mf,
        golden_with(golden_name, &[("{MERGED}", &merged)], &mf),
        "Modelfile.merged differs from tests/data/ollama/{golden_name}"
    );
    let (g, gm) = (GgufFile::open(model).unwrap(), GgufFile::open(&merged).unwrap());
    assert_eq!(gm.get_str("tokenizer.chat_template"), g.get_str("tokenizer.chat_template"), "the merged model keeps the template");
    assert_eq!(gm.tensors.len(), g.tensors.len());
    let t = ChatTemplate::from_gguf_file(&gm).unwrap();
    let bos_id = gm.get_u64("tokenizer.ggml.bos_token_id").unwrap() as usize;
    let bos = gm.get("tokenizer.ggml.tokens").unwrap().as_array().unwrap()[bos_id].as_str().unwrap().to_string();
    let add_bos = gm.get("tokenizer.ggml.add_bos_token").and_then(|v| v.as_bool()).unwrap_or(false);
    let family = detect(&t, add_bos.then_some(bos.as_str()), &merged, "test").unwrap();
    check_against_go(&mf, &t, None, add_bos.then_some(bos.as_str()), &family);
    lines
}

#[test]
fn smollm2_merged_modelfile_for_every_ollama_version() {
    // --merge: both Modelfiles.
    check_merged(&smollm(), "smollm2-merged.Modelfile", &["--merge"], true);
    // Ollama ≥ 0.34.1 rejects ADAPTER: the merged one only.
    check_merged(&smollm(), "smollm2-merged.Modelfile", &["--ollama-version", "0.34.1"], false);
    // A version before 0.34.1 on an architecture its llama.cpp runner serves: ADAPTER only.
    let dir = tmpdir("ollama-old-version");
    let lora = adapter_for(&smollm(), &dir, "a.gguf");
    let out = run_export_with(&dir.join("o"), &smollm(), &lora, None, &["--ollama-version", "0.20.0"]);
    assert!(out.status.success() && dir.join("o/Modelfile").exists() && !dir.join("o/Modelfile.merged").exists());
    let out = run_export_with(&dir.join("o2"), &smollm(), &lora, None, &["--ollama-version", "zero"]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("--ollama-version \"zero\""), "{e}");
    assert!(!dir.join("o2").exists());
}

#[test]
fn gemma3_modelfile_matches_golden_and_go_renders_the_chat_template() {
    // gemma3: its ADAPTER Modelfile only works with Ollama 0.30.0–0.34.0, so the merged one is
    // written too without being asked; with a pre-0.30 version only the merged one.
    let lines = check_merged(&gemma(), "gemma3-merged.Modelfile", &[], true);
    assert!(lines[0].ends_with("/Modelfile"), "{lines:?}");
    check_merged(&gemma(), "gemma3-merged.Modelfile", &["--ollama-version", "0.29.0"], false);
    check_real_model(&gemma(), "gemma3.Modelfile", None, Family::Gemma);
    check_real_model(&gemma(), "gemma3-system.Modelfile", Some("Reply in French."), Family::Gemma);
}

fn fixture(name: &str) -> (PathBuf, String) {
    let p = root().join("tests/data/ollama").join(name);
    let src = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (p, src)
}

/// Fixture templates through the library: golden Modelfile and Go comparison.
fn check_fixture(jinja: &str, bos: &str, add_bos: bool, golden_name: &str, system: Option<&str>, want: Family) {
    let dir = tmpdir(&format!("ollama-fx-{golden_name}"));
    let lora = adapter_for(&smollm(), &dir, "a.gguf");
    let (path, src) = fixture(jinja);
    let t = ChatTemplate::from_source(&src, bos, "<eos>").unwrap();
    let family = detect(&t, add_bos.then_some(bos), &path, "fixture").unwrap();
    assert_eq!(family, want);
    let base = smollm();
    let mf = modelfile(&ModelfileSpec { base: &base, adapter: Some(&lora), family: &family, system }).unwrap();
    assert_eq!(mf, golden(golden_name, &base, &lora, &mf), "Modelfile differs from tests/data/ollama/{golden_name}");
    check_against_go(&mf, &t, system, add_bos.then_some(bos), &family);
}

#[test]
fn llama3_fixture_modelfile_and_go_rendering() {
    check_fixture("llama3.jinja", "<|begin_of_text|>", true, "llama3.Modelfile", None, Family::Llama3);
    check_fixture("llama3.jinja", "<|begin_of_text|>", true, "llama3-system.Modelfile", Some("Be terse."), Family::Llama3);
}

#[test]
fn chatml_fixtures_modelfile_and_go_rendering() {
    check_fixture("chatml.jinja", "", false, "chatml.Modelfile", None, Family::ChatMl { default_system: None });
    check_fixture("chatml.jinja", "", false, "chatml-system.Modelfile", Some("Be terse."), Family::ChatMl { default_system: None });
    let default = Some("You are a careful assistant. Keep answers short.".to_string());
    check_fixture(
        "chatml-default-system.jinja",
        "",
        false,
        "chatml-default-system.Modelfile",
        None,
        Family::ChatMl { default_system: default },
    );
}

#[test]
fn unknown_or_lookalike_templates_are_refused() {
    for (name, why) in [("alpaca.jinja", ""), ("chatml-colon.jinja", "renders a probe conversation differently")] {
        let (path, src) = fixture(name);
        let t = ChatTemplate::from_source(&src, "", "").unwrap();
        let e = detect(&t, None, &path, "tokenizer.chat_template").unwrap_err();
        assert!(matches!(e, OllamaError::UnknownTemplate { .. }), "{name}: {e:?}");
        let msg = e.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("supported families: ChatML") && msg.contains("Llama 3") && msg.contains("Gemma"), "{msg}");
        assert!(msg.contains(why), "{msg}");
    }
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = tmpdir("ollama-bad");
    // An adapter for another architecture.
    let gemma_lora = adapter_for(&gemma(), &dir, "g.gguf");
    let out = run_export(&dir.join("o1"), &smollm(), &gemma_lora, None);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("architecture 'gemma3'") && e.contains("'llama'"), "{e}");
    // A model file given as the adapter.
    let out = run_export(&dir.join("o2"), &smollm(), &smollm(), None);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("not a LoRA adapter"), "{e}");
    // A system prompt the Modelfile cannot hold.
    let lora = adapter_for(&smollm(), &dir, "s.gguf");
    let out = run_export(&dir.join("o3"), &smollm(), &lora, Some("say \"\"\" now"));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("--system contains \"\"\""), "{e}");
    assert!(!dir.join("o1/Modelfile").exists() && !dir.join("o3/Modelfile").exists());
}
