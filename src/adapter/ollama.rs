//! Ollama Modelfiles for a base GGUF plus a GGUF LoRA adapter.
//!
//! A Modelfile (Ollama's `docs/modelfile.md`) names the base with `FROM`, the adapter with
//! `ADAPTER`, the prompt format with `TEMPLATE` (a Go `text/template`, see Ollama's
//! `docs/template.md`), stop strings with `PARAMETER stop` and a default system prompt with
//! `SYSTEM`. Ollama does not read the GGUF's Jinja `tokenizer.chat_template`, so the template is
//! translated here, for the chat formats this module knows ([`Family`]):
//!
//! * ChatML (`<|im_start|>role\n…<|im_end|>\n`, Qwen2 style), optionally with a default system
//!   turn the Jinja template inserts when the conversation has none (SmolLM2, Qwen2) — the
//!   default text is read from the model's own template by rendering it;
//! * Llama 3 (`<|start_header_id|>role<|end_header_id|>\n\n…<|eot_id|>`);
//! * Gemma (`<start_of_turn>user|model\n…<end_of_turn>\n`, the system text folded into the first
//!   user turn, as Gemma 3's template does).
//!
//! The family is recognised from the template text (its turn markers) and then confirmed by
//! rendering two probe conversations with the model's template and comparing them byte for byte
//! with the family's format, so a template that merely mentions the markers but formats turns
//! differently is refused rather than mistranslated.
//!
//! The Go templates use what Ollama passes to a template that mentions `.Messages` (its
//! `template.Execute`): `.System` (all system messages joined by a blank line) and `.Messages`
//! (consecutive messages of one role merged by a blank line; system messages stay in the list),
//! with `.Role` and `.Content`. A Modelfile `SYSTEM` is prepended by Ollama as a system message
//! when a request starts with none. Ollama adds BOS while tokenizing (the model's
//! `add_bos_token`), so the templates do not write it. Go templates have no trim function:
//! contents are inserted verbatim, where the Llama 3 and Gemma Jinja templates trim them.
//!
//! **Which Modelfile works with which Ollama.** Ollama's Modelfile documentation
//! (<https://github.com/ollama/ollama/blob/main/docs/modelfile.md#adapter>) describes `ADAPTER`
//! ("a fine tuned LoRA adapter that should apply to the base model … If the base model is not the
//! same as the base model that the adapter was tuned from the behaviour will be erratic") and
//! takes GGUF adapters (`ADAPTER ./ollama-lora.gguf`). Three periods (see [`plan`]):
//!
//! * before v0.30.0, architectures Ollama ran on its own engine (`OllamaEngineRequired` in
//!   Ollama's `fs/ggml/ggml.go`: gemma3, gemma3n, qwen3, mistral3, llama4, … — read from
//!   Ollama's source) failed to load with an adapter ("loras are not yet implemented"); the
//!   others ran in its llama.cpp runner, which applies it;
//! * since v0.30.0 (ollama PR #16031) every GGUF model runs in upstream llama-server, which
//!   applies GGUF adapters for every architecture;
//! * since v0.34.1 (ollama PR #14969; reported in generative-computing/mellea #1651) `ollama
//!   create` rejects any Modelfile with `ADAPTER` (models created earlier still run).
//!
//! A Modelfile whose `FROM` is the merged GGUF (the adapter folded in, `merge --type auto`)
//! works with every version; the `ADAPTER` one is smaller (the base file is shared).
//! [`ollama_engine_arch`] lists the affected architectures this engine can train.

use std::path::{Path, PathBuf};

use crate::chat::{ChatError, ChatTemplate, Message};
use crate::gguf::{GgufFile, Value};
use crate::tokenizer::Tokenizer;

/// An error building a Modelfile.
#[derive(Debug, thiserror::Error)]
pub enum OllamaError {
    /// The GGUF's chat template is not one of the known families.
    #[error(
        "{file}: the chat template ({origin}) is not one this exporter can translate to Ollama; supported \
         families: {}{detail}",
        SUPPORTED
    )]
    UnknownTemplate {
        /// The model file.
        file: PathBuf,
        /// Where the template came from (`tokenizer.chat_template` or a built-in).
        origin: String,
        /// Why it was refused.
        detail: String,
    },
    /// The chat template could not be loaded or rendered.
    #[error("{file}: {source}")]
    Chat {
        /// The model file.
        file: PathBuf,
        /// The template error.
        source: ChatError,
    },
    /// A GGUF file could not be read.
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    /// Input that cannot go into a Modelfile (a bad path, a quote sequence, a wrong adapter).
    #[error("{0}")]
    Invalid(String),
    /// Writing the Modelfile failed.
    #[error("writing {file}: {source}")]
    Io {
        /// The output file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

const SUPPORTED: &str = "ChatML (Qwen2 style), SmolLM2 (ChatML with a default system prompt), Llama 3, Gemma (Gemma 3 style)";

/// A chat format this module can write as an Ollama template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Family {
    /// ChatML; `default_system` is the system text the Jinja template inserts when the
    /// conversation does not start with a system message (SmolLM2, Qwen2).
    ChatMl {
        /// The default system prompt, if the template has one.
        default_system: Option<String>,
    },
    /// Llama 3 headers and `<|eot_id|>`.
    Llama3,
    /// Gemma turns with the system text folded into the first user turn.
    Gemma,
}

const CHATML_LOOP: &str = "<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n";

impl Family {
    /// Human-readable name (`ChatML`, `SmolLM2 …`, `Llama 3`, `Gemma`).
    pub fn name(&self) -> String {
        match self {
            Family::ChatMl { default_system: None } => "ChatML".into(),
            Family::ChatMl { default_system: Some(_) } => "ChatML with a default system prompt (SmolLM2 style)".into(),
            Family::Llama3 => "Llama 3".into(),
            Family::Gemma => "Gemma".into(),
        }
    }

    /// The end-of-turn strings, one `PARAMETER stop` each.
    pub fn stops(&self) -> &'static [&'static str] {
        match self {
            Family::ChatMl { .. } => &["<|im_start|>", "<|im_end|>"],
            Family::Llama3 => &["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
            Family::Gemma => &["<start_of_turn>", "<end_of_turn>"],
        }
    }

    /// The Ollama (Go `text/template`) prompt template, ending with the opening of the
    /// assistant's turn.
    pub fn go_template(&self) -> String {
        match self {
            Family::ChatMl { default_system: None } => format!("{{{{- range .Messages }}}}{CHATML_LOOP}"),
            Family::ChatMl { default_system: Some(d) } => format!(
                "{{{{- range $i, $_ := .Messages }}}}\n\
                 {{{{- if and (eq $i 0) (ne .Role \"system\") }}}}<|im_start|>system\n{d}<|im_end|>\n{{{{ end }}}}\
                 {CHATML_LOOP}"
            ),
            Family::Llama3 => "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n\
                               {{ .Content }}<|eot_id|>\n\
                               {{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
                .into(),
            Family::Gemma => "{{- $system := .System }}\n\
                              {{- range .Messages }}\n\
                              {{- if eq .Role \"user\" }}<start_of_turn>user\n\
                              {{ if $system }}{{ $system }}\n\n{{ $system = \"\" }}{{ end }}{{ .Content }}<end_of_turn>\n\
                              {{ else if eq .Role \"assistant\" }}<start_of_turn>model\n\
                              {{ .Content }}<end_of_turn>\n\
                              {{ end }}\n\
                              {{- end }}<start_of_turn>model\n"
                .into(),
        }
    }

    /// What the family's format makes of a conversation that starts with at most one system
    /// message, contents without surrounding whitespace, ending with the assistant's opening.
    fn format(&self, msgs: &[Message]) -> String {
        let mut s = String::new();
        match self {
            Family::ChatMl { default_system } => {
                if let (Some(d), Some(first)) = (default_system, msgs.first()) {
                    if first.role != "system" {
                        s += &format!("<|im_start|>system\n{d}<|im_end|>\n");
                    }
                }
                for m in msgs {
                    s += &format!("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content);
                }
                s += "<|im_start|>assistant\n";
            }
            Family::Llama3 => {
                for m in msgs {
                    s += &format!("<|start_header_id|>{}<|end_header_id|>\n\n{}<|eot_id|>", m.role, m.content);
                }
                s += "<|start_header_id|>assistant<|end_header_id|>\n\n";
            }
            Family::Gemma => {
                let mut system = msgs.iter().filter(|m| m.role == "system").map(|m| m.content.as_str()).collect::<String>();
                for m in msgs.iter().filter(|m| m.role != "system") {
                    let role = if m.role == "assistant" { "model" } else { m.role.as_str() };
                    s += &format!("<start_of_turn>{role}\n");
                    if role == "user" && !system.is_empty() {
                        s += &format!("{system}\n\n");
                        system.clear();
                    }
                    s += &format!("{}<end_of_turn>\n", m.content);
                }
                s += "<start_of_turn>model\n";
            }
        }
        s
    }
}

/// Architectures this engine can train that Ollama before v0.30.0 ran on its own engine, which
/// did not apply LoRA adapters (see the module documentation): `ollama create` accepted the
/// Modelfile but loading the model failed.
pub fn ollama_engine_arch(arch: &str) -> bool {
    matches!(arch, "gemma3" | "gemma3n" | "qwen3" | "qwen3moe" | "mistral3" | "llama4" | "olmo3")
}

fn probe(with_system: bool) -> Vec<Message> {
    let mut v = Vec::new();
    if with_system {
        v.push(Message::new("system", "Answer in one word."));
    }
    v.push(Message::new("user", "Name a colour."));
    v.push(Message::new("assistant", "Blue."));
    v.push(Message::new("user", "Another one?"));
    v
}

/// Recognise the family of `t`. `added_bos` is the BOS token's text when the model's tokenizer
/// adds BOS (it is removed from the start of renderings: Ollama's tokenizer adds BOS itself, so
/// the Ollama templates do not write it). `origin` names the template in errors.
pub fn detect(t: &ChatTemplate, added_bos: Option<&str>, file: &Path, origin: &str) -> Result<Family, OllamaError> {
    let unknown = |detail: String| OllamaError::UnknownTemplate { file: file.into(), origin: origin.into(), detail };
    let src = t.source();
    let candidate = if src.contains("<|im_start|>") && src.contains("<|im_end|>") {
        Family::ChatMl { default_system: None }
    } else if src.contains("<|start_header_id|>") && src.contains("<|eot_id|>") {
        Family::Llama3
    } else if src.contains("<start_of_turn>") && src.contains("<end_of_turn>") {
        Family::Gemma
    } else {
        return Err(unknown(String::new()));
    };
    let render = |msgs: &[Message]| -> Result<String, OllamaError> {
        let out = t.render(msgs, true).map_err(|e| OllamaError::Chat { file: file.into(), source: e })?;
        Ok(match added_bos.filter(|b| !b.is_empty()).and_then(|b| out.strip_prefix(b)) {
            Some(rest) => rest.to_string(),
            None => out,
        })
    };
    let mismatch = |got: &str, want: &str| {
        unknown(format!(
            " (it uses {} turn markers but renders a probe conversation differently:\n  template: {got:?}\n  {}: {want:?})",
            candidate.name(),
            candidate.name()
        ))
    };
    let mut family = candidate.clone();
    let plain = probe(false);
    let got = render(&plain)?;
    let want = family.format(&plain);
    if got != want {
        let default = match (&family, got.strip_suffix(want.as_str())) {
            (Family::ChatMl { .. }, Some(head)) => {
                head.strip_prefix("<|im_start|>system\n").and_then(|h| h.strip_suffix("<|im_end|>\n")).filter(|d| !d.contains("<|im_end|>"))
            }
            _ => None,
        };
        match default {
            Some(d) => family = Family::ChatMl { default_system: Some(d.to_string()) },
            None => return Err(mismatch(&got, &want)),
        }
    }
    let with_system = probe(true);
    let (got, want) = (render(&with_system)?, family.format(&with_system));
    if got != want {
        return Err(mismatch(&got, &want));
    }
    if let Family::ChatMl { default_system: Some(d) } = &family {
        check_text("the template's default system prompt", d)?;
        if d.contains("{{") {
            return Err(OllamaError::Invalid(format!("the template's default system prompt {d:?} contains \"{{{{\"")));
        }
    }
    Ok(family)
}

/// Refuse text that Ollama's Modelfile parser would not read back as written: `"""` ends a
/// triple-quoted value, and the parser drops non-printable characters other than tab/newline.
fn check_text(what: &str, s: &str) -> Result<(), OllamaError> {
    if s.contains("\"\"\"") {
        return Err(OllamaError::Invalid(format!("{what} contains \"\"\", which cannot be quoted in a Modelfile")));
    }
    if let Some(c) = s.chars().find(|&c| c.is_control() && !matches!(c, '\n' | '\t')) {
        return Err(OllamaError::Invalid(format!("{what} contains the control character {c:?}, which Ollama's Modelfile parser drops")));
    }
    Ok(())
}

/// A path as a Modelfile argument: absolute, quoted when it has spaces (the parser ends an
/// unquoted value at the first space).
fn path_arg(what: &str, p: &Path) -> Result<String, OllamaError> {
    let abs = std::fs::canonicalize(p).map_err(|e| OllamaError::Invalid(format!("{what} {}: {e}", p.display())))?;
    let s = abs.to_str().ok_or_else(|| OllamaError::Invalid(format!("{what} {}: the path is not UTF-8", abs.display())))?.to_string();
    if s.contains('"') || s.chars().any(char::is_control) {
        return Err(OllamaError::Invalid(format!("{what} {s}: the path has a quote or control character")));
    }
    Ok(if s.contains(' ') || s.contains('\t') { format!("\"{s}\"") } else { s })
}

/// An Ollama version, `MAJOR.MINOR.PATCH`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OllamaVersion(pub u32, pub u32, pub u32);

impl OllamaVersion {
    /// Since this version every GGUF model runs in upstream llama-server (ollama PR #16031).
    pub const LLAMA_SERVER: OllamaVersion = OllamaVersion(0, 30, 0);
    /// Since this version `ollama create` rejects `ADAPTER` (ollama PR #14969).
    pub const NO_ADAPTER: OllamaVersion = OllamaVersion(0, 34, 1);

    /// Parse `0.34.1`, `v0.30` (a missing part is 0).
    pub fn parse(s: &str) -> Result<Self, OllamaError> {
        let bad = || OllamaError::Invalid(format!("--ollama-version {s:?}: expected a version like 0.34.1"));
        let t = s.trim().trim_start_matches('v');
        let parts: Vec<&str> = t.split('.').collect();
        if parts.is_empty() || parts.len() > 3 {
            return Err(bad());
        }
        let mut v = [0u32; 3];
        for (i, p) in parts.iter().enumerate() {
            v[i] = p.parse().map_err(|_| bad())?;
        }
        Ok(OllamaVersion(v[0], v[1], v[2]))
    }
}

impl std::fmt::Display for OllamaVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// Which Modelfiles to write, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Write `Modelfile` with `FROM` the base and `ADAPTER` the adapter.
    pub adapter: bool,
    /// Merge the adapter and write `Modelfile.merged` with `FROM` the merged GGUF.
    pub merged: bool,
    /// Why the merged one is written, or why the adapter one is not (empty when neither applies).
    pub why: String,
}

/// The Modelfiles for a base of architecture `arch`, for Ollama `version` (unknown: `None`),
/// with `--merge` given or not:
///
/// * a known version ≥ 0.34.1: the merged one only (`ADAPTER` is refused);
/// * a known version < 0.30.0 and an architecture of [`ollama_engine_arch`]: the merged one only
///   (the adapter would not load);
/// * any other known version: the `ADAPTER` one, and the merged one with `--merge`;
/// * no version: the `ADAPTER` one (Ollama < 0.34.1), and the merged one with `--merge` or when
///   the architecture is one of [`ollama_engine_arch`] (its `ADAPTER` Modelfile only works on
///   0.30.0 ≤ version < 0.34.1).
pub fn plan(arch: &str, version: Option<OllamaVersion>, merge: bool) -> Plan {
    let engine = ollama_engine_arch(arch);
    match version {
        Some(v) if v >= OllamaVersion::NO_ADAPTER => Plan {
            adapter: false,
            merged: true,
            why: format!("Ollama {v} rejects ADAPTER in `ollama create` (since 0.34.1, ollama PR #14969)"),
        },
        Some(v) if v < OllamaVersion::LLAMA_SERVER && engine => Plan {
            adapter: false,
            merged: true,
            why: format!("Ollama {v} runs '{arch}' on its own engine, which does not apply adapters (fixed in 0.30.0, ollama PR #16031)"),
        },
        Some(_) => Plan { adapter: true, merged: merge, why: if merge { "--merge".into() } else { String::new() } },
        None if merge => Plan { adapter: true, merged: true, why: "--merge".into() },
        None if engine => Plan {
            adapter: true,
            merged: true,
            why: format!(
                "for '{arch}' the ADAPTER Modelfile works only with Ollama 0.30.0 to 0.34.0 (older versions do not apply \
                 adapters to it, newer ones reject ADAPTER)"
            ),
        },
        None => Plan { adapter: true, merged: false, why: String::new() },
    }
}

/// What goes into a Modelfile.
#[derive(Clone, Debug)]
pub struct ModelfileSpec<'a> {
    /// The model of `FROM`: the base GGUF (with an adapter) or the merged GGUF.
    pub base: &'a Path,
    /// The GGUF LoRA adapter (`ADAPTER`); `None` for a merged model.
    pub adapter: Option<&'a Path>,
    /// The prompt format.
    pub family: &'a Family,
    /// The `SYSTEM` prompt, if any.
    pub system: Option<&'a str>,
}

/// The Modelfile text: a comment, `FROM`, `ADAPTER` when given (absolute paths), `TEMPLATE
/// """…"""`, `PARAMETER stop` per end-of-turn string and `SYSTEM """…"""` when given.
pub fn modelfile(spec: &ModelfileSpec) -> Result<String, OllamaError> {
    let template = spec.family.go_template();
    check_text("the template", &template)?;
    let mut s = match spec.adapter {
        Some(_) => format!(
            "# Written by `finetune export --ollama` for Ollama < 0.34.1 (FROM + ADAPTER); prompt format: {}.\n",
            spec.family.name()
        ),
        None => format!(
            "# Written by `finetune export --ollama` for any Ollama version (FROM the merged model); prompt format: {}.\n",
            spec.family.name()
        ),
    };
    s += &format!("FROM {}\n", path_arg(if spec.adapter.is_some() { "base model" } else { "merged model" }, spec.base)?);
    if let Some(a) = spec.adapter {
        s += &format!("ADAPTER {}\n", path_arg("adapter", a)?);
    }
    s += &format!("TEMPLATE \"\"\"{template}\"\"\"\n");
    for stop in spec.family.stops() {
        s += &format!("PARAMETER stop \"{stop}\"\n");
    }
    if let Some(sys) = spec.system {
        check_text("--system", sys)?;
        s += &format!("SYSTEM \"\"\"{sys}\"\"\"\n");
    }
    Ok(s)
}

/// A base and adapter checked for export: the prompt format and the architecture.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The recognised prompt format.
    pub family: Family,
    /// The base's `general.architecture`.
    pub architecture: String,
}

/// Check that `adapter` is a LoRA adapter GGUF for `base` (type, architecture, and each lora_b's
/// output width against the base weight's).
fn check_adapter(base: &GgufFile, adapter: &Path) -> Result<(), OllamaError> {
    let a = GgufFile::open(adapter)?;
    let bad = |p: String| OllamaError::Invalid(format!("{}: {p}", adapter.display()));
    if a.get_str("general.type") != Some("adapter") || a.get_str("adapter.type") != Some("lora") {
        return Err(bad("not a LoRA adapter (general.type must be \"adapter\", adapter.type \"lora\")".into()));
    }
    let (aa, ba) = (a.architecture().unwrap_or("?"), base.architecture().unwrap_or("?"));
    if aa != ba {
        return Err(bad(format!("the adapter is for architecture '{aa}', the base {} is '{ba}'", base.path().display())));
    }
    for t in &a.tensors {
        let Some(w) = t.name.strip_suffix(".lora_a").or_else(|| t.name.strip_suffix(".lora_b")) else {
            return Err(bad(format!("tensor '{}' is not a LoRA tensor", t.name)));
        };
        let bw = base.tensor_info(w).ok_or_else(|| bad(format!("the base has no weight '{w}'")))?;
        let (n_in, n_out) = (bw.dims[0], bw.dims.get(1).copied().unwrap_or(1));
        let fits = if t.name.ends_with(".lora_a") { t.dims[0] == n_in } else { t.dims.get(1) == Some(&n_out) };
        if !fits {
            return Err(bad(format!("'{}' ne {:?} does not fit the base weight's ne {:?}", t.name, t.dims, bw.dims)));
        }
    }
    Ok(())
}

/// Check `adapter` against `base` and recognise the prompt format from the base's chat template
/// (or the built-in one for its architecture when it has none).
pub fn prepare(base: &Path, adapter: &Path) -> Result<Prepared, OllamaError> {
    let g = GgufFile::open(base)?;
    check_adapter(&g, adapter)?;
    let t = ChatTemplate::from_gguf_file(&g).map_err(|e| OllamaError::Chat { file: base.into(), source: e })?;
    let origin = match g.get("tokenizer.chat_template").and_then(Value::as_str) {
        Some(_) => "tokenizer.chat_template".to_string(),
        None => format!("built-in '{}', the GGUF has no tokenizer.chat_template", t.name()),
    };
    let tok = Tokenizer::from_gguf(&g).map_err(|e| OllamaError::Invalid(format!("{}: {e}", base.display())))?;
    let added_bos = tok.bos().filter(|_| tok.add_bos()).map(|id| tok.token_text(id));
    let family = detect(&t, added_bos, base, &origin)?;
    Ok(Prepared { family, architecture: g.architecture().unwrap_or("").to_string() })
}

/// Write `text` to `dir/name` atomically (creating `dir`).
pub fn write_modelfile(dir: &Path, name: &str, text: &str) -> Result<PathBuf, OllamaError> {
    std::fs::create_dir_all(dir).map_err(|e| OllamaError::Io { file: dir.into(), source: e })?;
    let path = dir.join(name);
    crate::util::outpath::write_atomic(&path, text.as_bytes()).map_err(|e| match e {
        crate::error::Error::Io { source, .. } => OllamaError::Io { file: path.clone(), source },
        other => OllamaError::Invalid(other.to_string()),
    })?;
    Ok(path)
}

/// A model name for `ollama create` from a file stem: lowercase ASCII letters, digits, `-`,
/// `_` and `.`, other characters replaced by `-`.
pub fn model_name(stem: &str) -> String {
    let s: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c.to_ascii_lowercase() } else { '-' })
        .collect();
    let s = s.trim_matches(|c| matches!(c, '-' | '_' | '.')).to_string();
    if s.is_empty() {
        "finetuned".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(OllamaVersion::parse("0.34.1").unwrap(), OllamaVersion::NO_ADAPTER);
        assert_eq!(OllamaVersion::parse("v0.30").unwrap(), OllamaVersion::LLAMA_SERVER);
        assert!(OllamaVersion::parse("0.34.0").unwrap() < OllamaVersion::NO_ADAPTER);
        assert!(OllamaVersion::parse("1.0.0").unwrap() > OllamaVersion::NO_ADAPTER);
        for bad in ["", "x", "0.1.2.3", "0..1"] {
            assert!(OllamaVersion::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn which_modelfiles_for_which_version() {
        let v = |s| Some(OllamaVersion::parse(s).unwrap());
        let p = |arch, ver, merge| {
            let p = plan(arch, ver, merge);
            (p.adapter, p.merged)
        };
        assert_eq!(p("llama", None, false), (true, false));
        assert_eq!(p("llama", None, true), (true, true));
        assert_eq!(p("gemma3", None, false), (true, true));
        assert_eq!(p("llama", v("0.34.1"), false), (false, true));
        assert_eq!(p("llama", v("0.34.0"), false), (true, false));
        assert_eq!(p("gemma3", v("0.29.9"), false), (false, true));
        assert_eq!(p("llama", v("0.29.9"), false), (true, false));
        assert_eq!(p("gemma3", v("0.30.0"), false), (true, false));
        assert_eq!(p("qwen3", v("0.31.2"), true), (true, true));
        assert!(plan("llama", v("0.40.0"), false).why.contains("PR #14969"));
    }
}
